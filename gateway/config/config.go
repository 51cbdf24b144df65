// Package config builds embedgate's Config from command-line flags and
// environment variables (every flag has one, named in upper snake case),
// prints --help, and runs the startup checks. Only cmd/embedgate imports it;
// each stage gets its own Options from cmd. Besides the standard library it
// imports catalog, whose Entry the one-model flags make (FlagEntry), and
// backend/triton for the one rule of a Triton address (ParseTarget).
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/catalog"
)

// Config is every setting of the gateway. Zero values of optional strings
// mean "not set".
type Config struct {
	// Catalogue: which models to serve. Without a models file or discovery
	// the one-model flags below make the whole catalogue (see OneModel).
	ModelsFile             string        // YAML or JSON, see catalog.Load
	TritonDiscover         bool          // serve the models of --triton-url's repository
	TritonDiscoverInterval time.Duration // between two listings of the repository
	ServedModelName        string        // "" = the last element of ModelID
	DefaultModel           string        // "" = the first model of the catalogue

	// Model
	ModelID             string // local directory or hub repo id; "" = none (only with a models file or discovery)
	Revision            string // hub branch, tag or commit
	Backend             string // "onnx" or "triton"
	DType               string // "auto", "float32", "float16", "int8"
	Pooling             string // "", "cls", "mean", "last-token"; "" = from the model's config
	Task                string // "", "embed", "rerank"; "" = from the model's config.json
	ORTLib              string // path to libonnxruntime.so for the onnx backend
	IntraOpThreads      int    // ONNX Runtime intra-op threads; Parse turns 0 into the CPU count
	TokenizationWorkers int    // Parse turns 0 into the CPU count

	DefaultPromptName string
	DefaultPrompt     string

	// Triton
	TritonURL     string
	TritonModel   string // "" = derived from ModelID, see TritonModelName
	TritonTimeout time.Duration
	// TritonResolveInterval is how often a dns: Triton address is
	// resolved again.
	TritonResolveInterval time.Duration
	TritonMaxInflight     int
	TritonMaxInflightMB   int // MiB of responses in flight
	// TritonRestrictedKey is KEY=VALUE, the key and value of Triton's
	// --grpc-restricted-protocol; "" = none. See TritonRestricted.
	TritonRestrictedKey string

	// Batching and limits
	MaxConcurrentRequests int
	MaxBatchTokens        int
	MaxBatchRequests      int
	MaxClientBatchSize    int
	AutoTruncate          bool
	PayloadLimit          int
	RequestTimeout        time.Duration

	// HTTP
	Hostname          string
	Port              int
	MetricsPort       int // 0 = /metrics only on the main port
	TrustProxyHeaders bool
	Pprof             bool
	ShutdownGrace     time.Duration
	ReadTimeout       time.Duration // a request's headers and body
	WriteTimeout      time.Duration // a whole response, once the handler has returned
	IdleTimeout       time.Duration // a keep-alive connection between requests
	MaxConnections    int           // open connections on --port; more wait in the listen backlog

	// Auth and rate limits
	APIKey            string
	APIKeysFile       string
	RedisURL          string
	RateLimitRPS      float64
	RateLimitBurst    int
	RateLimitTPM      int // 0 = no token limit
	RateLimitFailOpen bool

	// Embedding cache: see CacheOn, CacheRedisAddr and CachePerKey.
	Cache         bool          // false = no cache at all
	CacheMemoryMB int           // the memory tier's bound in MiB; 0 = no memory tier
	CacheRedisURL string        // the Redis tier's URL; "" = RedisURL
	CacheRedis    bool          // false = no Redis tier, even with a URL
	CacheTTL      time.Duration // of a Redis entry
	CacheScope    string        // "key" or "shared"; Parse turns "" into key with API keys, else shared
	CacheTimeout  time.Duration // bound of one Redis lookup; slower is a miss

	// Observability
	JSONOutput      bool
	OTLPEndpoint    string
	OTLPServiceName string
	DisableSpans    bool
}

// EnvName is the environment variable of a flag: "max-batch-tokens" →
// "MAX_BATCH_TOKENS".
func EnvName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlagSet binds every flag to c, with its default; defaults live here only.
func newFlagSet(c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("embedgate", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // Parse reports errors itself; --help goes to stderr

	fs.StringVar(&c.ModelID, "model-id", "./Qwen3-Embedding-0.6B", "local model directory or hub repo id (with --models-file or --triton-discover: no default; given, one more model)")
	fs.StringVar(&c.ServedModelName, "served-model-name", "", "name clients send as model for --model-id (default: last element of --model-id)")
	fs.StringVar(&c.ModelsFile, "models-file", "", "YAML or JSON file of the models to serve (name, aliases, model_id, backend, ...), reloaded on SIGHUP")
	fs.BoolVar(&c.TritonDiscover, "triton-discover", false, "serve every ready model of --triton-url's repository whose config.pbtxt has an hf_model_id parameter")
	fs.DurationVar(&c.TritonDiscoverInterval, "triton-discover-interval", 30*time.Second, "how often --triton-discover lists Triton's repository, so models loaded or unloaded there come and go")
	fs.StringVar(&c.DefaultModel, "default-model", "", "model (name or alias) for requests that name none and for the TEI routes (default: the first model)")
	fs.StringVar(&c.Revision, "revision", "main", "hub branch, tag or commit")
	fs.StringVar(&c.Backend, "backend", "onnx", "inference backend: onnx (in-process) or triton")
	fs.StringVar(&c.TritonURL, "triton-url", "localhost:8001", "Triton gRPC address; a comma-separated list of replicas serving the same models (batches go to the least loaded); or dns:///name:port, every address the name resolves to (a Kubernetes headless Service)")
	fs.DurationVar(&c.TritonResolveInterval, "triton-resolve-interval", 10*time.Second, "how often a dns:/// --triton-url is resolved again (also at once when a replica fails), so new Triton pods get traffic")
	fs.StringVar(&c.TritonModel, "triton-model", "", "model name in Triton's repository (default: last element of --model-id)")
	fs.DurationVar(&c.TritonTimeout, "triton-timeout", 10*time.Second, "deadline of one Triton call")
	fs.IntVar(&c.TritonMaxInflight, "triton-max-inflight", 4, "batches in flight to Triton at once")
	fs.IntVar(&c.TritonMaxInflightMB, "triton-max-inflight-mb", 64, "MiB of Triton responses in flight at once (last_hidden_state is rows × length × hidden × 4 bytes); a larger batch runs alone")
	fs.StringVar(&c.TritonRestrictedKey, "triton-restricted-key", "", "KEY=VALUE of Triton's --grpc-restricted-protocol=...:KEY=VALUE, sent with every Triton call (discovery's RepositoryIndex needs it when model-repository is restricted)")
	fs.IntVar(&c.TokenizationWorkers, "tokenization-workers", 0, "tokenizer goroutines (0 = CPU cores)")
	fs.StringVar(&c.DType, "dtype", "auto", "ONNX variant: auto, float32, float16 or int8 (auto = float32 on CPU)")
	fs.StringVar(&c.Pooling, "pooling", "", "cls, mean or last-token (default: the model's config)")
	fs.StringVar(&c.Task, "task", "", "embed or rerank (default: the model's config.json: a ...ForSequenceClassification architecture reranks)")
	fs.IntVar(&c.MaxConcurrentRequests, "max-concurrent-requests", 512, "requests admitted at once; beyond: 429")
	fs.IntVar(&c.MaxBatchTokens, "max-batch-tokens", 16384, "padded tokens (rows × longest) per batch")
	fs.IntVar(&c.MaxBatchRequests, "max-batch-requests", 32, "rows per batch (≤ Triton max_batch_size)")
	fs.IntVar(&c.MaxClientBatchSize, "max-client-batch-size", 2048, "inputs per request")
	fs.BoolVar(&c.AutoTruncate, "auto-truncate", true, "truncate over-long inputs when the request does not say")
	fs.IntVar(&c.PayloadLimit, "payload-limit", 2000000, "largest request body in bytes")
	fs.StringVar(&c.Hostname, "hostname", "0.0.0.0", "address to listen on")
	fs.IntVar(&c.Port, "port", 8080, "port to listen on (0: a free port, logged at start)")
	fs.StringVar(&c.APIKey, "api-key", "", "single bearer key (default: no auth)")
	fs.StringVar(&c.APIKeysFile, "api-keys-file", "", "file of named keys, each with its own limits")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis for distributed rate limits (default: in-memory)")
	fs.Float64Var(&c.RateLimitRPS, "rate-limit-rps", 80, "requests per second per key (per client IP without keys)")
	fs.IntVar(&c.RateLimitBurst, "rate-limit-burst", 50, "request burst per key")
	fs.IntVar(&c.RateLimitTPM, "rate-limit-tpm", 0, "tokens per minute per key (0 = no limit)")
	fs.BoolVar(&c.RateLimitFailOpen, "rate-limit-fail-open", true, "admit requests while Redis is unreachable")
	addCacheFlags(fs, c)
	fs.BoolVar(&c.JSONOutput, "json-output", false, "JSON logs")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", "", "OTLP gRPC endpoint for traces (default: no traces)")
	fs.StringVar(&c.OTLPServiceName, "otlp-service-name", "s3-embedding.server", "service name in traces")
	fs.BoolVar(&c.DisableSpans, "disable-spans", false, "do not create spans")
	fs.IntVar(&c.MetricsPort, "metrics-port", 0, "separate port for /metrics (0 = none)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 30*time.Second, "whole-request deadline")
	fs.BoolVar(&c.TrustProxyHeaders, "trust-proxy-headers", false, "take the client IP from X-Forwarded-For")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof")
	fs.IntVar(&c.IntraOpThreads, "intra-op-threads", 0, "ONNX Runtime intra-op threads (0 = CPU cores)")
	fs.StringVar(&c.DefaultPromptName, "default-prompt-name", "", "prompt (by name in the model's prompts) for requests without prompt_name")
	fs.StringVar(&c.DefaultPrompt, "default-prompt", "", "prompt text for requests without prompt_name")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 30*time.Second, "time to finish in-flight requests on shutdown")
	fs.StringVar(&c.ORTLib, "ort-lib", "", "path of libonnxruntime.so for the onnx backend (default: the system search path, then .cache/ort/ from make setup)")
	// Connection bounds, nginx's defaults: client_header_timeout and
	// client_body_timeout 60s, send_timeout 60s, keepalive_timeout 75s. 60s
	// reads a 2 MB body at 33 KB/s, far below any real client, while a
	// connection that sends nothing, part of its headers (slowloris) or a
	// short body is closed within it. The write timeout starts once the
	// handler has returned (the request's own deadline bounds the work) and
	// bounds writing the whole answer: 60s passes a 20 MB answer (2048
	// vectors of 1024 floats as JSON) at 350 KB/s, and cuts clients that
	// stop reading. 75s idle outlives
	// the 60s idle timeout of common load balancers (AWS ALB, nginx
	// upstream keep-alive), so they close first and never send on a
	// connection the gateway is closing.
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 60*time.Second, "time to read a request's headers and body; bounds slow and stalled senders")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 60*time.Second, "time to write a response; bounds clients that do not read")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 75*time.Second, "time a keep-alive connection may wait for its next request")
	// Each open connection holds a descriptor, a goroutine and its read
	// and write buffers: 8 KB of RSS idle, 21 KB once it has served a
	// request (measured with 5000), so 10000 cost at most ~200 MB. That is
	// far more connections than the clients of one replica
	// (--max-concurrent-requests is 512) and far below the descriptor
	// limits of containers and systemd (524288 and more). It is lowered at
	// start, with a warning, when the limit cannot hold it plus a reserve.
	fs.IntVar(&c.MaxConnections, "max-connections", 10000, "open connections on --port; more wait until one closes")
	return fs
}

// addCacheFlags binds the embedding cache's flags (issue 13) to c.
func addCacheFlags(fs *flag.FlagSet, c *Config) {
	fs.BoolVar(&c.Cache, "cache", true, "cache embeddings per input (false = no cache at all)")
	fs.IntVar(&c.CacheMemoryMB, "cache-memory-mb", 256, "MiB of embeddings the in-process cache holds (0 = no memory tier)")
	fs.StringVar(&c.CacheRedisURL, "cache-redis-url", "", "Redis the cache shares across replicas (default: --redis-url)")
	fs.BoolVar(&c.CacheRedis, "cache-redis", true, "use the Redis tier of the cache (false = keep Redis for rate limits only)")
	fs.DurationVar(&c.CacheTTL, "cache-ttl", 7*24*time.Hour, "lifetime of a cache entry in Redis")
	fs.StringVar(&c.CacheScope, "cache-scope", "", "key (entries per API key: no tenant learns what another embedded) or shared (default: key with --api-key or --api-keys-file, else shared)")
	fs.DurationVar(&c.CacheTimeout, "cache-timeout", 20*time.Millisecond, "bound of one Redis cache lookup; a slower one is a miss")
}

// Parse reads args (without the program name) and then, for every flag not
// given in args, its environment variable through getenv: a flag wins over
// its env var, which wins over the default. An empty env var counts as unset.
// --help or -h prints the usage to stderr and returns flag.ErrHelp. Parse does
// not call Validate.
func Parse(args []string, getenv func(string) string, stderr io.Writer) (*Config, error) {
	c := &Config{}
	fs := newFlagSet(c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stderr, fs)
			return nil, err
		}
		return nil, fmt.Errorf("%w (see --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := EnvName(f.Name)
		v := getenv(env)
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: invalid value for --%s: %w", env, v, f.Name, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true }) // now with the env's
	// --model-id's default is the one model of a gateway told nothing else;
	// next to a models file or discovery it would add a model nobody asked for.
	if !given["model-id"] && !c.OneModel() {
		c.ModelID = ""
	}
	// 0 = "as many as the machine has": resolved once here, so every stage
	// gets a real number (ONNX Runtime's own default used one thread).
	if c.TokenizationWorkers == 0 {
		c.TokenizationWorkers = runtime.NumCPU()
	}
	if c.IntraOpThreads == 0 {
		c.IntraOpThreads = runtime.NumCPU()
	}
	// A shared cache lets one tenant learn, by timing, whether another
	// embedded a text: with keys, entries are per key unless asked.
	if c.CacheScope == "" {
		c.CacheScope = ScopeShared
		if c.APIKey != "" || c.APIKeysFile != "" {
			c.CacheScope = ScopeKey
		}
	}
	return c, nil
}

// printUsage lists every flag with its env var, default and description.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: embedgate [flags]\n       embedgate models [flags]      print the models the flags would serve, and check them\n       embedgate tokenize [flags] ...\n\n")
	fmt.Fprintf(w, "Every flag can also be set by its environment variable; a flag wins over\nits env var, which wins over the default. Bools take true/false/1/0,\ndurations Go syntax (500ms, 30s, 1m).\n\nModels: --model-id serves one, named --served-model-name. --models-file\nand --triton-discover serve many; a request picks one with its model\nfield, and --default-model serves requests that name none.\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "FLAG\tENV\tDEFAULT\tDESCRIPTION\n")
	fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		if def == "" {
			def = "none"
		}
		fmt.Fprintf(tw, "--%s\t%s\t%s\t%s\n", f.Name, EnvName(f.Name), def, f.Usage)
	})
	tw.Flush()
}

// TritonModelName is --triton-model, or else the last element of --model-id
// ("BAAI/bge-small-en-v1.5" → "bge-small-en-v1.5").
func (c *Config) TritonModelName() string {
	if c.TritonModel != "" {
		return c.TritonModel
	}
	return lastElement(c.ModelID)
}

// ServedName is --served-model-name, or else the last element of
// --model-id, as TEI names its one model.
func (c *Config) ServedName() string {
	if c.ServedModelName != "" {
		return c.ServedModelName
	}
	return lastElement(c.ModelID)
}

func lastElement(modelID string) string {
	return path.Base(strings.TrimRight(strings.ReplaceAll(modelID, "\\", "/"), "/"))
}

// OneModel reports whether the one-model flags are the whole catalogue (no
// --models-file, no --triton-discover). Then, as today and as TEI does, a
// request naming any model is served by the one model; otherwise names are
// strict.
func (c *Config) OneModel() bool { return c.ModelsFile == "" && !c.TritonDiscover }

// FlagEntry is the catalogue entry the one-model flags describe: --model-id
// named --served-model-name, with --revision, --backend, --pooling, --task,
// --default-prompt-name and, for Triton, --triton-model and --triton-url.
// Batch limits are left 0: the flags are every entry's defaults anyway. ok
// is false when there is no --model-id (Parse clears its default when a
// models file or discovery says what to serve).
func (c *Config) FlagEntry() (e catalog.Entry, ok bool) {
	if c.ModelID == "" {
		return catalog.Entry{}, false
	}
	e = catalog.Entry{
		Name:              c.ServedName(),
		ModelID:           c.ModelID,
		Revision:          c.Revision,
		Backend:           c.Backend,
		Pooling:           c.Pooling,
		Task:              c.Task,
		DefaultPromptName: c.DefaultPromptName,
		Source:            "flags",
	}
	if c.Backend == "triton" {
		e.TritonModel, e.TritonURL = c.TritonModelName(), c.TritonURL
	}
	return e, true
}

// The values of --cache-scope.
const (
	ScopeKey    = "key"    // entries per API key
	ScopeShared = "shared" // one set of entries for every client
)

// CacheRedisAddr is the URL of the cache's Redis tier: --cache-redis-url,
// else --redis-url; "" when the cache, or its Redis tier, is off.
func (c *Config) CacheRedisAddr() string {
	if !c.Cache || !c.CacheRedis {
		return ""
	}
	if c.CacheRedisURL != "" {
		return c.CacheRedisURL
	}
	return c.RedisURL
}

// CacheOn reports whether the cache runs: --cache, with a memory tier or a
// Redis tier to keep entries in.
func (c *Config) CacheOn() bool {
	return c.Cache && (c.CacheMemoryMB > 0 || c.CacheRedisAddr() != "")
}

// CachePerKey reports whether a request with an API key hits only the
// entries of its own key (--cache-scope key).
func (c *Config) CachePerKey() bool { return c.CacheScope == ScopeKey }

// Validate returns every problem of c at once, joined, one message each.
func (c *Config) Validate() error {
	var p problems
	c.checkCatalog(&p)
	c.checkModel(&p)
	c.checkPipeline(&p)
	c.checkServer(&p)
	c.checkCache(&p)
	return errors.Join(p...)
}

// maxCacheMemoryMB bounds --cache-memory-mb (1 TiB), far above any host,
// so that the byte count cannot overflow.
const maxCacheMemoryMB = 1 << 20

// checkCache checks the cache's flags, only when the cache is on: with
// --cache=false they mean nothing.
func (c *Config) checkCache(p *problems) {
	if !c.Cache {
		return
	}
	p.atLeast("cache-memory-mb", c.CacheMemoryMB, 0)
	if c.CacheMemoryMB > maxCacheMemoryMB {
		p.add("--cache-memory-mb must be at most %d, got %d", maxCacheMemoryMB, c.CacheMemoryMB)
	}
	p.oneOf("cache-scope", c.CacheScope, []string{ScopeKey, ScopeShared}, false)
	p.positive("cache-timeout", c.CacheTimeout)
	// Redis expires keys in whole seconds: less than one would be none.
	if c.CacheTTL < time.Second {
		p.add("--cache-ttl must be at least 1s, got %s", c.CacheTTL)
	}
}

func (c *Config) checkCatalog(p *problems) {
	if c.TritonDiscover {
		if c.TritonURL == "" {
			p.add("--triton-url is empty but --triton-discover is on")
		}
		p.positive("triton-discover-interval", c.TritonDiscoverInterval)
	}
	if c.ModelID == "" && c.ServedModelName != "" {
		p.add("--served-model-name %q is set but --model-id is not: it names the --model-id model", c.ServedModelName)
	}
	if c.ModelID == "" && c.Task != "" {
		p.add("--task %q is set but --model-id is not: it is the --model-id model's task (a models file entry has its own task)", c.Task)
	}
	if c.ModelID != "" {
		if err := catalog.CheckName(c.ServedName()); err != nil {
			p.add("--served-model-name: %v (the default is the last element of --model-id)", err)
		}
	}
	if c.DefaultModel != "" {
		if err := catalog.CheckName(c.DefaultModel); err != nil {
			p.add("--default-model: %v", err)
		}
	}
}

func (c *Config) checkModel(p *problems) {
	if c.ModelID == "" && c.OneModel() {
		p.add("--model-id is empty: give it, --models-file or --triton-discover")
	}
	if c.Revision == "" {
		p.add("--revision is empty")
	}
	p.oneOf("backend", c.Backend, []string{"onnx", "triton"}, false)
	p.oneOf("dtype", c.DType, []string{"auto", "float32", "float16", "int8"}, false)
	p.oneOf("pooling", c.Pooling, []string{"cls", "mean", "last-token"}, true)
	p.oneOf("task", c.Task, []string{catalog.TaskEmbed, catalog.TaskRerank}, true)
	if c.Backend == "triton" && c.TritonURL == "" {
		p.add("--triton-url is empty but --backend is triton")
	}
	if c.TritonURL != "" {
		if _, err := triton.ParseTarget(c.TritonURL); err != nil {
			p.add("--triton-url: %v", err)
		}
	}
	p.positive("triton-resolve-interval", c.TritonResolveInterval)
	p.positive("triton-timeout", c.TritonTimeout)
	p.atLeast("triton-max-inflight", c.TritonMaxInflight, 1)
	p.atLeast("triton-max-inflight-mb", c.TritonMaxInflightMB, 1)
	if _, _, err := splitRestrictedKey(c.TritonRestrictedKey); err != nil {
		p.add("--triton-restricted-key: %v", err)
	}
	if c.DefaultPromptName != "" && c.DefaultPrompt != "" {
		p.add("--default-prompt-name and --default-prompt are both set: use one")
	}
}

func (c *Config) checkPipeline(p *problems) {
	p.atLeast("tokenization-workers", c.TokenizationWorkers, 0)
	p.atLeast("intra-op-threads", c.IntraOpThreads, 0)
	p.atLeast("max-concurrent-requests", c.MaxConcurrentRequests, 1)
	p.atLeast("max-batch-tokens", c.MaxBatchTokens, 1)
	p.atLeast("max-batch-requests", c.MaxBatchRequests, 1)
	p.atLeast("max-client-batch-size", c.MaxClientBatchSize, 1)
	if c.RateLimitRPS <= 0 {
		p.add("--rate-limit-rps must be positive, got %g", c.RateLimitRPS)
	}
	p.atLeast("rate-limit-burst", c.RateLimitBurst, 1)
	p.atLeast("rate-limit-tpm", c.RateLimitTPM, 0)
}

func (c *Config) checkServer(p *problems) {
	p.atLeast("payload-limit", c.PayloadLimit, 1)
	p.positive("request-timeout", c.RequestTimeout)
	if c.ShutdownGrace < 0 {
		p.add("--shutdown-grace must not be negative, got %s", c.ShutdownGrace)
	}
	p.positive("read-timeout", c.ReadTimeout)
	p.positive("write-timeout", c.WriteTimeout)
	p.positive("idle-timeout", c.IdleTimeout)
	p.atLeast("max-connections", c.MaxConnections, 1)
	p.port("port", c.Port)
	p.port("metrics-port", c.MetricsPort)
	if c.MetricsPort != 0 && c.MetricsPort == c.Port {
		p.add("--metrics-port %d is the same as --port: leave it 0 to serve /metrics on the main port", c.MetricsPort)
	}
}

// problems collects what Validate finds, one error each.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

func (p *problems) oneOf(name, v string, choices []string, allowEmpty bool) {
	if (v == "" && allowEmpty) || slices.Contains(choices, v) {
		return
	}
	p.add("--%s %q is not one of %s", name, v, strings.Join(choices, ", "))
}

func (p *problems) atLeast(name string, v, min int) {
	if v < min {
		p.add("--%s must be at least %d, got %d", name, min, v)
	}
}

func (p *problems) positive(name string, d time.Duration) {
	if d <= 0 {
		p.add("--%s must be a positive duration, got %s", name, d)
	}
}

// port checks a port flag: 0 is a free port the kernel picks (logged) for
// --port, and no listener for --metrics-port.
func (p *problems) port(name string, v int) {
	if v < 0 || v > 65535 {
		p.add("--%s %d is outside 0-65535", name, v)
	}
}
