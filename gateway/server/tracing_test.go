package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/internal/testenv"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedgate/embedgate/gateway/auth"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/infer"
	"github.com/embedgate/embedgate/gateway/ratelimit"
	"github.com/embedgate/embedgate/gateway/tracing"
)

const (
	clientTraceID = "0af7651916cd43dd8448eb211c80319c"
	clientSpanID  = "b7ad6b7169203331"
	traceparent   = "00-" + clientTraceID + "-" + clientSpanID + "-01"
)

// tracedServer serves the tiny model on the real engine, with spans from
// tracing.New going to an in-memory exporter and a rate limiter that
// traces too, the way serve wires them. spans flushes and returns them.
func tracedServer(t *testing.T, disabled bool, tune ...engineOption) (s *testServer, spans func() tracetest.SpanStubs) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp, prop, shutdown, err := tracing.New(context.Background(), tracing.Options{Exporter: exp, Disabled: disabled}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	tracer := tp.Tracer(tracing.Scope)
	tune = append(tune, func(o *infer.Options, _ *infer.Backend) { o.Tracer = tracer })
	eng := newTinyEngine(t, tune...)
	logs := &testenv.LogBuffer{}
	reg := prometheus.NewRegistry()
	srv, err := newServer(Options{BodyLimit: 1 << 20, RequestTimeout: 10 * time.Second, Tracer: tracer, Propagator: prop,
		RateLimit: ratelimit.Limit{RPS: 1000, Burst: 1000}},
		slog.New(slog.NewJSONHandler(logs, nil)), oneModel(eng), reg, nil, ratelimit.NewMemory(ratelimit.MemoryOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.App().Shutdown() })
	return &testServer{Server: srv, reg: reg, logs: logs}, func() tracetest.SpanStubs {
		if f, ok := tp.(interface{ ForceFlush(context.Context) error }); ok {
			if err := f.ForceFlush(context.Background()); err != nil {
				t.Fatalf("ForceFlush: %v", err)
			}
		}
		return exp.GetSpans()
	}
}

func byName(spans tracetest.SpanStubs) map[string][]tracetest.SpanStub {
	m := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		m[s.Name] = append(m[s.Name], s)
	}
	return m
}

func attr(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func TestTraceSpans(t *testing.T) {
	s, spans := tracedServer(t, false)
	const secret = "confidential sentence"
	resp, body := s.post(t, "/embed", `{"inputs":["`+secret+`","another `+secret+`"]}`, "traceparent", traceparent)
	if resp.StatusCode != 200 {
		t.Fatalf("POST /embed = %d %s", resp.StatusCode, body)
	}
	got := byName(spans())
	reqs := got["POST /embed"]
	if len(reqs) != 1 {
		t.Fatalf("request spans = %d, want 1 (spans: %v)", len(reqs), got)
	}
	req := reqs[0]
	if req.SpanKind != trace.SpanKindServer || req.SpanContext.TraceID().String() != clientTraceID ||
		req.Parent.SpanID().String() != clientSpanID || !req.Parent.IsRemote() {
		t.Errorf("request span kind %v trace %s parent %s (remote %v), want server span in the client's trace under its span",
			req.SpanKind, req.SpanContext.TraceID(), req.Parent.SpanID(), req.Parent.IsRemote())
	}
	for key, want := range map[string]int64{"http.response.status_code": 200, "embedgate.inputs": 2} {
		if v, ok := attr(req, key); !ok || v.AsInt64() != want {
			t.Errorf("request span %s = %v, want %d", key, v.Emit(), want)
		}
	}
	if v, _ := attr(req, "embedgate.tokens"); v.AsInt64() < 4 {
		t.Errorf("request span embedgate.tokens = %v, want the prompt tokens", v.Emit())
	}
	if v, _ := attr(req, "http.route"); v.AsString() != "/embed" {
		t.Errorf("http.route = %q", v.AsString())
	}
	if v, _ := attr(req, "embedgate.model"); v.AsString() != "fake-model" {
		t.Errorf("embedgate.model = %q, want the served model's name", v.AsString())
	}
	for _, name := range []string{"ratelimit", "tokenize", "queue", "inference"} {
		if len(got[name]) != 1 {
			t.Errorf("%s spans = %d, want 1", name, len(got[name]))
			continue
		}
		sp := got[name][0]
		if sp.Parent.SpanID() != req.SpanContext.SpanID() || sp.SpanContext.TraceID() != req.SpanContext.TraceID() {
			t.Errorf("%s span parent %s trace %s, want the request span %s", name, sp.Parent.SpanID(), sp.SpanContext.TraceID(), req.SpanContext.SpanID())
		}
		if sp.EndTime.Before(sp.StartTime) {
			t.Errorf("%s span ends before it starts", name)
		}
	}
	if len(got["inference"]) == 1 {
		inf := got["inference"][0]
		for _, key := range []string{"embedgate.batch.rows", "embedgate.batch.padded_tokens", "embedgate.batch.request_rows"} {
			if v, ok := attr(inf, key); !ok || v.AsInt64() < 1 {
				t.Errorf("inference span %s = %v", key, v.Emit())
			}
		}
		if v, _ := attr(inf, "embedgate.batch.id"); v.AsString() == "" {
			t.Error("inference span has no batch id")
		}
	}
	if len(got["ratelimit"]) == 1 {
		rl := got["ratelimit"][0]
		if v, _ := attr(rl, "embedgate.ratelimit.allowed"); !v.AsBool() {
			t.Error("ratelimit span says refused")
		}
		if v, _ := attr(rl, "embedgate.ratelimit.subject"); v.AsString() != "ip" {
			t.Errorf("ratelimit subject = %q, want the kind only (ip)", v.AsString())
		}
	}
	if len(got["queue"]) == 1 && len(got["inference"]) == 1 && got["queue"][0].EndTime.After(got["inference"][0].StartTime) {
		t.Error("queue span ends after the inference span starts")
	}
	for _, sp := range spans() {
		for _, kv := range sp.Attributes {
			if strings.Contains(kv.Value.Emit(), "confidential") {
				t.Errorf("span %s attribute %s carries input text", sp.Name, kv.Key)
			}
		}
	}

	// Probes and unknown routes make no spans.
	n := len(spans())
	s.do(t, http.MethodGet, "/health", "", "")
	s.do(t, http.MethodGet, "/no-such-route", "", "")
	if got := len(spans()); got != n {
		t.Errorf("probe and 404 made %d spans", got-n)
	}
	// The span's strings are its own, not fasthttp's reused buffers.
	if v, _ := attr(req, "http.request.method"); v.AsString() != "POST" || req.Name != "POST /embed" {
		t.Errorf("after later requests the span says %q, method %q", req.Name, v.AsString())
	}
}

func TestTraceErrorStatus(t *testing.T) {
	s, spans := tracedServer(t, false)
	resp, _ := s.post(t, "/embed", `{"inputs":"a","prompt_name":"no-such-prompt"}`)
	if resp.StatusCode != 422 {
		t.Fatalf("status %d, want 422", resp.StatusCode)
	}
	reqs := byName(spans())["POST /embed"]
	if len(reqs) != 1 {
		t.Fatalf("request spans = %d", len(reqs))
	}
	if v, _ := attr(reqs[0], "http.response.status_code"); v.AsInt64() != 422 {
		t.Errorf("status_code = %v", v.Emit())
	}
	if v, _ := attr(reqs[0], "error.type"); v.AsString() != gateway.Validation.String() {
		t.Errorf("error.type = %q, want %q", v.AsString(), gateway.Validation.String())
	}
	if reqs[0].SpanContext.TraceID().String() == clientTraceID {
		t.Error("a request without traceparent joined the client's trace")
	}
}

func TestTraceDisabled(t *testing.T) {
	s, spans := tracedServer(t, true)
	if resp, body := s.post(t, "/embed", `{"inputs":"hello"}`, "traceparent", traceparent); resp.StatusCode != 200 {
		t.Fatalf("POST /embed = %d %s", resp.StatusCode, body)
	}
	if got := spans(); len(got) != 0 {
		t.Errorf("--disable-spans made %d spans", len(got))
	}
}

// viaTriton puts the in-process Triton stand-in between the engine and the
// tiny ONNX model, with the propagator on its Propagate hook as serve sets
// it. *srv is the stand-in once newTinyEngine ran.
func viaTriton(t *testing.T, prop propagation.TextMapPropagator, srv **tritontest.Server) engineOption {
	return func(_ *infer.Options, backend *infer.Backend) {
		ts := tritontest.Start(t, *backend)
		b, err := triton.Open(context.Background(), triton.Options{URL: ts.Addr(), Model: ts.Name(),
			Propagate: tracing.InjectFunc(prop), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatalf("triton.Open: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		*srv, *backend = ts, b
	}
}

func TestTraceparentReachesTriton(t *testing.T) {
	for _, disabled := range []bool{false, true} {
		name := map[bool]string{false: "spans", true: "spans disabled"}[disabled]
		t.Run(name, func(t *testing.T) {
			var ts *tritontest.Server
			s, spans := tracedServer(t, disabled, viaTriton(t, propagation.TraceContext{}, &ts))
			if resp, body := s.post(t, "/embed", `{"inputs":"hello"}`, "traceparent", traceparent); resp.StatusCode != 200 {
				t.Fatalf("POST /embed = %d %s", resp.StatusCode, body)
			}
			_, md := ts.LastInfer()
			got := md.Get("traceparent")
			if len(got) != 1 {
				t.Fatalf("traceparent metadata = %q, want one", got)
			}
			want := traceparent // disabled: the client's own context passes through
			if !disabled {
				infs := byName(spans())["inference"]
				if len(infs) != 1 {
					t.Fatalf("inference spans = %d, want 1", len(infs))
				}
				want = "00-" + clientTraceID + "-" + infs[0].SpanContext.SpanID().String() + "-01"
			}
			if got[0] != want {
				t.Errorf("traceparent at Triton = %q, want %q", got[0], want)
			}
		})
	}
}

func TestPprof(t *testing.T) {
	newPprofServer := func(t *testing.T, on bool, keys *auth.Keys) *testServer {
		t.Helper()
		srv, err := newServer(Options{BodyLimit: testBodyLimit, RequestTimeout: 2 * time.Second, Pprof: on},
			slog.New(slog.DiscardHandler), oneModel(newFake()), prometheus.NewRegistry(), keys, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.App().Shutdown() })
		return &testServer{Server: srv}
	}
	t.Run("off", func(t *testing.T) {
		s := newPprofServer(t, false, nil)
		resp, body := s.do(t, http.MethodGet, "/debug/pprof/", "", "")
		if resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET /debug/pprof/ = %d %s %s, want a JSON 404", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	})
	t.Run("on", func(t *testing.T) {
		s := newPprofServer(t, true, nil)
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
			if resp, body := s.do(t, http.MethodGet, path, "", ""); resp.StatusCode != 200 {
				t.Errorf("GET %s = %d %s, want 200", path, resp.StatusCode, body)
			}
		}
	})
	t.Run("behind auth", func(t *testing.T) {
		s := newPprofServer(t, true, testKeys(t))
		if resp, _ := s.do(t, http.MethodGet, "/debug/pprof/", "", ""); resp.StatusCode != 401 {
			t.Errorf("GET /debug/pprof/ without a key = %d, want 401", resp.StatusCode)
		}
	})
}
