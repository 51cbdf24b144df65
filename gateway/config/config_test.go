package config

import (
	"bytes"
	"errors"
	"flag"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/catalog"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse(nil, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatalf("Parse(nil) error = %v", err)
	}
	want := Config{
		TritonDiscoverInterval: 30 * time.Second,
		ModelID:                "./Qwen3-Embedding-0.6B", Revision: "main", Backend: "onnx", DType: "auto",
		TritonURL: "localhost:8001", TritonTimeout: 10 * time.Second, TritonResolveInterval: 10 * time.Second, TritonMaxInflight: 4, TritonMaxInflightMB: 64,
		TokenizationWorkers: runtime.NumCPU(), IntraOpThreads: runtime.NumCPU(),
		MaxConcurrentRequests: 512, MaxBatchTokens: 16384, MaxBatchRequests: 32, MaxClientBatchSize: 2048,
		AutoTruncate: true, PayloadLimit: 2000000, RequestTimeout: 30 * time.Second,
		Hostname: "0.0.0.0", Port: 8080, ShutdownGrace: 30 * time.Second,
		ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 75 * time.Second, MaxConnections: 10000,
		RateLimitRPS: 80, RateLimitBurst: 50, RateLimitFailOpen: true,
		OTLPServiceName: "s3-embedding.server",
		Cache:           true, CacheMemoryMB: 256, CacheRedis: true, CacheTTL: 7 * 24 * time.Hour, CacheScope: "shared",
		CacheTimeout: 20 * time.Millisecond,
	}
	if *c != want {
		t.Errorf("Parse(nil) = %+v, want %+v", *c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: Validate() = %v, want nil", err)
	}
}

func TestParsePrecedence(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(c *Config) bool
		want  string
	}{
		{"default", nil, nil, func(c *Config) bool { return c.Port == 8080 }, "Port 8080"},
		{"env over default", nil, map[string]string{"PORT": "9000"}, func(c *Config) bool { return c.Port == 9000 }, "Port 9000"},
		{"flag over env", []string{"--port", "9100"}, map[string]string{"PORT": "9000"}, func(c *Config) bool { return c.Port == 9100 }, "Port 9100"},
		{"flag with =", []string{"--port=9200"}, nil, func(c *Config) bool { return c.Port == 9200 }, "Port 9200"},
		{"empty env is unset", nil, map[string]string{"PORT": ""}, func(c *Config) bool { return c.Port == 8080 }, "Port 8080"},
		{"bool env 0", nil, map[string]string{"AUTO_TRUNCATE": "0"}, func(c *Config) bool { return !c.AutoTruncate }, "AutoTruncate false"},
		{"bool env 1", nil, map[string]string{"JSON_OUTPUT": "1"}, func(c *Config) bool { return c.JSONOutput }, "JSONOutput true"},
		{"bool env false", nil, map[string]string{"RATE_LIMIT_FAIL_OPEN": "false"}, func(c *Config) bool { return !c.RateLimitFailOpen }, "RateLimitFailOpen false"},
		{"bool flag over env", []string{"--auto-truncate=true"}, map[string]string{"AUTO_TRUNCATE": "false"}, func(c *Config) bool { return c.AutoTruncate }, "AutoTruncate true"},
		{"bool flag bare", []string{"--pprof"}, nil, func(c *Config) bool { return c.Pprof }, "Pprof true"},
		{"duration env", nil, map[string]string{"REQUEST_TIMEOUT": "1m30s"}, func(c *Config) bool { return c.RequestTimeout == 90*time.Second }, "RequestTimeout 1m30s"},
		{"duration flag", []string{"--triton-timeout", "250ms"}, nil, func(c *Config) bool { return c.TritonTimeout == 250*time.Millisecond }, "TritonTimeout 250ms"},
		{"float env", nil, map[string]string{"RATE_LIMIT_RPS": "2.5"}, func(c *Config) bool { return c.RateLimitRPS == 2.5 }, "RateLimitRPS 2.5"},
		{"string env", nil, map[string]string{"MODEL_ID": "BAAI/bge-small-en-v1.5"}, func(c *Config) bool { return c.ModelID == "BAAI/bge-small-en-v1.5" }, "ModelID from env"},
		{"ort lib env", nil, map[string]string{"ORT_LIB": "/x/libonnxruntime.so.1"}, func(c *Config) bool { return c.ORTLib == "/x/libonnxruntime.so.1" }, "ORTLib from env"},
		{"prompt env", nil, map[string]string{"DEFAULT_PROMPT_NAME": "query"}, func(c *Config) bool { return c.DefaultPromptName == "query" }, "DefaultPromptName query"},
		{"workers explicit", []string{"--tokenization-workers", "3"}, nil, func(c *Config) bool { return c.TokenizationWorkers == 3 }, "TokenizationWorkers 3"},
		{"workers 0 = cpus", nil, map[string]string{"TOKENIZATION_WORKERS": "0"}, func(c *Config) bool { return c.TokenizationWorkers == runtime.NumCPU() }, "TokenizationWorkers NumCPU"},
		{"seed's small defaults", []string{"--max-concurrent-requests", "1", "--max-batch-tokens", "1384", "--max-batch-requests", "5", "--max-client-batch-size", "2"}, nil,
			func(c *Config) bool {
				return c.MaxConcurrentRequests == 1 && c.MaxBatchTokens == 1384 && c.MaxBatchRequests == 5 && c.MaxClientBatchSize == 2
			}, "seed limits"},
		{"connection bounds", []string{"--read-timeout=300ms", "--idle-timeout", "2s"},
			map[string]string{"WRITE_TIMEOUT": "1m", "MAX_CONNECTIONS": "64", "IDLE_TIMEOUT": "9s"},
			func(c *Config) bool {
				return c.ReadTimeout == 300*time.Millisecond && c.WriteTimeout == time.Minute && c.IdleTimeout == 2*time.Second && c.MaxConnections == 64
			}, "connection bounds from flags and env"},
		{"models file env", nil, map[string]string{"MODELS_FILE": "/etc/embedgate/models.yaml"},
			func(c *Config) bool { return c.ModelsFile == "/etc/embedgate/models.yaml" }, "ModelsFile from env"},
		{"discovery env", nil, map[string]string{"TRITON_DISCOVER": "true", "TRITON_DISCOVER_INTERVAL": "5s"},
			func(c *Config) bool { return c.TritonDiscover && c.TritonDiscoverInterval == 5*time.Second }, "discovery every 5s"},
		{"discovery flags", []string{"--triton-discover", "--triton-discover-interval=1m"}, map[string]string{"TRITON_DISCOVER": "false"},
			func(c *Config) bool { return c.TritonDiscover && c.TritonDiscoverInterval == time.Minute }, "discovery every 1m"},
		{"names env", nil, map[string]string{"SERVED_MODEL_NAME": "bge", "DEFAULT_MODEL": "text-embedding-3-small"},
			func(c *Config) bool { return c.ServedModelName == "bge" && c.DefaultModel == "text-embedding-3-small" }, "names from env"},
		{"names flags", []string{"--served-model-name", "bge", "--default-model=e5"}, nil,
			func(c *Config) bool { return c.ServedModelName == "bge" && c.DefaultModel == "e5" }, "names from flags"},
		{"one model keeps the default model id", nil, nil,
			func(c *Config) bool { return c.ModelID == "./Qwen3-Embedding-0.6B" && c.OneModel() }, "ModelID default"},
		{"models file drops the default model id", []string{"--models-file", "m.yaml"}, nil,
			func(c *Config) bool { return c.ModelID == "" && !c.OneModel() }, "ModelID empty"},
		{"discovery drops the default model id", nil, map[string]string{"TRITON_DISCOVER": "1"},
			func(c *Config) bool { return c.ModelID == "" && !c.OneModel() }, "ModelID empty"},
		{"discovery off keeps it", nil, map[string]string{"TRITON_DISCOVER": "false"},
			func(c *Config) bool { return c.ModelID == "./Qwen3-Embedding-0.6B" && c.OneModel() }, "ModelID default"},
		{"model id flag with a models file", []string{"--models-file", "m.yaml", "--model-id", "BAAI/bge-small-en-v1.5"}, nil,
			func(c *Config) bool { return c.ModelID == "BAAI/bge-small-en-v1.5" }, "ModelID given"},
		{"model id env with discovery", []string{"--triton-discover"}, map[string]string{"MODEL_ID": "BAAI/bge-small-en-v1.5"},
			func(c *Config) bool { return c.ModelID == "BAAI/bge-small-en-v1.5" }, "ModelID given"},
		{"cache defaults to shared without keys", nil, nil,
			func(c *Config) bool { return c.CacheScope == ScopeShared && !c.CachePerKey() }, "CacheScope shared"},
		{"cache per key with a key", nil, map[string]string{"API_KEY": "sk"},
			func(c *Config) bool { return c.CacheScope == ScopeKey && c.CachePerKey() }, "CacheScope key"},
		{"cache per key with a keys file", []string{"--api-keys-file", "k.yaml"}, nil,
			func(c *Config) bool { return c.CacheScope == ScopeKey }, "CacheScope key"},
		{"cache shared by choice", []string{"--cache-scope", "shared"}, map[string]string{"API_KEY": "sk"},
			func(c *Config) bool { return c.CacheScope == ScopeShared }, "CacheScope shared"},
		{"cache flags from env", nil, map[string]string{"CACHE": "false", "CACHE_MEMORY_MB": "0", "CACHE_REDIS_URL": "redis://c:6379",
			"CACHE_REDIS": "0", "CACHE_TTL": "1h", "CACHE_TIMEOUT": "5ms", "CACHE_SCOPE": "key"},
			func(c *Config) bool {
				return !c.Cache && c.CacheMemoryMB == 0 && c.CacheRedisURL == "redis://c:6379" && !c.CacheRedis &&
					c.CacheTTL == time.Hour && c.CacheTimeout == 5*time.Millisecond && c.CacheScope == ScopeKey
			}, "cache settings from env"},
		{"HF_TOKEN is not a flag", nil, map[string]string{"HF_TOKEN": "secret"}, func(c *Config) bool { return c.APIKey == "" }, "no key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, envOf(tt.env), &bytes.Buffer{})
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tt.args, err)
			}
			if !tt.check(c) {
				t.Errorf("Parse(%q) with env %v = %+v, want %s", tt.args, tt.env, *c, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"bad int flag", []string{"--port", "abc"}, nil, []string{"port", "abc", "--help"}},
		{"unknown flag", []string{"--nope"}, nil, []string{"nope"}},
		{"bad int env", nil, map[string]string{"PORT": "abc"}, []string{"PORT", "abc", "--port"}},
		{"bad bool env", nil, map[string]string{"AUTO_TRUNCATE": "maybe"}, []string{"AUTO_TRUNCATE", "maybe"}},
		{"bad duration env", nil, map[string]string{"REQUEST_TIMEOUT": "30"}, []string{"REQUEST_TIMEOUT", "30"}},
		{"bad discover env", nil, map[string]string{"TRITON_DISCOVER": "yes"}, []string{"TRITON_DISCOVER", "yes", "--triton-discover"}},
		{"bad discover interval", []string{"--triton-discover-interval", "30"}, nil, []string{"triton-discover-interval", "30"}},
		{"all env errors", nil, map[string]string{"PORT": "x", "MAX_BATCH_TOKENS": "y"}, []string{"PORT", "MAX_BATCH_TOKENS"}},
		{"positional", []string{"serve"}, nil, []string{`unexpected argument "serve"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.args, envOf(tt.env), &bytes.Buffer{})
			if err == nil {
				t.Fatalf("Parse(%q) error = nil, want one mentioning %q", tt.args, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.args, err, w)
				}
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		t.Run(arg, func(t *testing.T) {
			var out bytes.Buffer
			c, err := Parse([]string{arg}, envOf(nil), &out)
			if !errors.Is(err, flag.ErrHelp) || c != nil {
				t.Fatalf("Parse(%q) = %v, %v, want nil, flag.ErrHelp", arg, c, err)
			}
			help := out.String()
			newFlagSet(&Config{}).VisitAll(func(f *flag.Flag) {
				line := ""
				for _, l := range strings.Split(help, "\n") {
					if strings.HasPrefix(l, "--"+f.Name+" ") {
						line = l
					}
				}
				if line == "" {
					t.Errorf("help has no line for --%s:\n%s", f.Name, help)
					return
				}
				for _, w := range []string{EnvName(f.Name), f.Usage} {
					if !strings.Contains(line, w) {
						t.Errorf("help line %q lacks %q", line, w)
					}
				}
				if f.DefValue != "" && !strings.Contains(line, f.DefValue) {
					t.Errorf("help line %q lacks default %q", line, f.DefValue)
				}
			})
			for _, w := range []string{"--model-id", "MODEL_ID", "./Qwen3-Embedding-0.6B", "--ort-lib", "ORT_LIB", "--shutdown-grace", "30s", "s3-embedding.server",
				"--read-timeout", "READ_TIMEOUT", "--write-timeout", "WRITE_TIMEOUT", "--idle-timeout", "1m15s", "--max-connections", "10000",
				"--models-file", "MODELS_FILE", "--triton-discover ", "TRITON_DISCOVER ", "--triton-discover-interval", "TRITON_DISCOVER_INTERVAL",
				"--served-model-name", "SERVED_MODEL_NAME", "--default-model", "DEFAULT_MODEL", "hf_model_id", "embedgate models [flags]",
				"--cache ", "CACHE ", "--cache-memory-mb", "256", "--cache-redis-url", "--cache-redis ", "--cache-ttl", "168h0m0s",
				"--cache-scope", "CACHE_SCOPE", "--cache-timeout", "20ms"} {
				if !strings.Contains(help, w) {
					t.Errorf("help lacks %q", w)
				}
			}
			if strings.Contains(help, "hf-token") {
				t.Errorf("help lists --hf-token, want HF_TOKEN left to the loader")
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	tests := []struct{ flag, want string }{
		{"model-id", "MODEL_ID"}, {"max-batch-tokens", "MAX_BATCH_TOKENS"}, {"port", "PORT"}, {"ort-lib", "ORT_LIB"},
	}
	for _, tt := range tests {
		if got := EnvName(tt.flag); got != tt.want {
			t.Errorf("EnvName(%q) = %q, want %q", tt.flag, got, tt.want)
		}
	}
}

func validConfig(t *testing.T) *Config {
	t.Helper()
	c, err := Parse(nil, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatalf("Parse(nil) error = %v", err)
	}
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string // one substring per expected message; nil = valid
	}{
		{"defaults", func(c *Config) {}, nil},
		{"seed's small defaults", func(c *Config) {
			c.MaxConcurrentRequests, c.MaxBatchTokens, c.MaxBatchRequests, c.MaxClientBatchSize = 1, 1384, 5, 2
		}, nil},
		{"triton backend", func(c *Config) { c.Backend = "triton" }, nil},
		{"pooling set", func(c *Config) { c.Pooling = "last-token" }, nil},
		{"empty model id", func(c *Config) { c.ModelID = "" }, []string{"--model-id is empty: give it, --models-file or --triton-discover"}},
		{"models file without model id", func(c *Config) { c.ModelID, c.ModelsFile = "", "m.yaml" }, nil},
		{"discovery without model id", func(c *Config) { c.ModelID, c.TritonDiscover = "", true }, nil},
		{"models file and model id", func(c *Config) { c.ModelsFile = "m.yaml" }, nil},
		{"discovery without url", func(c *Config) { c.TritonDiscover, c.TritonURL = true, "" },
			[]string{"--triton-url is empty but --triton-discover is on"}},
		{"discovery interval", func(c *Config) { c.TritonDiscover, c.TritonDiscoverInterval = true, 0 },
			[]string{"--triton-discover-interval must be a positive duration, got 0s"}},
		{"interval unused without discovery", func(c *Config) { c.TritonDiscoverInterval = 0 }, nil},
		{"served name", func(c *Config) { c.ServedModelName = "bge" }, nil},
		{"served name with space", func(c *Config) { c.ServedModelName = "my bge" },
			[]string{`--served-model-name: model name "my bge" contains whitespace`}},
		{"derived name with space", func(c *Config) { c.ModelID = "./my models/bge small" },
			[]string{`--served-model-name: model name "bge small" contains whitespace (the default is the last element of --model-id)`}},
		{"served name without model", func(c *Config) { c.ModelID, c.ModelsFile, c.ServedModelName = "", "m.yaml", "bge" },
			[]string{`--served-model-name "bge" is set but --model-id is not`}},
		{"task without model", func(c *Config) { c.ModelID, c.ModelsFile, c.Task = "", "m.yaml", "rerank" },
			[]string{`--task "rerank" is set but --model-id is not`}},
		{"default model", func(c *Config) { c.DefaultModel = "text-embedding-3-small" }, nil},
		{"default model with space", func(c *Config) { c.DefaultModel = "a b" }, []string{`--default-model: model name "a b" contains whitespace`}},
		{"empty revision", func(c *Config) { c.Revision = "" }, []string{"--revision is empty"}},
		{"unknown backend", func(c *Config) { c.Backend = "tensorrt" }, []string{`--backend "tensorrt" is not one of onnx, triton`}},
		{"unknown dtype", func(c *Config) { c.DType = "bf16" }, []string{`--dtype "bf16" is not one of auto, float32, float16, int8`}},
		{"unknown pooling", func(c *Config) { c.Pooling = "max" }, []string{`--pooling "max" is not one of cls, mean, last-token`}},
		{"rerank", func(c *Config) { c.Task = "rerank" }, nil},
		{"unknown task", func(c *Config) { c.Task = "classify" }, []string{`--task "classify" is not one of embed, rerank`}},
		{"triton without url", func(c *Config) { c.Backend, c.TritonURL = "triton", "" }, []string{"--triton-url is empty but --backend is triton"}},
		{"triton replicas", func(c *Config) { c.Backend, c.TritonURL = "triton", "a:8001,b:8001" }, nil},
		{"triton list with a hole", func(c *Config) { c.TritonURL = "a:8001,,b:8001" },
			[]string{`--triton-url: triton: address list "a:8001,,b:8001" has an empty address at position 2`}},
		{"dns name without a port", func(c *Config) { c.TritonURL = "dns:///triton-headless" },
			[]string{`--triton-url: triton: "dns:///triton-headless": want dns:///name:port`}},
		{"resolve interval", func(c *Config) { c.TritonResolveInterval = 0 }, []string{"--triton-resolve-interval must be a positive duration, got 0s"}},
		{"triton timeout", func(c *Config) { c.TritonTimeout = 0 }, []string{"--triton-timeout must be a positive duration, got 0s"}},
		{"triton inflight", func(c *Config) { c.TritonMaxInflight = 0 }, []string{"--triton-max-inflight must be at least 1, got 0"}},
		{"triton inflight mb", func(c *Config) { c.TritonMaxInflightMB = 0 }, []string{"--triton-max-inflight-mb must be at least 1, got 0"}},
		{"triton restricted key", func(c *Config) { c.TritonRestrictedKey = "admin-key=a=b" }, nil},
		{"triton restricted key without value", func(c *Config) { c.TritonRestrictedKey = "admin-key=" },
			[]string{"--triton-restricted-key: want KEY=VALUE"}},
		{"triton restricted key without =", func(c *Config) { c.TritonRestrictedKey = "s3cret" },
			[]string{"--triton-restricted-key: want KEY=VALUE"}},
		{"triton restricted key upper case", func(c *Config) { c.TritonRestrictedKey = "Admin-Key=s3cret" },
			[]string{`--triton-restricted-key: key "Admin-Key": use only lowercase letters`}},
		{"triton restricted key space", func(c *Config) { c.TritonRestrictedKey = "admin-key=s3 cret" },
			[]string{"--triton-restricted-key: the value must be printable ASCII without spaces"}},
		{"workers", func(c *Config) { c.TokenizationWorkers = -1 }, []string{"--tokenization-workers must be at least 0, got -1"}},
		{"intra-op", func(c *Config) { c.IntraOpThreads = -2 }, []string{"--intra-op-threads must be at least 0, got -2"}},
		{"concurrent", func(c *Config) { c.MaxConcurrentRequests = 0 }, []string{"--max-concurrent-requests must be at least 1, got 0"}},
		{"batch tokens", func(c *Config) { c.MaxBatchTokens = -5 }, []string{"--max-batch-tokens must be at least 1, got -5"}},
		{"batch requests", func(c *Config) { c.MaxBatchRequests = 0 }, []string{"--max-batch-requests must be at least 1, got 0"}},
		{"client batch", func(c *Config) { c.MaxClientBatchSize = 0 }, []string{"--max-client-batch-size must be at least 1, got 0"}},
		{"payload", func(c *Config) { c.PayloadLimit = 0 }, []string{"--payload-limit must be at least 1, got 0"}},
		{"request timeout", func(c *Config) { c.RequestTimeout = -time.Second }, []string{"--request-timeout must be a positive duration, got -1s"}},
		{"shutdown grace", func(c *Config) { c.ShutdownGrace = -time.Second }, []string{"--shutdown-grace must not be negative, got -1s"}},
		{"read timeout", func(c *Config) { c.ReadTimeout = 0 }, []string{"--read-timeout must be a positive duration, got 0s"}},
		{"write timeout", func(c *Config) { c.WriteTimeout = -time.Second }, []string{"--write-timeout must be a positive duration, got -1s"}},
		{"idle timeout", func(c *Config) { c.IdleTimeout = 0 }, []string{"--idle-timeout must be a positive duration, got 0s"}},
		{"max connections", func(c *Config) { c.MaxConnections = 0 }, []string{"--max-connections must be at least 1, got 0"}},
		{"port negative", func(c *Config) { c.Port = -1 }, []string{"--port -1 is outside 0-65535"}},
		{"port high", func(c *Config) { c.Port = 70000 }, []string{"--port 70000 is outside 0-65535"}},
		{"metrics port", func(c *Config) { c.MetricsPort = 65536 }, []string{"--metrics-port 65536 is outside 0-65535"}},
		{"metrics port same", func(c *Config) { c.MetricsPort = 8080 }, []string{"--metrics-port 8080 is the same as --port"}},
		{"rps", func(c *Config) { c.RateLimitRPS = 0 }, []string{"--rate-limit-rps must be positive, got 0"}},
		{"burst", func(c *Config) { c.RateLimitBurst = 0 }, []string{"--rate-limit-burst must be at least 1, got 0"}},
		{"tpm", func(c *Config) { c.RateLimitTPM = -1 }, []string{"--rate-limit-tpm must be at least 0, got -1"}},
		{"two default prompts", func(c *Config) { c.DefaultPromptName, c.DefaultPrompt = "query", "q: " }, []string{"--default-prompt-name and --default-prompt are both set"}},
		{"cache memory 0", func(c *Config) { c.CacheMemoryMB = 0 }, nil},
		{"cache memory negative", func(c *Config) { c.CacheMemoryMB = -1 }, []string{"--cache-memory-mb must be at least 0, got -1"}},
		{"cache memory huge", func(c *Config) { c.CacheMemoryMB = 1<<20 + 1 }, []string{"--cache-memory-mb must be at most 1048576, got 1048577"}},
		{"cache scope", func(c *Config) { c.CacheScope = "tenant" }, []string{`--cache-scope "tenant" is not one of key, shared`}},
		{"cache scope empty", func(c *Config) { c.CacheScope = "" }, []string{`--cache-scope "" is not one of key, shared`}},
		{"cache timeout", func(c *Config) { c.CacheTimeout = 0 }, []string{"--cache-timeout must be a positive duration, got 0s"}},
		{"cache ttl", func(c *Config) { c.CacheTTL = 500 * time.Millisecond }, []string{"--cache-ttl must be at least 1s, got 500ms"}},
		{"cache off ignores its flags", func(c *Config) {
			c.Cache, c.CacheMemoryMB, c.CacheScope, c.CacheTimeout, c.CacheTTL = false, -1, "x", 0, 0
		}, nil},
		{"all problems at once", func(c *Config) {
			c.Backend, c.MaxBatchRequests, c.PayloadLimit, c.Port = "x", 0, 0, -1
		}, []string{"--backend", "--max-batch-requests", "--payload-limit", "--port -1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.change(c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("Validate() = %d messages %q, want %d", len(lines), lines, len(tt.want))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestCacheTiers(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		redis string
		on    bool
	}{
		{"defaults: memory only", nil, "", true},
		{"rate limit redis is the cache's", map[string]string{"REDIS_URL": "redis://r:6379"}, "redis://r:6379", true},
		{"own cache redis wins", map[string]string{"REDIS_URL": "redis://r:6379", "CACHE_REDIS_URL": "redis://c:6379"}, "redis://c:6379", true},
		{"cache redis without limiter redis", map[string]string{"CACHE_REDIS_URL": "redis://c:6379"}, "redis://c:6379", true},
		{"redis for limits only", map[string]string{"REDIS_URL": "redis://r:6379", "CACHE_REDIS": "false"}, "", true},
		{"redis only", map[string]string{"REDIS_URL": "redis://r:6379", "CACHE_MEMORY_MB": "0"}, "redis://r:6379", true},
		{"no tier", map[string]string{"CACHE_MEMORY_MB": "0"}, "", false},
		{"cache off", map[string]string{"REDIS_URL": "redis://r:6379", "CACHE": "false"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(nil, envOf(tt.env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.CacheRedisAddr(); got != tt.redis {
				t.Errorf("CacheRedisAddr() = %q, want %q", got, tt.redis)
			}
			if got := c.CacheOn(); got != tt.on {
				t.Errorf("CacheOn() = %v, want %v", got, tt.on)
			}
		})
	}
}

func TestTritonModelName(t *testing.T) {
	tests := []struct{ modelID, triton, want string }{
		{"BAAI/bge-small-en-v1.5", "", "bge-small-en-v1.5"},
		{"./Qwen3-Embedding-0.6B/", "", "Qwen3-Embedding-0.6B"},
		{"BAAI/bge-small-en-v1.5", "bge", "bge"},
	}
	for _, tt := range tests {
		c := &Config{ModelID: tt.modelID, TritonModel: tt.triton}
		if got := c.TritonModelName(); got != tt.want {
			t.Errorf("TritonModelName(%q, %q) = %q, want %q", tt.modelID, tt.triton, got, tt.want)
		}
	}
}

func TestFlagEntry(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		want   catalog.Entry
		wantOK bool
	}{
		{"defaults", nil, nil, catalog.Entry{Name: "Qwen3-Embedding-0.6B", ModelID: "./Qwen3-Embedding-0.6B", Revision: "main",
			Backend: "onnx", Source: "flags"}, true},
		{"onnx with everything", []string{"--model-id", "BAAI/bge-small-en-v1.5", "--revision", "v1", "--pooling", "cls",
			"--default-prompt-name", "query", "--served-model-name", "bge", "--triton-model", "ignored", "--max-batch-tokens", "99"}, nil,
			catalog.Entry{Name: "bge", ModelID: "BAAI/bge-small-en-v1.5", Revision: "v1", Backend: "onnx", Pooling: "cls",
				DefaultPromptName: "query", Source: "flags"}, true},
		{"triton", nil, map[string]string{"BACKEND": "triton", "MODEL_ID": "BAAI/bge-small-en-v1.5", "TRITON_URL": "triton:8001"},
			catalog.Entry{Name: "bge-small-en-v1.5", ModelID: "BAAI/bge-small-en-v1.5", Revision: "main", Backend: "triton",
				TritonModel: "bge-small-en-v1.5", TritonURL: "triton:8001", Source: "flags"}, true},
		{"triton model and name", []string{"--backend=triton", "--model-id=BAAI/bge-small-en-v1.5", "--triton-model=bge-trt", "--served-model-name=bge"}, nil,
			catalog.Entry{Name: "bge", ModelID: "BAAI/bge-small-en-v1.5", Revision: "main", Backend: "triton",
				TritonModel: "bge-trt", TritonURL: "localhost:8001", Source: "flags"}, true},
		{"trailing slash", []string{"--model-id", "./models/e5/"}, nil,
			catalog.Entry{Name: "e5", ModelID: "./models/e5/", Revision: "main", Backend: "onnx", Source: "flags"}, true},
		{"rerank", []string{"--model-id", "./bge-reranker-base", "--task", "rerank"}, nil,
			catalog.Entry{Name: "bge-reranker-base", ModelID: "./bge-reranker-base", Revision: "main", Backend: "onnx", Task: "rerank", Source: "flags"}, true},
		{"task from env", nil, map[string]string{"MODEL_ID": "./e5", "TASK": "embed"},
			catalog.Entry{Name: "e5", ModelID: "./e5", Revision: "main", Backend: "onnx", Task: "embed", Source: "flags"}, true},
		{"models file only", []string{"--models-file", "m.yaml"}, nil, catalog.Entry{}, false},
		{"discovery only", nil, map[string]string{"TRITON_DISCOVER": "true"}, catalog.Entry{}, false},
		{"models file and model id", []string{"--models-file", "m.yaml", "--model-id", "./e5"}, nil,
			catalog.Entry{Name: "e5", ModelID: "./e5", Revision: "main", Backend: "onnx", Source: "flags"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, envOf(tt.env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			got, ok := c.FlagEntry()
			if ok != tt.wantOK || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("FlagEntry() = %+v, %v\nwant %+v, %v", got, ok, tt.want, tt.wantOK)
			}
			if ok {
				if err := got.Check(); err != nil {
					t.Errorf("FlagEntry() fails catalog's Check: %v", err)
				}
			}
		})
	}
}

// TestTritonRestricted: the key and value split as Triton splits its flag
// (the value may hold "="), and no error repeats the value, a secret.
func TestTritonRestricted(t *testing.T) {
	for in, want := range map[string][2]string{"": {"", ""}, "admin-key=a=b": {"admin-key", "a=b"}, "k.1_x=Z9": {"k.1_x", "Z9"}} {
		c := &Config{TritonRestrictedKey: in}
		if k, v := c.TritonRestricted(); k != want[0] || v != want[1] {
			t.Errorf("TritonRestricted(%q) = %q, %q, want %q, %q", in, k, v, want[0], want[1])
		}
	}
	for _, in := range []string{"admin-key=s3cr\x01t", "admin-key=s3cr\u00e9t", "admin-key=s3cr t"} {
		_, _, err := splitRestrictedKey(in)
		if err == nil || strings.Contains(err.Error(), "s3cr") {
			t.Errorf("splitRestrictedKey(%q) = %v, want an error without the value", in, err)
		}
	}
}
