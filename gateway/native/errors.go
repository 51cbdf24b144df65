package native

import "github.com/embedgate/embedgate/gateway"

// Wire is how one gateway.Kind goes on the wire in each dialect.
type Wire struct {
	Status int    // native and TEI status
	Type   string // native and TEI error_type: TEI's names where TEI has them

	OpenAIStatus int
	OpenAIType   string // error.type; RateLimited uses the refusing limit instead
	OpenAICode   string // error.code; "" is null
}

// wires is the one error table: every Kind's status and names in every
// dialect (BRIEF §4). OpenAI's own errors say "invalid_request_error" for
// every client mistake and carry codes only for auth, rate limits and an
// unknown model. TEI serves one model and has no 404 of its own: an
// unknown model is NotFound there, as an unknown route is.
var wires = [...]Wire{
	gateway.Internal:      {500, "Internal", 500, "server_error", ""},
	gateway.Malformed:     {400, "Validation", 400, "invalid_request_error", ""},
	gateway.Validation:    {422, "Validation", 400, "invalid_request_error", ""},
	gateway.Empty:         {400, "Empty", 400, "invalid_request_error", ""},
	gateway.TooLarge:      {413, "Validation", 413, "invalid_request_error", ""},
	gateway.Unauthorized:  {401, "Unauthorized", 401, "invalid_request_error", "invalid_api_key"},
	gateway.RateLimited:   {429, "RateLimited", 429, "requests", "rate_limit_exceeded"},
	gateway.Overloaded:    {429, "Overloaded", 429, "server_overloaded", ""},
	gateway.Unhealthy:     {503, "Unhealthy", 503, "server_error", ""},
	gateway.Timeout:       {504, "Backend", 504, "timeout", ""},
	gateway.Backend:       {500, "Backend", 500, "server_error", ""},
	gateway.NotFound:      {404, "NotFound", 404, "invalid_request_error", ""},
	gateway.Unsupported:   {415, "Validation", 415, "invalid_request_error", ""},
	gateway.ModelNotFound: {404, "NotFound", 404, "invalid_request_error", "model_not_found"},
	// TEI's own route answers 424 (its codec says so); OpenAI has no code
	// for a model of the wrong kind.
	gateway.WrongTask: {400, "Validation", 400, "invalid_request_error", ""},
}

// WireOf is k's row of the error table; an unknown kind is Internal.
func WireOf(k gateway.Kind) Wire {
	if k < 0 || int(k) >= len(wires) {
		return wires[gateway.Internal]
	}
	return wires[k]
}

// ErrorResponse is the native and TEI error: its status and the body
// {"error":"<message>","error_type":"<Type>"}.
func (Codec) ErrorResponse(e *gateway.Error) (int, []byte) {
	w := WireOf(e.Kind)
	return w.Status, ErrorBody(Message(e.Param, e), w.Type)
}

// ErrorBody is the native and TEI error body:
// {"error":"<msg>","error_type":"<typ>"}.
func ErrorBody(msg, typ string) []byte {
	dst := append([]byte(nil), `{"error":`...)
	dst = AppendString(dst, msg)
	dst = append(dst, `,"error_type":`...)
	dst = AppendString(dst, typ)
	return append(dst, '}')
}

// Message is what clients read: the param as the dialect names it, then
// the message; never the cause.
func Message(param string, e *gateway.Error) string {
	if param != "" {
		return param + ": " + e.Msg
	}
	return e.Msg
}
