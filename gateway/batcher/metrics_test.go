package batcher

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Collectors are every series the queue keeps, so that a caller that
// registered them can give them all back: after Unregister, another
// queue's series register on the same registry (a model reloaded).
func TestCollectorsCanBeGivenBack(t *testing.T) {
	reg := prometheus.NewRegistry()
	first := newQueue(t, Options{MaxTokens: 8, MaxRows: 2})
	for _, c := range first.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	first.Push(mk(context.Background(), 1, 3))
	batch, _, err := first.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first.Pad(batch)
	want := map[string]bool{
		"embedgate_queue_size": true, "embedgate_batch_size": true, "embedgate_batch_tokens": true,
		"embedgate_batch_padding_ratio": true, "embedgate_queue_dropped_total": true,
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		delete(want, f.GetName())
	}
	if len(want) > 0 {
		t.Errorf("series missing from Collectors: %v", want)
	}

	second := newQueue(t, Options{MaxTokens: 8, MaxRows: 2})
	for _, c := range first.Collectors() {
		if !reg.Unregister(c) {
			t.Errorf("collector %v was not registered", c)
		}
	}
	for _, c := range second.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Errorf("register after the first queue's metrics were given back: %v", err)
		}
	}
}
