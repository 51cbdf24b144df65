package infer

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A second engine on one registry is a wiring mistake New reports; it
// must not panic.
func TestNewReportsDuplicateMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := New(defaultOptions(), loadTokenizer(t), &fakeBackend{hidden: 8}, logger, reg); err != nil {
		t.Fatal(err)
	}
	_, err := New(defaultOptions(), loadTokenizer(t), &fakeBackend{hidden: 8}, logger, reg)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second New on one registry = %v, want an AlreadyRegisteredError", err)
	}
}
