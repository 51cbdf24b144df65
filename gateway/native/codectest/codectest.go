// Package codectest holds the request rows every codec's tests share: the
// invalid bodies of BRIEF §4 with the kind and param each must produce.
// The rows assume Limits{MaxClientBatch: 3, Dimensions: 8}.
package codectest

import (
	"errors"
	"testing"

	"github.com/embedgate/embedgate/gateway"
)

// ErrorRow is one invalid body and the error it must give.
type ErrorRow struct {
	Name  string
	Body  string
	Kind  gateway.Kind
	Param string
}

// CommonErrorRows hold for every codec; field is the inputs field's name.
func CommonErrorRows(field string) []ErrorRow {
	f := func(s string) string { return `{"` + field + `":` + s + `}` }
	return []ErrorRow{
		{"empty body", ``, gateway.Malformed, ""},
		{"not json", `hello`, gateway.Malformed, ""},
		{"truncated", `{"` + field + `":"a"`, gateway.Malformed, ""},
		{"trailing garbage", f(`"a"`) + `x`, gateway.Malformed, ""},
		{"trailing comma", `{"` + field + `":["a",]}`, gateway.Malformed, ""},
		{"single quotes", `{'` + field + `':'a'}`, gateway.Malformed, ""},
		{"unterminated string", `{"` + field + `":"a}`, gateway.Malformed, ""},
		{"bad escape", f(`"\x"`), gateway.Malformed, ""},
		{"body array", `["a"]`, gateway.Validation, ""},
		{"body string", `"a"`, gateway.Validation, ""},
		{"body null", `null`, gateway.Validation, field},
		{"missing inputs", `{}`, gateway.Validation, field},
		{"inputs null", f(`null`), gateway.Validation, field},
		{"inputs number", f(`1.5`), gateway.Validation, field},
		{"inputs object", f(`{"a":1}`), gateway.Validation, field},
		{"inputs bool", f(`true`), gateway.Validation, field},
		{"inputs list of objects", f(`[{"a":1}]`), gateway.Validation, field + "[0]"},
		{"inputs list with null", f(`["a",null]`), gateway.Validation, field + "[1]"},
		{"inputs list with bool", f(`["a",true]`), gateway.Validation, field + "[1]"},
		{"empty list", f(`[]`), gateway.Empty, field},
		{"empty string", f(`""`), gateway.Empty, field},
		{"empty string in list", f(`["a",""]`), gateway.Empty, field + "[1]"},
		{"too many inputs", f(`["a","b","c","d"]`), gateway.Validation, field},
		{"truncate string", `{"` + field + `":"a","truncate":"yes"}`, gateway.Validation, "truncate"},
		{"normalize number", `{"` + field + `":"a","normalize":1}`, gateway.Validation, "normalize"},
		{"direction unknown", `{"` + field + `":"a","truncation_direction":"Up"}`, gateway.Validation, "truncation_direction"},
		{"direction number", `{"` + field + `":"a","truncation_direction":1}`, gateway.Validation, "truncation_direction"},
		{"prompt_name number", `{"` + field + `":"a","prompt_name":3}`, gateway.Validation, "prompt_name"},
		{"dimensions zero", `{"` + field + `":"a","dimensions":0}`, gateway.Validation, "dimensions"},
		{"dimensions negative", `{"` + field + `":"a","dimensions":-1}`, gateway.Validation, "dimensions"},
		{"dimensions too big", `{"` + field + `":"a","dimensions":9}`, gateway.Validation, "dimensions"},
		{"dimensions float", `{"` + field + `":"a","dimensions":1.5}`, gateway.Validation, "dimensions"},
		{"dimensions string", `{"` + field + `":"a","dimensions":"4"}`, gateway.Validation, "dimensions"},
		{"dimensions huge", `{"` + field + `":"a","dimensions":1e40}`, gateway.Validation, "dimensions"},
		{"model number", `{"` + field + `":"a","model":1}`, gateway.Validation, "model"},
		{"model list", `{"` + field + `":"a","model":["m"]}`, gateway.Validation, "model"},
		{"model object", `{"` + field + `":"a","model":{}}`, gateway.Validation, "model"},
	}
}

// IDRows are token-id rows for codecs that accept ids.
func IDRows(field string) []ErrorRow {
	f := func(s string) string { return `{"` + field + `":` + s + `}` }
	return []ErrorRow{
		{"negative id", f(`[1,-2]`), gateway.Validation, field + "[1]"},
		{"id too big", f(`[2147483648]`), gateway.Validation, field + "[0]"},
		{"id overflow", f(`[99999999999999999999999]`), gateway.Validation, field + "[0]"},
		{"float id", f(`[1.5]`), gateway.Validation, field + "[0]"},
		{"exponent id", f(`[1e3]`), gateway.Validation, field + "[0]"},
		{"string in ids", f(`[1,"a"]`), gateway.Validation, field + "[1]"},
		{"nested negative", f(`[[1],[2,-3]]`), gateway.Validation, field + "[1][1]"},
		{"nested string", f(`[[1,"a"]]`), gateway.Validation, field + "[0][1]"},
		{"nested too deep", f(`[[[1]]]`), gateway.Validation, field + "[0][0]"},
		{"empty id list", f(`[[]]`), gateway.Empty, field + "[0]"},
		{"empty id list among", f(`[[1],[]]`), gateway.Empty, field + "[1]"},
		{"too many id lists", f(`[[1],[2],[3],[4]]`), gateway.Validation, field},
	}
}

// CheckErrors runs rows against decode; every error must be a
// *gateway.Error of the row's kind naming the row's param once the codec's
// param renders it (nil: params are native).
func CheckErrors(t *testing.T, rows []ErrorRow, decode func([]byte) error, param func(string) string) {
	t.Helper()
	if param == nil {
		param = func(p string) string { return p }
	}
	for _, tt := range rows {
		t.Run(tt.Name, func(t *testing.T) {
			err := decode([]byte(tt.Body))
			var ge *gateway.Error
			if !errors.As(err, &ge) {
				t.Fatalf("decode(%s) error = %v, want a *gateway.Error", tt.Body, err)
			}
			if got := param(ge.Param); ge.Kind != tt.Kind || got != tt.Param {
				t.Errorf("decode(%s) = kind %v param %q (%v), want kind %v param %q", tt.Body, ge.Kind, got, ge, tt.Kind, tt.Param)
			}
		})
	}
}

// Validated decodes with decode, then validates as the engine does: what
// a client sees for a body.
func Validated(decode func([]byte, gateway.Limits) (*gateway.EmbedRequest, error)) func([]byte) error {
	return func(b []byte) error {
		req, err := decode(b, Limits())
		if err != nil {
			return err
		}
		return req.Validate(Limits())
	}
}

// Limits are the limits the rows assume.
func Limits() gateway.Limits {
	return gateway.Limits{MaxClientBatch: 3, MaxInputLength: 16, Dimensions: 8, DefaultTruncate: true}
}
