package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type teiError struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
}

type openaiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func TestErrorRows(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	env["MAX_CLIENT_BATCH_SIZE"] = "3"
	env["PAYLOAD_LIMIT"] = "4096"
	g := startGateway(t, env)
	long := strings.Repeat("word ", 600)
	big := `{"inputs":"` + strings.Repeat("x", 5000) + `"}`
	tests := []struct {
		name       string
		path, body string
		status     int
		errorType  string // native/TEI error_type or OpenAI type
		mention    string // the message names the field or index
	}{
		{"malformed json", "/api/v1/embed", `{"inputs":`, 400, "Validation", ""},
		{"wrong type", "/api/v1/embed", `{"inputs":42}`, 422, "Validation", "inputs"},
		{"bad enum", "/embed", `{"inputs":"a","truncation_direction":"up"}`, 422, "Validation", "truncation_direction"},
		{"empty inputs", "/api/v1/embed", `{"inputs":[]}`, 400, "Empty", "inputs"},
		{"empty string", "/embed", `{"inputs":["a",""]}`, 400, "Empty", "inputs[1]"},
		{"too many", "/api/v1/embed", `{"inputs":["a","b","c","d"]}`, 422, "Validation", "3"},
		{"too long", "/embed", `{"inputs":"` + long + `","truncate":false}`, 422, "Validation", "inputs[0]"},
		{"bad dimensions", "/api/v1/embed", `{"inputs":"a","dimensions":33}`, 422, "Validation", "dimensions"},
		{"zero dimensions", "/api/v1/embed", `{"inputs":"a","dimensions":0}`, 422, "Validation", "dimensions"},
		{"unknown prompt", "/api/v1/embed", `{"inputs":"a","prompt_name":"nope"}`, 422, "Validation", "nope"},
		{"too large", "/embed", big, 413, "Validation", ""},
		{"openai malformed", "/v1/embeddings", `{"input":`, 400, "invalid_request_error", ""},
		{"openai wrong type", "/v1/embeddings", `{"input":{"a":1}}`, 400, "invalid_request_error", "input"},
		{"openai empty", "/v1/embeddings", `{"input":[]}`, 400, "invalid_request_error", "input"},
		{"openai bad format", "/v1/embeddings", `{"input":"a","encoding_format":"int8"}`, 400, "invalid_request_error", "encoding_format"},
		{"openai too many", "/v1/embeddings", `{"input":["a","b","c","d"]}`, 400, "invalid_request_error", "3"},
		{"openai too large", "/v1/embeddings", `{"input":"` + strings.Repeat("x", 5000) + `"}`, 413, "invalid_request_error", ""},
		{"openai id out of vocab", "/v1/embeddings", `{"input":[[101,99999]]}`, 400, "invalid_request_error", "99999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.post(t, tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("status = %d, want %d (%s)", r.status, tt.status, r.body)
			}
			var msg, typ string
			if strings.Contains(tt.path, "embeddings") {
				e := decode[openaiError](t, r)
				msg, typ = e.Error.Message, e.Error.Type
			} else {
				e := decode[teiError](t, r)
				msg, typ = e.Error, e.ErrorType
			}
			if typ != tt.errorType || msg == "" || !strings.Contains(msg, tt.mention) {
				t.Errorf("error %q of type %q, want type %q mentioning %q", msg, typ, tt.errorType, tt.mention)
			}
		})
	}
	t.Run("wrong content type", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, g.url+"/embed", strings.NewReader(`{"inputs":"a"}`))
		req.Header.Set("Content-Type", "text/plain")
		if r := do(t, req); r.status != 400 || decode[teiError](t, r).ErrorType != "Validation" {
			t.Errorf("text/plain body: %d %s, want 400 Validation", r.status, r.body)
		}
	})
	t.Run("unknown route", func(t *testing.T) {
		r := g.get(t, "/nope")
		if r.status != 404 || !json.Valid(r.body) {
			t.Errorf("unknown route: %d %s, want a JSON 404", r.status, r.body)
		}
	})
}

// TestMalformedBodies throws bodies no client should send; each gets a JSON
// 4xx and the gateway keeps serving.
func TestMalformedBodies(t *testing.T) {
	t.Parallel()
	g := startGateway(t, baseEnv(t))
	bodies := []string{
		``, `{`, `}`, `[]`, `null`, `"inputs"`, `42`, `{"inputs":null}`, `{"inputs":true}`,
		`{"inputs":{}}`, `{"inputs":[null]}`, `{"inputs":[1.5]}`, `{"inputs":[[1,2],"a"]}`,
		`{"inputs":[[[1]]]}`, `{"inputs":[-1]}`, `{"inputs":[1e40]}`, `{"inputs":[99999999999999999999]}`,
		`{"inputs":"a","truncate":"yes"}`, `{"inputs":"a","normalize":1}`, `{"inputs":"a","dimensions":"8"}`,
		`{"inputs":"a","dimensions":1e99}`, `{"inputs":"a","dimensions":-1}`, `{"inputs":"a","prompt_name":5}`,
		`{"inputs":"a","truncation_direction":null}`, `{"inputs":"a"} trailing`, `{"inputs":"a",}`,
		`{"inputs":"\ud800"}`, "{\"inputs\":\"\xff\xfe\"}", `{"inputs":["a",["b"]]}`, `{"inputs":[""]}`,
		`{"inputs":"` + strings.Repeat("[", 5000) + `"}`, strings.Repeat("[", 10000), `{"inputs":[[]]}`,
		`{"inputs":"a","inputs":5}`, "\x00\x01\x02",
	}
	routes := []string{"/api/v1/embed", "/embed", "/v1/embeddings"}
	for _, route := range routes {
		for i, body := range bodies {
			if route == "/v1/embeddings" {
				body = strings.Replace(body, `"inputs"`, `"input"`, -1)
			}
			r := g.post(t, route, body)
			if r.status == 200 {
				// A few are valid for some routes (invalid UTF-8 is
				// replaced, a lone surrogate decodes to U+FFFD): fine,
				// as long as the answer is well formed.
				if !json.Valid(r.body) {
					t.Errorf("%s body %d: 200 with invalid JSON", route, i)
				}
				continue
			}
			if r.status < 400 || r.status >= 500 || !json.Valid(r.body) || !strings.Contains(string(r.body), "error") {
				t.Errorf("%s body %d %q: %d %s, want a JSON 4xx", route, i, body, r.status, r.body)
			}
		}
	}
	if r := g.post(t, "/embed", `{"inputs":"still serving"}`); r.status != 200 {
		t.Errorf("after malformed bodies: %d %s", r.status, r.body)
	}
}

// TestBackpressure sends more concurrent requests than the gateway admits:
// the excess gets 429 at once, the admitted ones succeed, nothing hangs.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	env["MAX_CONCURRENT_REQUESTS"] = "2"
	g := startGateway(t, env)
	inputs := make([]string, 64)
	for i := range inputs {
		inputs[i] = strings.Repeat("a longer input that takes some time ", 8)
	}
	body, _ := json.Marshal(map[string]any{"inputs": inputs})
	const clients = 24
	var wg sync.WaitGroup
	statuses := make(chan int, clients)
	retryAfter := make(chan string, clients)
	start := make(chan struct{})
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := g.post(t, "/embed", string(body))
			statuses <- r.status
			if r.status == 429 {
				retryAfter <- r.header.Get("Retry-After")
			}
		}()
	}
	close(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("requests hung")
	}
	close(statuses)
	close(retryAfter)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[200] == 0 || counts[429] == 0 || counts[200]+counts[429] != clients {
		t.Errorf("statuses = %v, want only 200 and 429, some of each", counts)
	}
	for ra := range retryAfter {
		if ra == "" {
			t.Error("429 without Retry-After")
		}
	}
}
