package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNewAdmin(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "admin_test_total", Help: "a series to find"}))
	for _, tt := range []struct {
		name      string
		pprof     bool
		wantPprof int
	}{
		{"metrics only", false, http.StatusNotFound},
		{"with pprof", true, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			app := NewAdmin(reg, AdminOptions{Pprof: tt.pprof})
			t.Cleanup(func() { _ = app.Shutdown() })
			get := func(path string) (int, string) {
				resp, err := app.Test(httptest.NewRequest(http.MethodGet, path, nil), -1)
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if status, body := get("/metrics"); status != http.StatusOK || !strings.Contains(body, "admin_test_total 0") {
				t.Errorf("GET /metrics = %d %q, want 200 with admin_test_total", status, body)
			}
			if status, _ := get("/debug/pprof/"); status != tt.wantPprof {
				t.Errorf("GET /debug/pprof/ = %d, want %d", status, tt.wantPprof)
			}
		})
	}
}
