package native

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/embedgate/embedgate/gateway"
)

// Inputs is the JSON union every embedding API accepts for its inputs: a
// string, [string], [int] (one input of token ids) or a list mixing strings
// and [int]. It decodes in one pass over the bytes encoding/json hands it
// (already validated), without going through any or reflection.
type Inputs struct {
	List []gateway.Input
	Set  bool // the field was present and not null
}

// inputsError is a problem inside the inputs field; Path is relative to the
// field ("", "[3]", "[3][7]") because Inputs does not know the field's name.
type inputsError struct {
	Kind gateway.Kind
	Path string
	Msg  string
}

func (e *inputsError) Error() string { return e.Path + ": " + e.Msg }

// maxTokenID bounds token ids: models take int32 ids, the vocabulary bound
// is checked by the engine.
const maxTokenID = 1<<31 - 1

// UnmarshalJSON implements json.Unmarshaler.
func (in *Inputs) UnmarshalJSON(data []byte) error {
	p := parser{b: data}
	p.space()
	switch p.peek() {
	case 'n': // null: same as absent
		*in = Inputs{}
		return nil
	case '"':
		s, err := p.str(-1)
		if err != nil {
			return err
		}
		*in = Inputs{List: []gateway.Input{{Text: s}}, Set: true}
		return nil
	case '[':
	default:
		return &inputsError{Kind: gateway.Validation, Msg: "expected a string, a list of strings or a list of token ids"}
	}
	p.i++ // '['
	p.space()
	if p.peek() == ']' {
		*in = Inputs{List: []gateway.Input{}, Set: true}
		return nil
	}
	if c := p.peek(); c == '-' || (c >= '0' && c <= '9') {
		// [int]: one input given as token ids.
		ids, err := p.ids(-1)
		if err != nil {
			return err
		}
		*in = Inputs{List: []gateway.Input{{IDs: ids, IsIDs: true}}, Set: true}
		return nil
	}
	list := make([]gateway.Input, 0, 8)
	for {
		p.space()
		switch p.peek() {
		case '"':
			s, err := p.str(len(list))
			if err != nil {
				return err
			}
			list = append(list, gateway.Input{Text: s})
		case '[':
			p.i++
			ids, err := p.ids(len(list))
			if err != nil {
				return err
			}
			list = append(list, gateway.Input{IDs: ids, IsIDs: true})
		default:
			return &inputsError{Kind: gateway.Validation, Path: elem(len(list)), Msg: "expected a string or a list of token ids"}
		}
		p.space()
		switch p.next() {
		case ',':
			continue
		case ']':
			*in = Inputs{List: list, Set: true}
			return nil
		default:
			return errSyntax
		}
	}
}

var errSyntax = &inputsError{Kind: gateway.Malformed, Msg: "malformed JSON"}

// parser walks JSON that encoding/json has already validated; it still
// checks bounds so that no input can make it panic.
type parser struct {
	b []byte
	i int
}

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) next() byte {
	c := p.peek()
	p.i++
	return c
}

func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// elem is the path of element i of the inputs list; -1 is the field
// itself. Paths are built only for errors.
func elem(i int) string {
	if i < 0 {
		return ""
	}
	return "[" + strconv.Itoa(i) + "]"
}

// str reads a JSON string at p.i (element idx, for errors). Plain strings are converted directly;
// strings with escapes or invalid UTF-8 go through encoding/json so the
// result is exactly what it would have produced.
func (p *parser) str(idx int) (string, error) {
	start := p.i
	p.i++ // '"'
	escaped := false
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '\\':
			escaped = true
			p.i += 2
			continue
		case '"':
			p.i++
			raw := p.b[start+1 : p.i-1]
			if !escaped && utf8.Valid(raw) {
				return string(raw), nil
			}
			var s string
			if err := json.Unmarshal(p.b[start:p.i], &s); err != nil {
				return "", &inputsError{Kind: gateway.Malformed, Path: elem(idx), Msg: "malformed string"}
			}
			return s, nil
		}
		p.i++
	}
	return "", errSyntax
}

// ids reads the token ids of element idx up to and including the closing
// ']' (the '[' is already consumed).
func (p *parser) ids(idx int) ([]int32, error) {
	ids := make([]int32, 0, 16)
	p.space()
	if p.peek() == ']' {
		p.i++
		return ids, nil
	}
	for {
		p.space()
		start := p.i
		for p.i < len(p.b) && isNumByte(p.b[p.i]) {
			p.i++
		}
		at := func() string { return elem(idx) + elem(len(ids)) }
		if start == p.i {
			return nil, &inputsError{Kind: gateway.Validation, Path: at(), Msg: "expected a token id (an integer)"}
		}
		v, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange):
			return nil, &inputsError{Kind: gateway.Validation, Path: at(), Msg: "token id out of range"}
		case err != nil:
			return nil, &inputsError{Kind: gateway.Validation, Path: at(), Msg: "token id must be an integer"}
		case v < 0 || v > maxTokenID:
			return nil, &inputsError{Kind: gateway.Validation, Path: at(), Msg: "token id " + strconv.FormatInt(v, 10) + " out of range [0, 2^31)"}
		}
		ids = append(ids, int32(v))
		p.space()
		switch p.next() {
		case ',':
		case ']':
			return ids, nil
		default:
			return nil, &inputsError{Kind: gateway.Validation, Path: at(), Msg: "expected a token id (an integer)"}
		}
	}
}

func isNumByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// Direction is truncation_direction: "Right" or "Left", any case; null
// means Right.
type Direction gateway.Direction

// UnmarshalJSON implements json.Unmarshaler.
func (d *Direction) UnmarshalJSON(data []byte) error {
	var s *string
	if err := json.Unmarshal(data, &s); err != nil {
		return gateway.Errorf(gateway.Validation, "truncation_direction", `expected "Right" or "Left"`)
	}
	switch {
	case s == nil || strings.EqualFold(*s, "right"):
		*d = Direction(gateway.Right)
	case strings.EqualFold(*s, "left"):
		*d = Direction(gateway.Left)
	default:
		return gateway.Errorf(gateway.Validation, "truncation_direction", `expected "Right" or "Left", got %q`, gateway.Clip(*s))
	}
	return nil
}

// DecodeError turns an error from json.Unmarshal of a request body into a
// *gateway.Error. Params are native paths ("inputs[3]"); a codec renders
// them in its dialect.
func DecodeError(err error) *gateway.Error {
	var (
		ge *gateway.Error
		ie *inputsError
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &ge):
		return ge
	case errors.As(err, &ie):
		if ie.Kind == gateway.Malformed {
			return &gateway.Error{Kind: gateway.Malformed, Msg: "malformed JSON", Err: err}
		}
		return &gateway.Error{Kind: ie.Kind, Param: "inputs" + ie.Path, Msg: ie.Msg}
	case errors.As(err, &se):
		return &gateway.Error{Kind: gateway.Malformed, Msg: "malformed JSON at byte " + strconv.FormatInt(se.Offset, 10), Err: err}
	case errors.As(err, &te):
		if te.Field == "" {
			return &gateway.Error{Kind: gateway.Validation, Msg: "the body must be a JSON object", Err: err}
		}
		// Fields of embedded structs come as "Options.truncate".
		field := te.Field[strings.LastIndexByte(te.Field, '.')+1:]
		return &gateway.Error{Kind: gateway.Validation, Param: field, Msg: "expected " + te.Type.String() + ", got " + te.Value, Err: err}
	}
	return &gateway.Error{Kind: gateway.Malformed, Msg: "malformed JSON", Err: err}
}

// AppendFloats appends v as a JSON array; NaN and infinities have no JSON
// form and are an error.
func AppendFloats(dst []byte, v []float32) ([]byte, error) {
	dst = append(dst, '[')
	for i, f := range v {
		if i > 0 {
			dst = append(dst, ',')
		}
		var ok bool
		if dst, ok = AppendFloat(dst, f); !ok {
			return dst, &gateway.Error{Kind: gateway.Internal, Msg: "non-finite value in embedding"}
		}
	}
	return append(dst, ']'), nil
}

// AppendFloat appends f as a JSON number, in the fewest digits that read
// back as the same float32. NaN and infinities have no JSON form: it
// appends nothing and reports false.
func AppendFloat(dst []byte, f float32) ([]byte, bool) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return dst, false
	}
	return strconv.AppendFloat(dst, float64(f), 'g', -1, 32), true
}

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func AppendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

func appendInt(dst []byte, n int) []byte { return strconv.AppendInt(dst, int64(n), 10) }
