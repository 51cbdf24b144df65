package batcher

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A second queue on one registry is a wiring mistake New reports; it must
// not panic, and a nil registry registers nothing.
func TestNewReportsDuplicateMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := Options{MaxTokens: 8, MaxRows: 2}
	if _, err := New[*item](opts, reg); err != nil {
		t.Fatal(err)
	}
	_, err := New[*item](opts, reg)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second New on one registry = %v, want an AlreadyRegisteredError", err)
	}
	if _, err := New[*item](opts, nil); err != nil {
		t.Errorf("New without a registry = %v", err)
	}
}
