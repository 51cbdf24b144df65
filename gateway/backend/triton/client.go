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

	"github.com/embedgate/embedgate/tritonstubs"
)

// ClientOptions configure Dial: what one Triton address shares among the
// models opened on it.
type ClientOptions struct {
	URL          string        // host:port of Triton's gRPC endpoint (a "grpc://" prefix is allowed); required
	Timeout      time.Duration // per call (ModelInfer, readiness checks, index); 0 = 10s
	MaxInflight  int           // ModelInfer calls at once, over every model; 0 = 4
	Conns        int           // gRPC connections, used round robin; 0 = 2
	ReadyTimeout time.Duration // how long Open waits for server and model; 0 = 60s
	Logger       *slog.Logger

	// MaxInflightBytes bounds the FP32 bytes of the responses of the calls
	// in flight, over every model, as their shapes give them
	// (Rows×Len×Hidden×4 for last_hidden_state, Rows×Hidden×4 for
	// sentence_embedding and logits); 0 = 64 MiB. A batch larger than that
	// runs alone.
	MaxInflightBytes int64

	// Propagate, if set, adds trace headers (e.g. W3C traceparent from an
	// OpenTelemetry propagator) for the call in ctx.
	Propagate func(ctx context.Context, set func(key, value string))

	// Metadata is sent with every call, e.g. the key of Triton's
	// --grpc-restricted-protocol (see RestrictedProtocolPrefix).
	Metadata map[string]string

	DialOptions []grpc.DialOption // appended to ours; for tests
}

// Client is one Triton address: its connections and the in-flight budget
// that every Backend opened on it shares, since they all load the one
// server. It is safe for concurrent use.
type Client struct {
	opts    ClientOptions
	logger  *slog.Logger
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

// Dial makes the connections to Triton and the in-flight budget. It does
// not wait for Triton: Open does, for each model. ctx is only checked:
// connecting happens in the background.
func Dial(ctx context.Context, opts ClientOptions) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("triton: dial: %w", err)
	}
	opts.URL = strings.TrimPrefix(opts.URL, "grpc://")
	if opts.URL == "" {
		return nil, errors.New("triton: no URL (host:port of Triton's gRPC endpoint, e.g. localhost:8001)")
	}
	if strings.Contains(opts.URL, ",") {
		return nil, fmt.Errorf("triton: %q is a list of addresses: dial each (ParseTarget) and balance over them (NewReplicas)", opts.URL)
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
	opts.DialOptions = append(metadataOptions(opts.Metadata), opts.DialOptions...)
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	protoCodec := encoding.GetCodecV2(protoenc.Name)
	if protoCodec == nil {
		return nil, errors.New("triton: grpc's proto codec is not registered")
	}
	c := &Client{opts: opts, logger: logger, slots: make(chan struct{}, opts.MaxInflight),
		budget: semaphore.NewWeighted(opts.MaxInflightBytes),
		// Idle buffers: one per call in flight, plus the batches the
		// engines may still be pooling; no more bytes than may be in flight.
		pool:  newFloatPool(opts.MaxInflight+2, opts.MaxInflightBytes),
		codec: &inferCodec{proto: protoCodec}}
	if err := c.dial(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) dial() error {
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
		grpc.WithKeepaliveParams(keepaliveParams()),
		// Reconnect within a few seconds of a Triton restart (grpc-go's
		// default backoff grows to 2 minutes).
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: 5 * time.Second,
			Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second}}),
	}, c.opts.DialOptions...)
	for range c.opts.Conns {
		cc, err := grpc.NewClient(c.opts.URL, dopts...)
		if err != nil {
			c.Close()
			return fmt.Errorf("triton: connect to %s: %w", c.opts.URL, err)
		}
		cc.Connect()
		c.conns = append(c.conns, cc)
		c.clients = append(c.clients, tritonstubs.NewGRPCInferenceServiceClient(cc))
		c.health = append(c.health, healthpb.NewHealthClient(cc))
	}
	return nil
}

// resetBackoff has every connection in reconnect backoff dial again now.
func (c *Client) resetBackoff() {
	for _, cc := range c.conns {
		cc.ResetConnectBackoff()
	}
}

// minPingInterval is the least time Triton's gRPC server accepts between
// two pings on a connection that sends no data: its default
// http2_min_recv_ping_interval_without_data_ms is 300000, with
// http2_max_ping_strikes 2 (server r25.06, src/grpc/grpc_server.h,
// KeepAliveOptions). A third ping sooner gets GOAWAY "too_many_pings",
// which fails every call on the connection.
const minPingInterval = 5 * time.Minute

// keepaliveParams are the client's keepalive: a ping only after
// minPingInterval without activity, and only while calls are in flight
// (Triton's keepalive_permit_without_calls is false, so an idle
// connection's pings are strikes, allowed once in two hours). Calls last
// Timeout, seconds, so a dead connection is found by the call's deadline
// rather than by a ping; the ping still guards long calls.
func keepaliveParams() keepalive.ClientParameters {
	return keepalive.ClientParameters{Time: minPingInterval, Timeout: 20 * time.Second, PermitWithoutStream: false}
}

// ready checks the server (grpc.health.v1, or ServerReady where that is
// not served), then the model, on each connection until one answers ready:
// after a Triton restart, connections come back one by one, and calls that
// cannot reach it on one are retried on another. what names the part that
// is not ready.
func (c *Client) ready(ctx context.Context, model, version string) (what string, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	first := c.pick()
	for k := range c.conns {
		if what, err = c.readyOn(ctx, (first+k)%len(c.conns), model, version); err == nil || ctx.Err() != nil {
			return what, err
		}
	}
	return what, err
}

func (c *Client) readyOn(ctx context.Context, i int, model, version string) (what string, err error) {
	if !c.noHealth.Load() {
		resp, err := c.health[i].Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
		switch {
		case status.Code(err) == codes.Unimplemented:
			c.noHealth.Store(true)
		case err != nil:
			return "server", err
		case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			return "server", fmt.Errorf("health status %s", resp.GetStatus())
		}
	}
	if c.noHealth.Load() {
		resp, err := c.clients[i].ServerReady(ctx, &tritonstubs.ServerReadyRequest{})
		if err != nil {
			return "server", err
		}
		if !resp.GetReady() {
			return "server", errors.New("server not ready")
		}
	}
	// Triton answers an error, not ready=false, for a model it does not
	// serve (unknown, or unloaded): either way the model is not ready.
	resp, err := c.clients[i].ModelReady(ctx, &tritonstubs.ModelReadyRequest{Name: model, Version: version})
	if err != nil {
		return "model " + model, err
	}
	if !resp.GetReady() {
		return "model " + model, errors.New("model not ready")
	}
	return "", nil
}

// pick returns the next connection's index, round robin.
func (c *Client) pick() int {
	return int(c.next.Add(1) % uint32(len(c.conns)))
}

// Close closes the connections: calls in flight on every backend opened on
// c fail, and later ones get the closed error. Later calls do nothing.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, cc := range c.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("triton: close: %w", err)
	}
	return nil
}
