// Package triton provides the gateway backend that runs batches on Triton
// Inference Server over gRPC (KServe v2 protocol, tritonstubs). A Client
// (Dial) is one Triton address: a small pool of connections and the
// in-flight budget that every model opened on it shares. Client.Open waits
// for the server and model to be ready, reads the model's metadata and
// config (input names and dtype, pooled or hidden output, hidden size,
// max_batch_size), and the Backend's Embed sends each padded [B,L] batch as
// one ModelInfer with raw little-endian tensors; Open does both for a
// single model. Replicas balances one model over several Triton replicas,
// a Backend on each, a fixed list or a DNS name's answer (ParseTarget,
// replicas.go, members.go). Client.Index lists the ready models with their config
// parameters, for discovery (index.go). Responses are decoded straight from
// gRPC's frames into pooled FP32 buffers (codec.go, pool.go) that each
// Output's Release returns; FP16 and BF16 outputs are widened into them
// (floats.go). gRPC errors become gateway error kinds in
// errors.go. At Open it also logs, as warnings, what modelrepo finds wrong
// in the config Triton reports. It imports gateway,
// modelrepo, tritonstubs, grpc, protobuf, x/sync and the Prometheus
// client (Replicas' per-replica series); its stand-in server
// for tests is tritontest.
package triton

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

// Defaults for zero Options and ClientOptions fields.
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

// Options configure Open: one model on a Triton address of its own.
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
	// last_hidden_state, Rows×Hidden×4 for sentence_embedding and
	// logits); 0 = 64 MiB. A batch larger than that runs alone.
	MaxInflightBytes int64

	// Propagate, if set, adds trace headers (e.g. W3C traceparent from an
	// OpenTelemetry propagator) for the call in ctx.
	Propagate func(ctx context.Context, set func(key, value string))

	DialOptions []grpc.DialOption // appended to ours; for tests
}

// client is the ClientOptions part of o.
func (o Options) client() ClientOptions {
	return ClientOptions{URL: o.URL, Timeout: o.Timeout, MaxInflight: o.MaxInflight, Conns: o.Conns,
		ReadyTimeout: o.ReadyTimeout, Logger: o.Logger, MaxInflightBytes: o.MaxInflightBytes,
		Propagate: o.Propagate, DialOptions: o.DialOptions}
}

// Backend runs batches on one Triton model, through its Client's
// connections and within its in-flight budget. It satisfies infer.Backend
// and is safe for concurrent use.
type Backend struct {
	c       *Client
	model   string
	version string
	plan    plan
	// own: Close closes c too, which Open made for this backend alone.
	own    bool
	closed atomic.Bool
	// life ends with Close, and with it this backend's calls in flight:
	// the connections, shared with other models, stay open.
	life context.Context
	stop context.CancelFunc
}

// Open connects to Triton, waits up to ReadyTimeout for the server and the
// model to be ready, and reads the model's description. ctx bounds the
// whole startup. The backend has connections of its own, which its Close
// closes; models that share an address share a Client instead (Dial).
func Open(ctx context.Context, opts Options) (*Backend, error) {
	c, err := Dial(ctx, opts.client())
	if err != nil {
		return nil, err
	}
	b, err := c.Open(ctx, opts.Model, opts.Version)
	if err != nil {
		c.Close()
		return nil, err
	}
	b.own = true
	return b, nil
}

// Open waits up to ReadyTimeout for the server and the model (version ""
// = the latest ready one) to be ready, and reads the model's description.
// ctx bounds the whole startup. The backend shares c's connections and
// in-flight budget; its Close leaves c open.
func (c *Client) Open(ctx context.Context, model, version string) (*Backend, error) {
	if model == "" {
		return nil, errors.New("triton: no model name")
	}
	if c.closed.Load() {
		return nil, fmt.Errorf("triton: open model %s: the client for %s is closed", model, c.opts.URL)
	}
	life, stop := context.WithCancel(context.Background())
	b := &Backend{c: c, model: model, version: version, life: life, stop: stop}
	if err := b.start(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// start waits for readiness, then reads the model's metadata and config.
func (b *Backend) start(ctx context.Context) error {
	began := time.Now()
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	c := b.c
	var meta *tritonstubs.ModelMetadataResponse
	err := c.call(ctx, func(ctx context.Context, cl tritonstubs.GRPCInferenceServiceClient) (err error) {
		meta, err = cl.ModelMetadata(ctx, &tritonstubs.ModelMetadataRequest{Name: b.model, Version: b.version})
		return err
	})
	if err != nil {
		return fmt.Errorf("triton: model %s metadata: %w", b.model, err)
	}
	cfg, err := c.modelConfig(ctx, b.model, b.version)
	if err != nil {
		return fmt.Errorf("triton: model %s config: %w", b.model, err)
	}
	warnConfig(c.logger, b.model, cfg)
	p, err := describe(b.model, meta, cfg)
	if err != nil {
		return fmt.Errorf("triton: %w", err)
	}
	p.spec.Version = servedVersion(b.version, meta.GetVersions())
	b.plan = p
	inputs := make([]string, len(p.inputs))
	for i, in := range p.inputs {
		inputs[i] = in.name
	}
	dtype := "INT64"
	if p.spec.InputDType == gateway.Int32 {
		dtype = "INT32"
	}
	c.logger.Info("triton model ready", "url", c.opts.URL, "model", b.model, "platform", meta.GetPlatform(),
		"versions", meta.GetVersions(), "inputs", inputs, "dtype", dtype, "output", p.output, "hidden", p.spec.Hidden,
		"max_batch_size", p.spec.MaxBatch, "conns", c.opts.Conns, "max_inflight", c.opts.MaxInflight,
		"max_inflight_bytes", c.opts.MaxInflightBytes, "waited", time.Since(began))
	return nil
}

// servedVersion is the version of the model that calls go to: the one
// asked for, else the highest of the ready versions Triton lists (what it
// runs for a call that names none).
func servedVersion(asked string, ready []string) string {
	if asked != "" {
		return asked
	}
	served := ""
	for _, v := range ready {
		if served == "" || newerVersion(v, served) {
			served = v
		}
	}
	return served
}

// waitReady polls server then model readiness until both hold or
// ReadyTimeout passes, logging what it waits for whenever that changes.
func (b *Backend) waitReady(parent context.Context) error {
	o := b.c.opts
	ctx, cancel := context.WithTimeout(parent, o.ReadyTimeout)
	defer cancel()
	delay := 50 * time.Millisecond
	var waitingFor string
	for {
		what, err := b.c.ready(ctx, b.model, b.version)
		if err == nil {
			return nil
		}
		if what != waitingFor {
			waitingFor = what
			b.c.logger.Info("waiting for triton to be ready", "waiting_for", what, "url", o.URL, "model", b.model,
				"ready_timeout", o.ReadyTimeout, "last_err", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if parent.Err() != nil {
				return fmt.Errorf("triton: startup cancelled while waiting for %s at %s: %w", what, o.URL, err)
			}
			if neverSent(err) {
				return fmt.Errorf("triton: cannot reach %s within %v (is Triton running, with its gRPC port there?): %w",
					o.URL, o.ReadyTimeout, err)
			}
			return fmt.Errorf("triton: %s at %s not ready after %v (did Triton load model %q? its log says why not): %w",
				what, o.URL, o.ReadyTimeout, b.model, err)
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

// Spec describes the model as Triton reported it at Open.
func (b *Backend) Spec() gateway.ModelSpec { return b.plan.spec }

// Health reports whether Triton and the model are ready now (a model
// unloaded through Triton's repository API is not). It keeps no state:
// after a Triton restart or a reload it turns healthy again by itself.
func (b *Backend) Health(ctx context.Context) error {
	if b.isClosed() {
		return errClosed()
	}
	if what, err := b.c.ready(ctx, b.model, b.version); err != nil {
		return unhealthy("triton "+what+" not ready", err)
	}
	return nil
}

// isClosed: the backend, or the client under it, is closed.
func (b *Backend) isClosed() bool { return b.closed.Load() || b.c.closed.Load() }

func errClosed() error {
	return &gateway.Error{Kind: gateway.Unhealthy, Msg: "triton backend closed"}
}

// Close ends the backend: its calls in flight fail, later ones get the
// closed error. It closes the connections only when Open made them for
// this backend alone. Later calls do nothing.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.stop()
	if b.own {
		return b.c.Close()
	}
	return nil
}
