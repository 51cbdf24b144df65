// Package triton provides the gateway backend that runs batches on Triton
// Inference Server over gRPC (KServe v2 protocol, tritonstubs): Open waits
// for the server and model to be ready, reads the model's metadata and
// config (input names and dtype, pooled or hidden output, hidden size,
// max_batch_size), and Embed sends each padded [B,L] batch as one ModelInfer
// with raw little-endian tensors over a small pool of connections. Responses
// are decoded straight from gRPC's frames into pooled FP32 buffers (codec.go,
// pool.go) that each Output's Release returns. gRPC errors become gateway
// error kinds in errors.go. At Open it also logs, as warnings, what
// modelrepo finds wrong in the config Triton reports. It imports gateway,
// modelrepo, tritonstubs, grpc, protobuf and x/sync; its stand-in server
// for tests is tritontest.
package triton

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

// Defaults for zero Options fields.
const (
	defaultTimeout      = 10 * time.Second
	defaultReadyTimeout = 60 * time.Second
	defaultConns        = 2
	defaultMaxInflight  = 4
	// defaultMaxInflightBytes holds two [32,512,384] FP32 responses (25 MB
	// each) at once, or many smaller ones.
	defaultMaxInflightBytes = 64 << 20
	// maxRecvMsgSize fits last_hidden_state of large batches (64×512×384
	// FP32 is 50 MB); grpc-go's default of 4 MiB does not.
	maxRecvMsgSize = 256 << 20
)

// Options configure Open.
type Options struct {
	URL     string // host:port of Triton's gRPC endpoint (a "grpc://" prefix is allowed); required
	Model   string // model name in Triton's repository; required
	Version string // model version; "" = the latest ready one

	Timeout      time.Duration // per call (ModelInfer, readiness checks); 0 = 10s
	MaxInflight  int           // ModelInfer calls at once; 0 = 4
	Conns        int           // gRPC connections, used round robin; 0 = 2
	ReadyTimeout time.Duration // how long Open waits for server and model; 0 = 60s
	Logger       *slog.Logger

	// MaxInflightBytes bounds the FP32 bytes of the responses of the calls
	// in flight, as their shapes give them (Rows×Len×Hidden×4 for
	// last_hidden_state, Rows×Hidden×4 for sentence_embedding); 0 = 64 MiB.
	// A batch larger than that runs alone.
	MaxInflightBytes int64

	// Propagate, if set, adds trace headers (e.g. W3C traceparent from an
	// OpenTelemetry propagator) for the call in ctx.
	Propagate func(ctx context.Context, set func(key, value string))

	DialOptions []grpc.DialOption // appended to ours; for tests
}

// Backend runs batches on one Triton model. It satisfies infer.Backend and
// is safe for concurrent use.
type Backend struct {
	opts    Options
	logger  *slog.Logger
	plan    plan
	conns   []*grpc.ClientConn
	clients []tritonstubs.GRPCInferenceServiceClient
	health  []healthpb.HealthClient
	next    atomic.Uint32 // round-robin cursor over conns
	slots   chan struct{} // one per call in flight
	// budget holds each call's response bytes while it runs: every
	// [B,L,H] response in flight is tens of megabytes received into gRPC's
	// frames and decoded into a pooled buffer, so MaxInflight calls of
	// large batches alone could hold hundreds of megabytes at once, while
	// small batches can still run MaxInflight at a time.
	budget *semaphore.Weighted
	pool   *floatPool  // the buffers responses are decoded into
	codec  *inferCodec // ModelInfer's codec
	closed atomic.Bool
	// noHealth is set once the server answers Unimplemented to
	// grpc.health.v1: readiness then comes from ServerReady.
	noHealth atomic.Bool
}

// Open connects to Triton, waits up to ReadyTimeout for the server and the
// model to be ready, and reads the model's description. ctx bounds the
// whole startup.
func Open(ctx context.Context, opts Options) (*Backend, error) {
	opts.URL = strings.TrimPrefix(opts.URL, "grpc://")
	if opts.URL == "" {
		return nil, errors.New("triton: no URL (host:port of Triton's gRPC endpoint, e.g. localhost:8001)")
	}
	if opts.Model == "" {
		return nil, errors.New("triton: no model name")
	}
	if opts.Timeout < 0 || opts.ReadyTimeout < 0 || opts.MaxInflight < 0 || opts.MaxInflightBytes < 0 || opts.Conns < 0 {
		return nil, fmt.Errorf("triton: negative option: timeout %v, ready timeout %v, max inflight %d, max inflight bytes %d, conns %d",
			opts.Timeout, opts.ReadyTimeout, opts.MaxInflight, opts.MaxInflightBytes, opts.Conns)
	}
	opts.Timeout = cmp.Or(opts.Timeout, defaultTimeout)
	opts.ReadyTimeout = cmp.Or(opts.ReadyTimeout, defaultReadyTimeout)
	opts.MaxInflight = cmp.Or(opts.MaxInflight, defaultMaxInflight)
	opts.MaxInflightBytes = cmp.Or(opts.MaxInflightBytes, defaultMaxInflightBytes)
	opts.Conns = cmp.Or(opts.Conns, defaultConns)
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	protoCodec := encoding.GetCodecV2(protoenc.Name)
	if protoCodec == nil {
		return nil, errors.New("triton: grpc's proto codec is not registered")
	}
	b := &Backend{opts: opts, logger: logger, slots: make(chan struct{}, opts.MaxInflight),
		budget: semaphore.NewWeighted(opts.MaxInflightBytes),
		// Idle buffers: one per call in flight, plus the batches the
		// engine may still be pooling; no more bytes than may be in flight.
		pool:  newFloatPool(opts.MaxInflight+2, opts.MaxInflightBytes),
		codec: &inferCodec{proto: protoCodec}}
	if err := b.dial(); err != nil {
		return nil, err
	}
	if err := b.start(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Backend) dial() error {
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
		// Gentle: Triton drops clients that ping more often than it allows.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Reconnect within a few seconds of a Triton restart (grpc-go's
		// default backoff grows to 2 minutes).
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: 5 * time.Second,
			Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second}}),
	}, b.opts.DialOptions...)
	for range b.opts.Conns {
		cc, err := grpc.NewClient(b.opts.URL, dopts...)
		if err != nil {
			b.Close()
			return fmt.Errorf("triton: connect to %s: %w", b.opts.URL, err)
		}
		cc.Connect()
		b.conns = append(b.conns, cc)
		b.clients = append(b.clients, tritonstubs.NewGRPCInferenceServiceClient(cc))
		b.health = append(b.health, healthpb.NewHealthClient(cc))
	}
	return nil
}

// start waits for readiness, then reads the model's metadata and config.
func (b *Backend) start(ctx context.Context) error {
	began := time.Now()
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	c := b.clients[0]
	callCtx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	meta, err := c.ModelMetadata(callCtx, &tritonstubs.ModelMetadataRequest{Name: b.opts.Model, Version: b.opts.Version})
	if err != nil {
		return fmt.Errorf("triton: model %s metadata: %w", b.opts.Model, err)
	}
	cfg, err := c.ModelConfig(callCtx, &tritonstubs.ModelConfigRequest{Name: b.opts.Model, Version: b.opts.Version})
	if err != nil {
		return fmt.Errorf("triton: model %s config: %w", b.opts.Model, err)
	}
	warnConfig(b.logger, b.opts.Model, cfg.GetConfig())
	p, err := describe(b.opts.Model, meta, cfg.GetConfig())
	if err != nil {
		return fmt.Errorf("triton: %w", err)
	}
	b.plan = p
	inputs := make([]string, len(p.inputs))
	for i, in := range p.inputs {
		inputs[i] = in.name
	}
	dtype := "INT64"
	if p.spec.InputDType == gateway.Int32 {
		dtype = "INT32"
	}
	b.logger.Info("triton model ready", "url", b.opts.URL, "model", b.opts.Model, "platform", meta.GetPlatform(),
		"versions", meta.GetVersions(), "inputs", inputs, "dtype", dtype, "output", p.output, "hidden", p.spec.Hidden,
		"max_batch_size", p.spec.MaxBatch, "conns", b.opts.Conns, "max_inflight", b.opts.MaxInflight,
		"max_inflight_bytes", b.opts.MaxInflightBytes, "waited", time.Since(began))
	return nil
}

// waitReady polls server then model readiness until both hold or
// ReadyTimeout passes, logging what it waits for whenever that changes.
func (b *Backend) waitReady(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, b.opts.ReadyTimeout)
	defer cancel()
	delay := 50 * time.Millisecond
	var waitingFor string
	for {
		what, err := b.ready(ctx, b.opts.Timeout)
		if err == nil {
			return nil
		}
		if what != waitingFor {
			waitingFor = what
			b.logger.Info("waiting for triton to be ready", "waiting_for", what, "url", b.opts.URL, "model", b.opts.Model,
				"ready_timeout", b.opts.ReadyTimeout, "last_err", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if parent.Err() != nil {
				return fmt.Errorf("triton: startup cancelled while waiting for %s at %s: %w", what, b.opts.URL, err)
			}
			if neverSent(err) {
				return fmt.Errorf("triton: cannot reach %s within %v (is Triton running, with its gRPC port there?): %w",
					b.opts.URL, b.opts.ReadyTimeout, err)
			}
			return fmt.Errorf("triton: %s at %s not ready after %v (did Triton load model %q? its log says why not): %w",
				what, b.opts.URL, b.opts.ReadyTimeout, b.opts.Model, err)
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

// ready checks the server (grpc.health.v1, or ServerReady where that is
// not served), then the model, on each connection until one answers ready:
// after a Triton restart, connections come back one by one, and calls that
// cannot reach it on one are retried on another. what names the part that
// is not ready.
func (b *Backend) ready(ctx context.Context, timeout time.Duration) (what string, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	first := b.pick()
	for k := range b.conns {
		if what, err = b.readyOn(ctx, (first+k)%len(b.conns)); err == nil || ctx.Err() != nil {
			return what, err
		}
	}
	return what, err
}

func (b *Backend) readyOn(ctx context.Context, i int) (what string, err error) {
	if !b.noHealth.Load() {
		resp, err := b.health[i].Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
		switch {
		case status.Code(err) == codes.Unimplemented:
			b.noHealth.Store(true)
		case err != nil:
			return "server", err
		case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			return "server", fmt.Errorf("health status %s", resp.GetStatus())
		}
	}
	if b.noHealth.Load() {
		resp, err := b.clients[i].ServerReady(ctx, &tritonstubs.ServerReadyRequest{})
		if err != nil {
			return "server", err
		}
		if !resp.GetReady() {
			return "server", errors.New("server not ready")
		}
	}
	resp, err := b.clients[i].ModelReady(ctx, &tritonstubs.ModelReadyRequest{Name: b.opts.Model, Version: b.opts.Version})
	if err != nil {
		return "model " + b.opts.Model, err
	}
	if !resp.GetReady() {
		return "model " + b.opts.Model, errors.New("model not ready")
	}
	return "", nil
}

// pick returns the next connection's index, round robin.
func (b *Backend) pick() int {
	return int(b.next.Add(1) % uint32(len(b.conns)))
}

// Spec describes the model as Triton reported it at Open.
func (b *Backend) Spec() gateway.ModelSpec { return b.plan.spec }

// Health reports whether Triton and the model are ready now. It keeps no
// state: after a Triton restart it turns healthy again by itself.
func (b *Backend) Health(ctx context.Context) error {
	if b.closed.Load() {
		return errClosed()
	}
	if what, err := b.ready(ctx, b.opts.Timeout); err != nil {
		return unhealthy("triton "+what+" not ready", err)
	}
	return nil
}

func errClosed() error {
	return &gateway.Error{Kind: gateway.Unhealthy, Msg: "triton backend closed"}
}

// Close closes the connections; calls in flight fail. Later calls do
// nothing.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, cc := range b.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("triton: close: %w", err)
	}
	return nil
}
