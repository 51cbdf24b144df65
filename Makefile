# The README's two commands: `make setup && make run` and `make test`.
SHELL := /bin/bash
ORT_LIB ?= $(CURDIR)/.cache/ort/1.30.0/libonnxruntime.so.1
export ORT_LIB
MODEL_ID ?= BAAI/bge-small-en-v1.5
GO ?= go

.PHONY: setup build run test testmodel bench fuzz proto fmt

setup:
	$(GO) mod download
	scripts/fetch-ort >/dev/null
	$(MAKE) testmodel

build:
	$(GO) build -o bin/embedgate ./gateway/cmd/embedgate

run: build
	bin/embedgate --model-id $(MODEL_ID)

# The generated test models (package testmodel): an embedding model, a
# one-label cross-encoder and a Qwen3 decoder embedding model (20 MB, with
# the tokenizer tests' copy of the Qwen3 tokenizer).
# `make run MODEL_ID=.cache/models/tiny-reranker` serves the second as a
# reranker, `make run MODEL_ID=.cache/models/tiny-qwen3` the third.
MODELS_DIR ?= .cache/models
testmodel:
	$(GO) run ./gateway/cmd/testmodel -out $(MODELS_DIR)/tiny-bert
	$(GO) run ./gateway/cmd/testmodel -out $(MODELS_DIR)/tiny-reranker -num-labels 1
	$(GO) run ./gateway/cmd/testmodel -out $(MODELS_DIR)/tiny-qwen3 -arch qwen3 -tokenizer gateway/tokenizer/testdata/qwen3emb.json

# make test runs every test once, in one of two tiers. The race detector
# (about 10 times slower) runs on everything but the tokenizer tests below:
# each encodes one input at a time on one goroutine against a fixed answer,
# so it finds nothing there; they run without it. The tokenizer's
# TestConcurrent* tests share tokenizers across goroutines and keep it.
# The names are anchored and must be unique to gateway/tokenizer, or the
# first tier would skip a test that the second does not run.
NORACE_PKG := ./gateway/tokenizer
NORACE_TESTS := TestParity|TestPathological|TestPathologicalBPE|TestPathologicalSentencePiece|TestSequences|TestEncodeBPE|TestScannersMatchRegexp2|FuzzEncode|TestCutsSplitEncoding|TestBoundedEncodeCorpus|TestBoundedEncodeLong|TestBoundedEncodePrompt|TestBoundedEncodeInvalidElsewhere|FuzzBoundedEncode|TestPairParity|TestPairParityExtra|FuzzEncodePair

test:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	@elsewhere=$$(git grep -lE '^func ($(NORACE_TESTS))\(' -- '*_test.go' ':!$(NORACE_PKG:./%=%)'); \
	  if [ -n "$$elsewhere" ]; then echo "NORACE_TESTS names also in: $$elsewhere"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 -skip '^($(NORACE_TESTS))$$' ./...
	$(GO) test -count=1 -run '^($(NORACE_TESTS))$$' $(NORACE_PKG)

bench:
	scripts/bench

# Each fuzzer for FUZZTIME (bounded); crashers land in testdata/fuzz.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./gateway/tokenizer -run '^$$' -fuzz '^FuzzEncode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/tokenizer -run '^$$' -fuzz '^FuzzUnicodeNormalize$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/tokenizer -run '^$$' -fuzz '^FuzzBoundedEncode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/tokenizer -run '^$$' -fuzz '^FuzzEncodePair$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/native -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/tei -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/openai -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/onnxpool -run '^$$' -fuzz '^FuzzAppend$$' -fuzztime $(FUZZTIME)

proto:
	scripts/gen-proto

fmt:
	gofmt -w $$(git ls-files '*.go')
