package triton

import (
	"errors"
	"fmt"
	"unsafe"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/embedgate/embedgate/tritonstubs"
)

// Field numbers of ModelInferResponse (tritonstubs/inference.proto). All
// of them are length-delimited.
const (
	fieldModelName         protowire.Number = 1 // the lowest; parameters 4, outputs 5
	fieldRawOutputContents protowire.Number = 6 // the highest
)

// errNotWhole is returned for a raw_output_contents entry whose length is
// not a whole number of values of the output's datatype.
var errNotWhole = errors.New("raw_output_contents entry is not a whole number of values")

// errTooManyOutputs is returned for a response with more
// raw_output_contents entries than maxRawOutputs.
var errTooManyOutputs = errors.New("more raw_output_contents entries than any request of the gateway asks for")

// maxRawOutputs bounds the raw_output_contents entries of a response. The
// gateway asks for one output; without a bound a malformed response of
// many tiny entries would cost a buffer each.
const maxRawOutputs = 16

// errTruncated is returned when the message ends inside a field.
var errTruncated = errors.New("truncated message")

// inferCodec is the gRPC codec of ModelInfer calls only (grpc.ForceCodecV2),
// so that the response's tensors are copied once. grpc's proto codec
// gathers the received HTTP/2 frames into one buffer (MaterializeToBuffer),
// proto.Unmarshal copies raw_output_contents out of it again, and the
// gateway then keeps a third view of it: for a [32,512,384] FP32
// last_hidden_state that is 25 MB per copy per batch in flight. Here the
// response is decoded straight from the frames, and each
// raw_output_contents entry is copied from them into a reused []float32.
// Requests, and any other message type, go through the proto codec.
type inferCodec struct {
	proto encoding.CodecV2 // grpc's registered proto codec
}

// Name is the proto codec's: with a forced codec grpc sends the content
// type application/grpc+proto (plain application/grpc before), which
// Triton, like any gRPC server, takes as the same protobuf calls.
func (c *inferCodec) Name() string { return c.proto.Name() }

func (c *inferCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c *inferCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*inferResponse)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	if err := r.unmarshal(data, littleEndian()); err != nil {
		r.err = err // gRPC hides it in a status; Embed reports it as such
		return fmt.Errorf("triton: ModelInferResponse: %w", err)
	}
	return nil
}

// inferResponse is a ModelInferResponse as inferCodec decodes it: every
// field but raw_output_contents in msg, and raw_output_contents as FP32
// values in buffers taken from pool, converted from wire, the datatype the
// model's metadata gives its output (decode checks that the response says
// the same). Whoever holds it calls release.
type inferResponse struct {
	pool *floatPool
	wire wireFloat
	msg  tritonstubs.ModelInferResponse // RawOutputContents stays empty
	raw  [][]float32                    // raw_output_contents, in order; nil once taken
	err  error                          // why the codec refused the response, if it did
}

// take hands raw[i] to the caller, who returns it to the pool; release no
// longer does.
func (r *inferResponse) take(i int) []float32 {
	f := r.raw[i]
	r.raw[i] = nil
	return f
}

// release returns the buffers not taken to the pool and empties r, so it
// can be decoded into again.
func (r *inferResponse) release() {
	for i, f := range r.raw {
		if f != nil {
			r.pool.put(f)
		}
		r.raw[i] = nil
	}
	r.raw = r.raw[:0]
	r.msg.Reset()
}

// unmarshal walks the protobuf wire format of a ModelInferResponse over
// data, whose buffers may split anything at any byte. The small fields
// (1 to 5) are gathered and handed to proto.Unmarshal; raw_output_contents
// entries are decoded as little-endian r.wire values into pooled FP32
// buffers (native: the host is little-endian, so FP32 bytes are copied as
// they are). Fields
// of other numbers or wire types are skipped, as proto.Unmarshal would
// keep them only as unknown fields. On error r is released.
func (r *inferResponse) unmarshal(data mem.BufferSlice, native bool) error {
	r.release()
	if err := r.walk(data, native); err != nil {
		r.release()
		return err
	}
	return nil
}

func (r *inferResponse) walk(data mem.BufferSlice, native bool) error {
	rd := data.Reader()
	defer rd.Close()
	var small []byte
	for rd.Remaining() > 0 {
		tag, err := readVarint(rd)
		if err != nil {
			return fmt.Errorf("field tag: %w", err)
		}
		num, typ := protowire.DecodeTag(tag)
		// proto.Unmarshal's own bounds for a message's field numbers.
		if num < protowire.MinValidNumber || num > protowire.MaxValidNumber {
			return fmt.Errorf("invalid field number %d", tag>>3)
		}
		if typ != protowire.BytesType || num < fieldModelName || num > fieldRawOutputContents {
			if err := skipField(rd, num, typ, protowire.DefaultRecursionLimit); err != nil {
				return fmt.Errorf("field %d: %w", num, err)
			}
			continue
		}
		n, err := readLen(rd)
		if err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
		if num == fieldRawOutputContents {
			if len(r.raw) == maxRawOutputs {
				return errTooManyOutputs
			}
			f, err := r.readFloats(rd, n, native)
			if err != nil {
				return fmt.Errorf("raw_output_contents[%d]: %w", len(r.raw), err)
			}
			r.raw = append(r.raw, f)
			continue
		}
		small = protowire.AppendTag(small, num, typ)
		small = protowire.AppendVarint(small, uint64(n))
		m := len(small)
		small = append(small, make([]byte, n)...)
		if err := readFull(rd, small[m:]); err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
	}
	if err := proto.Unmarshal(small, &r.msg); err != nil {
		return err
	}
	return nil
}

// readFloats reads n bytes of little-endian r.wire values into a buffer
// from the pool: one copy from the frames to the end of the buffer, then,
// unless they are FP32 on a little-endian host and so already in place,
// converted in place (wireFloat.widen).
func (r *inferResponse) readFloats(rd *mem.Reader, n int, native bool) ([]float32, error) {
	size := r.wire.size()
	if n%size != 0 {
		return nil, fmt.Errorf("%w: %d bytes of %s", errNotWhole, n, r.wire)
	}
	f := r.pool.get(n / size)
	all := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
	src := all[len(all)-n:]
	if err := readFull(rd, src); err != nil {
		r.pool.put(f)
		return nil, err
	}
	if !native || r.wire != wireFP32 {
		r.wire.widen(f, src)
	}
	return f, nil
}

// readVarint reads a base-128 varint as protowire.ConsumeVarint does: at
// most 10 bytes, the last no more than 1.
func readVarint(rd *mem.Reader) (uint64, error) {
	var v uint64
	for i := range 10 {
		b, err := rd.ReadByte()
		if err != nil {
			return 0, errTruncated
		}
		if i == 9 && b > 1 {
			break
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("varint overflows 64 bits")
}

// readLen reads the length of a length-delimited field and checks that the
// message holds that many more bytes.
func readLen(rd *mem.Reader) (int, error) {
	v, err := readVarint(rd)
	if err != nil {
		return 0, err
	}
	if v > uint64(rd.Remaining()) {
		return 0, fmt.Errorf("%w: length %d, %d bytes left", errTruncated, v, rd.Remaining())
	}
	return int(v), nil
}

// readFull fills p from rd.
func readFull(rd *mem.Reader, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if len(p) > rd.Remaining() {
		return errTruncated
	}
	if n, _ := rd.Read(p); n != len(p) {
		return errTruncated
	}
	return nil
}

// skip discards n bytes.
func skip(rd *mem.Reader, n int) error {
	if n > rd.Remaining() {
		return errTruncated
	}
	if _, err := rd.Discard(n); err != nil {
		return errTruncated
	}
	return nil
}

// skipField discards the value of a field whose tag was read, checking it
// as protowire.ConsumeFieldValue does: groups nest at most depth deep and
// end with their own number; an end-group or reserved wire type here is an
// error.
func skipField(rd *mem.Reader, num protowire.Number, typ protowire.Type, depth int) error {
	switch typ {
	case protowire.VarintType:
		_, err := readVarint(rd)
		return err
	case protowire.Fixed32Type:
		return skip(rd, 4)
	case protowire.Fixed64Type:
		return skip(rd, 8)
	case protowire.BytesType:
		n, err := readLen(rd)
		if err != nil {
			return err
		}
		return skip(rd, n)
	case protowire.StartGroupType:
		if depth < 0 {
			return errors.New("groups nested too deep")
		}
		for {
			tag, err := readVarint(rd)
			if err != nil {
				return err
			}
			num2, typ2 := protowire.DecodeTag(tag)
			if num2 < protowire.MinValidNumber {
				return fmt.Errorf("invalid field number %d in group", tag>>3)
			}
			if typ2 == protowire.EndGroupType {
				if num2 != num {
					return fmt.Errorf("group %d ends as %d", num, num2)
				}
				return nil
			}
			if err := skipField(rd, num2, typ2, depth-1); err != nil {
				return err
			}
		}
	case protowire.EndGroupType:
		return errors.New("end of a group never started")
	default:
		return fmt.Errorf("reserved wire type %d", typ)
	}
}
