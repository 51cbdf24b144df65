package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"golang.org/x/sync/errgroup"
)

// workload is what a load level sends: *Mix (its requests round robin) or
// *halfNew.
type workload interface {
	Targeter(baseURL string) vegeta.Targeter
}

// cacheHeader is the gateway's answer to "was this request served from the
// cache": hit, partial or miss; absent when the cache is off.
const cacheHeader = "X-Embedgate-Cache"

// halfNew is the cache workload where half the inputs of every request were
// never sent before: request k is pool request k mod P with the inputs at
// the positions j where j+k is even replaced by new inputs of the same kind
// and length. The pool's inputs can be warmed into the cache; the new ones
// are misses, each a different text, however long the run.
type halfNew struct {
	pool      *Mix
	seed      uint64
	model     string
	words     []string
	maxInputs uint64 // the most inputs a pool request has: spaces the new inputs' numbers
}

// freshPrefix is how many leading words of a new input spell its number:
// with the ~250 one-token words, 250³ numbers, so no two new inputs of a
// run share a text.
const freshPrefix = 3

func newHalfNew(pool *Mix, seed uint64, model string) (*halfNew, error) {
	if pool == nil || len(pool.Requests) == 0 {
		return nil, fmt.Errorf("half-new workload: empty pool")
	}
	h := &halfNew{pool: pool, seed: seed, model: model, words: strings.Fields(wordText)}
	for _, r := range pool.Requests {
		h.maxInputs = max(h.maxInputs, uint64(len(r.Inputs)))
		for _, in := range r.Inputs {
			if in.Words < freshPrefix {
				return nil, fmt.Errorf("half-new workload: a pool input of %d tokens is shorter than the %d words that number a new one", in.Words, freshPrefix)
			}
		}
	}
	return h, nil
}

// fresh reports whether input j of request k is a new one.
func fresh(k uint64, j int) bool { return (k+uint64(j))%2 == 0 }

// Request builds request k. The same k always gives the same bytes.
func (h *halfNew) Request(k uint64) (Request, error) {
	base := &h.pool.Requests[k%uint64(len(h.pool.Requests))]
	r := Request{Route: base.Route, Inputs: make([]Input, len(base.Inputs))}
	rng := rand.New(rand.NewPCG(h.seed, k))
	for j, in := range base.Inputs {
		if !fresh(k, j) {
			r.Inputs[j] = in
			continue
		}
		text, err := h.freshText(rng, k*h.maxInputs+uint64(j), in.Words)
		if err != nil {
			return Request{}, err
		}
		r.Inputs[j] = Input{Kind: in.Kind, Words: in.Words, Text: text}
	}
	var err error
	if r.Path, r.Body, err = encodeRequest(r.Route, r.Inputs, h.model); err != nil {
		return Request{}, err
	}
	id := "bench-half-" + strconv.FormatUint(k, 10) + "-n" + strconv.Itoa(len(r.Inputs))
	r.Header = http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {id}}
	return r, nil
}

// freshText is a text of n tokens whose first freshPrefix words spell num
// in base len(words): distinct numbers give distinct token sequences.
func (h *halfNew) freshText(rng *rand.Rand, num uint64, n int) (string, error) {
	base := uint64(len(h.words))
	var b strings.Builder
	for range freshPrefix {
		b.WriteString(h.words[num%base])
		b.WriteByte(' ')
		num /= base
	}
	if num != 0 {
		return "", fmt.Errorf("half-new workload: out of new inputs (more than %d requests)", pow(base, freshPrefix)/h.maxInputs)
	}
	b.WriteString(sentenceText(rng, h.words, n-freshPrefix))
	return strings.TrimSuffix(b.String(), " "), nil
}

func pow(b uint64, e int) uint64 {
	r := uint64(1)
	for range e {
		r *= b
	}
	return r
}

// Targeter hands out requests 0, 1, 2, ... against baseURL: every level
// run with it sends the same sequence. vegeta's workers call it
// concurrently.
func (h *halfNew) Targeter(baseURL string) vegeta.Targeter {
	var next atomic.Uint64
	return func(t *vegeta.Target) error {
		r, err := h.Request(next.Add(1) - 1)
		if err != nil {
			return err
		}
		t.Method, t.URL, t.Body, t.Header = http.MethodPost, baseURL+r.Path, r.Body, r.Header
		return nil
	}
}

// warmPasses bounds the check passes of warm: entries reach Redis
// asynchronously, so a pass right after the first can still see misses.
const warmPasses = 3

// warm sends every pool request once, workers at a time, then sends them
// again until every answer says hit (at most warmPasses times, or once if
// the gateway sends no cache header: it has no cache). It returns the
// x-embedgate-cache counts of the last pass. Any status but 200 is an
// error.
func warm(ctx context.Context, baseURL string, pool *Mix, workers int) (map[string]int, error) {
	client := &http.Client{Timeout: time.Minute}
	if _, err := sendAll(ctx, client, baseURL, pool, workers); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	var counts map[string]int
	for pass := range warmPasses {
		if pass > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		var err error
		if counts, err = sendAll(ctx, client, baseURL, pool, workers); err != nil {
			return nil, fmt.Errorf("warm-up check: %w", err)
		}
		if counts["hit"] == len(pool.Requests) || counts[""] == len(pool.Requests) {
			break
		}
	}
	return counts, nil
}

// sendAll sends each pool request once and counts the cache header of the
// answers ("" = absent).
func sendAll(ctx context.Context, client *http.Client, baseURL string, pool *Mix, workers int) (map[string]int, error) {
	var mu sync.Mutex
	counts := map[string]int{}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, workers))
	for i := range pool.Requests {
		r := &pool.Requests[i]
		g.Go(func() error {
			got, err := post(ctx, client, baseURL+r.Path, r)
			if err != nil {
				return err
			}
			mu.Lock()
			counts[got]++
			mu.Unlock()
			return nil
		})
	}
	return counts, g.Wait()
}

// post sends r and returns its answer's cache header.
func post(ctx context.Context, client *http.Client, url string, r *Request) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(r.Body))
	if err != nil {
		return "", err
	}
	req.Header = r.Header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: status %d: %s", r.Header.Get("X-Request-Id"), url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Header.Get(cacheHeader), nil
}
