// Package tritontest provides an in-process stand-in for Triton Inference
// Server: a loopback gRPC server implementing our GRPCInferenceService
// (ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata,
// ModelConfig, ModelInfer, RepositoryIndex, RepositoryModelLoad and
// RepositoryModelUnload) and grpc-go's standard health service, that runs
// real models (an onnx.Backend, or any value with Spec, Embed and Health).
// One server holds a repository of one or more models (WithModel), each
// with its own hidden size, max_batch_size and config parameters, loaded
// and unloaded at run time as with Triton's explicit model control.
// It reports metadata and the normalized config the way Triton does for an
// onnxruntime_onnx model (position_ids among the inputs of a model whose
// spec has HasPositionIDs; FP16 or BF16 outputs with WithOutputDType),
// validates requests as Triton does (same gRPC codes and messages,
// "[request id: …]" prefixes, the timeout parameter's type), and has fault
// modes switchable at run time: not ready, queue full, queue timeout, slow,
// INVALID_ARGUMENT, INTERNAL, INT32 inputs (like a TensorRT engine), and
// Stop/Restart on one address.
//
// Tests use Start or StartMulti; the benchmark harness uses New and Serve.
// It imports gateway, tritonstubs and grpc.
package tritontest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

// Model is what the server runs: infer.Backend's method set, declared here
// so that tests need not import infer.
type Model interface {
	Spec() gateway.ModelSpec
	Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error)
	Health(ctx context.Context) error
}

// Fault is a failure the server plays until it is set back to NoFault.
type Fault int

const (
	// NoFault serves normally.
	NoFault Fault = iota
	// NotReady: health NOT_SERVING, ServerReady and ModelReady false, and
	// ModelInfer NOT_FOUND "has no available versions", like a Triton whose
	// model is (re)loading.
	NotReady
	// QueueFull: ModelInfer answers UNAVAILABLE "Exceeds maximum queue size"
	// at once, like a dynamic batcher whose max_queue_size is reached.
	QueueFull
	// InvalidArgument: ModelInfer answers INVALID_ARGUMENT, as Triton does
	// for a request that does not fit the model (a gateway bug).
	InvalidArgument
	// InternalError: ModelInfer answers INTERNAL, like a backend runtime failure.
	InternalError
	// QueueTimeout: ModelInfer answers UNAVAILABLE "Request timeout
	// expired", without a request id, exactly as Triton's dynamic batcher
	// rejects a request that waited in its queue past its timeout
	// (timeout_action REJECT; core r25.06, src/dynamic_batch_scheduler.cc).
	QueueTimeout
)

func (f Fault) String() string {
	switch f {
	case NoFault:
		return "NoFault"
	case NotReady:
		return "NotReady"
	case QueueFull:
		return "QueueFull"
	case InvalidArgument:
		return "InvalidArgument"
	case InternalError:
		return "InternalError"
	case QueueTimeout:
		return "QueueTimeout"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Option configures New and Start (and NewMulti and StartMulti).
type Option func(*config)

// MinPingInterval is the least time between a client's keepalive pings
// that the server accepts, Triton's default
// (http2_min_recv_ping_interval_without_data_ms 300000); pings without a
// call in flight are refused at any rate, as keepalive_permit_without_calls
// false has it.
const MinPingInterval = 5 * time.Minute

// defaultMaxBatchSize is every model's max_batch_size unless set.
const defaultMaxBatchSize = 32

type config struct {
	// New's model: its name, max_batch_size and parameters, and whether an
	// option set them (NewMulti, which has no such model, refuses them).
	name         string
	maxBatchSize int
	params       map[string]string
	primarySet   bool

	models      []modelConfig // WithModel's
	int32Inputs bool
	noHealth    bool
	outputDType string     // WithOutputDType's
	gpu         *GPUTiming // WithGPUTiming's; nil = no simulated cost
}

// WithName sets the name of New's model (default "embed").
func WithName(name string) Option { return func(c *config) { c.name, c.primarySet = name, true } }

// WithMaxBatchSize sets New's model's max_batch_size (default 32). With 0,
// Triton batching is off and the dims carry the batch dim as -1.
func WithMaxBatchSize(n int) Option {
	return func(c *config) { c.maxBatchSize, c.primarySet = n, true }
}

// WithParameters sets the string parameters of New's model's config (see
// ModelParameters).
func WithParameters(p map[string]string) Option {
	return func(c *config) { c.params, c.primarySet = maps.Clone(p), true }
}

// WithInt32Inputs starts in INT32 mode (see Server.SetInt32Inputs).
func WithInt32Inputs() Option { return func(c *config) { c.int32Inputs = true } }

// WithOutputDType makes every model's output datatype dtype: "FP32" (the
// default), "FP16" or "BF16", as a TensorRT engine or half-precision
// export has it. Metadata and config say so, and ModelInfer rounds the
// model's FP32 values to it (to nearest, ties to even) on the wire.
func WithOutputDType(dtype string) Option { return func(c *config) { c.outputDType = dtype } }

// WithoutHealthService leaves grpc.health.v1 unregistered, so clients must
// fall back to ServerReady.
func WithoutHealthService() Option { return func(c *config) { c.noHealth = true } }

// Server is one stand-in Triton. Its methods are safe for concurrent use.
type Server struct {
	cfg    config
	out    outputDType       // every output's datatype
	first  string            // the model Name reports
	models map[string]*entry // the repository, by name; fixed at New
	health *health.Server

	fault  atomic.Int32
	delay  atomic.Int64 // time.Duration before each ModelInfer answers
	int32s atomic.Bool
	infers atomic.Int64
	gpu    chan struct{} // the simulated GPU: one batch at a time

	mu   sync.Mutex
	addr string
	gs   *grpc.Server // the running gRPC server; nil while stopped
	// lis is the listener to be served or being served; Stop closes it
	// itself, so that no dial succeeds once Stop returns, even when the
	// Serve loop has not reached it yet.
	lis     net.Listener
	stopped bool // between Stop and Restart
	serving bool // Serve was called
	closed  bool
	last    *tritonstubs.ModelInferRequest
	lastMD  metadata.MD
	restart chan net.Listener
	done    chan struct{} // closed by Close
}

// New checks the model and builds a server that serves it (and any added
// with WithModel); Serve runs it.
func New(model Model, opts ...Option) (*Server, error) {
	cfg := config{name: "embed", maxBatchSize: defaultMaxBatchSize}
	for _, o := range opts {
		o(&cfg)
	}
	first := modelConfig{name: cfg.name, model: model, maxBatchSize: cfg.maxBatchSize, params: cfg.params}
	return newServer(cfg, append([]modelConfig{first}, cfg.models...))
}

// NewMulti builds a server for the models added with WithModel (at least
// one); Name reports the first. WithName, WithMaxBatchSize and
// WithParameters, which describe New's model, are errors here.
func NewMulti(opts ...Option) (*Server, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.primarySet {
		return nil, errors.New("tritontest: NewMulti takes its models from WithModel; WithName, WithMaxBatchSize and WithParameters describe New's model")
	}
	return newServer(cfg, cfg.models)
}

func newServer(cfg config, models []modelConfig) (*Server, error) {
	repo, err := repository(models)
	if err != nil {
		return nil, err
	}
	out, err := parseOutputDType(cfg.outputDType)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, out: out, first: models[0].name, models: repo, health: health.NewServer(),
		restart: make(chan net.Listener), done: make(chan struct{}), gpu: make(chan struct{}, 1)}
	s.int32s.Store(cfg.int32Inputs)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// Start runs a server for model on a free loopback port until the test
// ends.
func Start(t testing.TB, model Model, opts ...Option) *Server {
	t.Helper()
	s, err := New(model, opts...)
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	return s
}

// StartMulti is Start for NewMulti: a server for the models added with
// WithModel.
func StartMulti(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := NewMulti(opts...)
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	return s
}

// StartOn is Start on addr, e.g. "127.0.0.2:8001": replicas behind one
// DNS name listen on one port at addresses of their own, as Kubernetes
// pods do (any 127.x.y.z is a loopback address on Linux).
func StartOn(t testing.TB, addr string, model Model, opts ...Option) *Server {
	t.Helper()
	s, err := New(model, opts...)
	if err != nil {
		t.Fatal(err)
	}
	startOn(t, s, addr)
	return s
}

func start(t testing.TB, s *Server) {
	t.Helper()
	startOn(t, s, "127.0.0.1:0")
}

func startOn(t testing.TB, s *Server, addr string) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("tritontest: listen: %v", err)
	}
	s.mu.Lock()
	s.addr, s.lis = lis.Addr().String(), lis // known before Serve runs
	s.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Errorf("tritontest: serve: %v", err)
		}
	})
}

// Serve serves on lis until Close, surviving Stop/Restart cycles; it
// returns nil after Close (also when Close came first). Call it once.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		lis.Close()
		return nil
	}
	if s.serving {
		s.mu.Unlock()
		lis.Close()
		return errors.New("tritontest: Serve called twice")
	}
	s.serving = true
	switch {
	case s.lis == nil && !s.stopped: // called directly, not by Start
		s.addr, s.lis = lis.Addr().String(), lis
	case s.lis != lis:
		// Start's listener was stopped before Serve ran (and Restart may
		// have made a new one, which it hands to the loop below).
		lis.Close()
		lis = nil
	}
	s.mu.Unlock()
	for {
		if lis != nil {
			gs := s.newGRPC()
			s.mu.Lock()
			closed, stopped := s.closed, s.stopped
			if !closed && !stopped {
				s.gs = gs
			}
			s.mu.Unlock()
			switch {
			case closed:
				lis.Close()
				return nil
			case stopped: // Stop came before this listener was served
				lis.Close()
			default:
				if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
					return fmt.Errorf("tritontest: %w", err)
				}
			}
		}
		select {
		case <-s.done:
			return nil
		case lis = <-s.restart:
		}
	}
}

func (s *Server) newGRPC() *grpc.Server {
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(256<<20),
		// Triton's defaults (server r25.06, src/grpc/grpc_server.h,
		// KeepAliveOptions): a client pinging more often is sent GOAWAY
		// "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: MinPingInterval, PermitWithoutStream: false}),
	)
	tritonstubs.RegisterGRPCInferenceServiceServer(gs, &service{s: s})
	if !s.cfg.noHealth {
		healthpb.RegisterHealthServer(gs, s.health)
	}
	return gs
}

// Addr is the host:port clients dial.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Name is the name of New's model (NewMulti: the first model added).
func (s *Server) Name() string { return s.first }

// Stop drops every connection and closes the listener: clients get
// "connection refused" until Restart. In-flight calls end with an error.
func (s *Server) Stop() {
	s.mu.Lock()
	gs, lis := s.gs, s.lis
	s.gs, s.lis, s.stopped = nil, nil, true
	s.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
	if lis != nil {
		lis.Close() // Serve may close it too: a second Close does nothing
	}
}

// Restart listens again on the same address after Stop, as a restarted
// Triton would.
func (s *Server) Restart() error {
	s.mu.Lock()
	if !s.stopped || s.closed {
		s.mu.Unlock()
		return errors.New("tritontest: Restart without Stop, or after Close")
	}
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("tritontest: listen again on %s: %w", s.addr, err)
	}
	// Serve's loop serves lis unless Stop runs again before it takes it.
	s.stopped, s.lis = false, lis
	s.mu.Unlock()
	select {
	case s.restart <- lis:
		return nil
	case <-s.done:
		lis.Close()
		return errors.New("tritontest: closed")
	}
}

// Close stops the server for good; Serve returns. Later calls do nothing.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.Stop()
}

// SetFault switches the fault played from now on.
func (s *Server) SetFault(f Fault) {
	s.fault.Store(int32(f))
	st := healthpb.HealthCheckResponse_SERVING
	if f == NotReady {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus("", st)
}

// SetDelay makes each ModelInfer wait d (or until the client gives up)
// before it runs; 0 turns it off.
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// SetInt32Inputs switches the reported input dtype to INT32 (like a
// TensorRT engine) or back to INT64; requests must match it.
func (s *Server) SetInt32Inputs(on bool) { s.int32s.Store(on) }

// InferCount is the number of ModelInfer calls received, faulted or not.
func (s *Server) InferCount() int64 { return s.infers.Load() }

// LastInfer returns the last ModelInfer request received and its metadata
// (nil before the first). Callers must not modify them.
func (s *Server) LastInfer() (*tritonstubs.ModelInferRequest, metadata.MD) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.lastMD
}

// LastTimeout returns the timeout parameter of the last ModelInfer request
// (see TimeoutParameter), and whether it had one of type int64.
func (s *Server) LastTimeout() (time.Duration, bool) {
	req, _ := s.LastInfer()
	p, ok := req.GetParameters()[TimeoutParameter].GetParameterChoice().(*tritonstubs.InferParameter_Int64Param)
	if !ok {
		return 0, false
	}
	return time.Duration(p.Int64Param) * time.Microsecond, true
}

func (s *Server) record(ctx context.Context, req *tritonstubs.ModelInferRequest) {
	s.infers.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.last, s.lastMD = req, md
	s.mu.Unlock()
}
