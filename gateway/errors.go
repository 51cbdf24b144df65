package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Kind classifies an error for the client. Each codec maps a Kind to its
// dialect's status and names through native's one error table.
type Kind int

const (
	Internal     Kind = iota // 500, a bug or an unexpected failure
	Malformed                // 400: bad JSON, wrong content type, bad HTTP
	Validation               // 422 (native, TEI) / 400 (OpenAI)
	Empty                    // 400: empty inputs or an empty string
	TooLarge                 // 413: body over the payload limit
	Unauthorized             // 401
	RateLimited              // 429 + Retry-After
	Overloaded               // 429 + Retry-After: gateway or Triton queue full
	Unhealthy                // 503: backend unavailable, not ready, draining
	Timeout                  // 504: deadline exceeded
	Backend                  // 500: inference failed
	NotFound                 // 404: unknown route
	Unsupported              // 415: a Content-Encoding the gateway does not take
	// ModelNotFound is 404 too, for a model the gateway does not serve or
	// the caller's key may not use: OpenAI gives it its own code
	// (model_not_found), which its SDKs raise as NotFoundError.
	ModelNotFound
	// WrongTask is 400 for a model asked to do what it does not: embed
	// with a reranker or rerank with an embedding model (TEI's route
	// answers 424, its status for "model is not a re-ranker model").
	WrongTask
)

var kindNames = [...]string{
	Internal: "Internal", Malformed: "Malformed", Validation: "Validation", Empty: "Empty",
	TooLarge: "TooLarge", Unauthorized: "Unauthorized", RateLimited: "RateLimited",
	Overloaded: "Overloaded", Unhealthy: "Unhealthy", Timeout: "Timeout", Backend: "Backend",
	NotFound: "NotFound", Unsupported: "Unsupported", ModelNotFound: "ModelNotFound",
	WrongTask: "WrongTask",
}

// String is the kind's Go name ("Timeout", "Backend"), as metrics and spans
// label errors. What a client reads is the codec's business.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is the one error type that reaches clients. Param names the
// offending field or input ("inputs[3]"), Msg is safe to show, Err is the
// cause (logged, not shown).
type Error struct {
	Kind       Kind
	Param      string
	Msg        string
	RetryAfter time.Duration // for RateLimited and Overloaded
	// Limit names the limit that refused a RateLimited request:
	// "requests" or "tokens" (OpenAI's error type for it).
	Limit string
	Err   error
}

func (e *Error) Error() string {
	msg := e.Msg
	if e.Param != "" {
		msg = e.Param + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// UnknownModel is the error of a request for a model that is not
// served, or that the caller may not use: the two read the same, as
// OpenAI's do, so a key cannot learn which models exist beyond its own.
func UnknownModel(name string) *Error {
	return &Error{Kind: ModelNotFound, Msg: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", Clip(name))}
}

// WrongTaskError is the error of a request for a task the model does not
// do; task is the model's own (TaskEmbed or TaskRerank). The embedder's
// message carries TEI's own words, which TEI clients may look for.
func WrongTaskError(model, task string) *Error {
	if task == TaskRerank {
		return &Error{Kind: WrongTask, Msg: fmt.Sprintf("model `%s` is a rerank model: it does not embed", Clip(model))}
	}
	return &Error{Kind: WrongTask, Msg: fmt.Sprintf("model `%s` is an embedding model: it does not rerank (model is not a re-ranker model)", Clip(model))}
}

// ErrNotCalled marks a backend error from before the backend was called,
// such as a deadline that passed while the batch waited for a free slot:
// it says nothing about the backend's health.
var ErrNotCalled = errors.New("the backend was not called")

// Errorf builds an *Error of kind k about param.
func Errorf(k Kind, param, format string, args ...any) *Error {
	return &Error{Kind: k, Param: param, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the Kind of the first *Error in err's chain, or Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// ContextError is the client's error for a request whose context ended:
// Timeout when its deadline passed, else Unhealthy (the request was
// cancelled: the client went away or the gateway is stopping). Every stage
// that first sees a context end calls it, so the message is the same
// wherever the request stopped.
func ContextError(err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Kind: Timeout, Msg: "request deadline exceeded", Err: err}
	}
	return &Error{Kind: Unhealthy, Msg: "request cancelled", Err: err}
}

// clipLen bounds what an error message quotes of a client's value: a 2 MB
// field must not come back as a 2 MB error body and log line.
const clipLen = 64

// Clip cuts a client-supplied value for quoting in an error message.
func Clip(s string) string {
	if len(s) <= clipLen {
		return s
	}
	cut := clipLen
	for cut > 0 && !utf8.RuneStart(s[cut]) { // keep the message valid UTF-8
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:cut], len(s))
}
