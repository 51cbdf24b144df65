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

testmodel:
	$(GO) run ./gateway/cmd/testmodel -out .cache/models/tiny-bert

test:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

bench:
	scripts/bench

# Each fuzzer for FUZZTIME (bounded); crashers land in testdata/fuzz.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./gateway/tokenizer -run '^$$' -fuzz '^FuzzEncode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/tokenizer -run '^$$' -fuzz '^FuzzUnicodeNormalize$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/native -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/tei -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/openai -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway/onnxpool -run '^$$' -fuzz '^FuzzAppend$$' -fuzztime $(FUZZTIME)

proto:
	scripts/gen-proto

fmt:
	gofmt -w $$(git ls-files '*.go')
