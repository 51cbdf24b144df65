package config

import (
	"bytes"
	"errors"
	"flag"
	"runtime"
	"strings"
	"testing"
	"time"
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
		ModelID: "./Qwen3-Embedding-0.6B", Revision: "main", Backend: "onnx", DType: "auto",
		TritonURL: "localhost:8001", TritonTimeout: 10 * time.Second, TritonMaxInflight: 4, TritonMaxInflightMB: 64,
		TokenizationWorkers: runtime.NumCPU(), IntraOpThreads: runtime.NumCPU(),
		MaxConcurrentRequests: 512, MaxBatchTokens: 16384, MaxBatchRequests: 32, MaxClientBatchSize: 2048,
		AutoTruncate: true, PayloadLimit: 2000000, RequestTimeout: 30 * time.Second,
		Hostname: "0.0.0.0", Port: 8080, ShutdownGrace: 30 * time.Second,
		ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 75 * time.Second, MaxConnections: 10000,
		RateLimitRPS: 80, RateLimitBurst: 50, RateLimitFailOpen: true,
		OTLPServiceName: "s3-embedding.server",
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
				"--read-timeout", "READ_TIMEOUT", "--write-timeout", "WRITE_TIMEOUT", "--idle-timeout", "1m15s", "--max-connections", "10000"} {
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
		{"empty model id", func(c *Config) { c.ModelID = "" }, []string{"--model-id is empty"}},
		{"empty revision", func(c *Config) { c.Revision = "" }, []string{"--revision is empty"}},
		{"unknown backend", func(c *Config) { c.Backend = "tensorrt" }, []string{`--backend "tensorrt" is not one of onnx, triton`}},
		{"unknown dtype", func(c *Config) { c.DType = "bf16" }, []string{`--dtype "bf16" is not one of auto, float32, float16, int8`}},
		{"unknown pooling", func(c *Config) { c.Pooling = "max" }, []string{`--pooling "max" is not one of cls, mean, last-token`}},
		{"triton without url", func(c *Config) { c.Backend, c.TritonURL = "triton", "" }, []string{"--triton-url is empty but --backend is triton"}},
		{"triton timeout", func(c *Config) { c.TritonTimeout = 0 }, []string{"--triton-timeout must be a positive duration, got 0s"}},
		{"triton inflight", func(c *Config) { c.TritonMaxInflight = 0 }, []string{"--triton-max-inflight must be at least 1, got 0"}},
		{"triton inflight mb", func(c *Config) { c.TritonMaxInflightMB = 0 }, []string{"--triton-max-inflight-mb must be at least 1, got 0"}},
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
		{"port 0", func(c *Config) { c.Port = 0 }, []string{"--port 0 is outside 1-65535"}},
		{"port high", func(c *Config) { c.Port = 70000 }, []string{"--port 70000 is outside 1-65535"}},
		{"metrics port", func(c *Config) { c.MetricsPort = 65536 }, []string{"--metrics-port 65536 is outside 1-65535"}},
		{"metrics port same", func(c *Config) { c.MetricsPort = 8080 }, []string{"--metrics-port 8080 is the same as --port"}},
		{"rps", func(c *Config) { c.RateLimitRPS = 0 }, []string{"--rate-limit-rps must be positive, got 0"}},
		{"burst", func(c *Config) { c.RateLimitBurst = 0 }, []string{"--rate-limit-burst must be at least 1, got 0"}},
		{"tpm", func(c *Config) { c.RateLimitTPM = -1 }, []string{"--rate-limit-tpm must be at least 0, got -1"}},
		{"two default prompts", func(c *Config) { c.DefaultPromptName, c.DefaultPrompt = "query", "q: " }, []string{"--default-prompt-name and --default-prompt are both set"}},
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
