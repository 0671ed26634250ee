package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
)

// Encode writes the envelope {"type":typ,"data":data,"ref":ref} (ref left out
// when empty, data when nil). The result is what one text frame carries.
// Nothing is HTML-escaped (a '<' stays one byte, not six), so that a payload
// reaches others at the size it was sent.
func Encode(typ, ref string, data any) ([]byte, error) {
	env := struct {
		Type string `json:"type"`
		Data any    `json:"data,omitempty"`
		Ref  string `json:"ref,omitempty"`
	}{typ, data, ref}
	b, err := Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return b, nil
}

// Marshal is json.Marshal without HTML escaping: what the hub sends to
// clients and stores is encoded with it, so that '<', '>' and '&' (in
// payloads, names, events) keep their size. The result is the caller's.
func Marshal(v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		return nil, err
	}
	out := bytes.TrimSuffix(e.buf.Bytes(), []byte{'\n'})
	if e.buf.Cap() > maxPooledEncoder {
		e.buf = bytes.Buffer{} // not kept: the pool holds small buffers only
		e.enc = newEncoder(&e.buf)
	}
	return bytes.Clone(out), nil
}

// maxPooledEncoder is the largest buffer an encoder keeps in the pool.
const maxPooledEncoder = 64 << 10

// encoder is a JSON encoder without HTML escaping and its buffer.
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

func newEncoder(w *bytes.Buffer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// encoders holds Marshal's encoders.
var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = newEncoder(&e.buf)
	return e
}}

// EncodeError writes an error event for err, echoing ref. An err that is not
// an *Error is reported as internal without its text.
func EncodeError(ref string, err error) []byte {
	pe, ok := err.(*Error)
	if !ok {
		pe = &Error{Code: CodeInternal, Message: "internal error"}
	}
	b, mErr := Encode(TypeError, ref, ErrorPayload{Code: pe.Code, Message: pe.Message})
	if mErr != nil { // cannot happen: strings only
		panic(mErr)
	}
	return b
}

// Envelope is a decoded server message whose data is left raw, for clients
// that dispatch on Type before decoding Data.
type Envelope struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data,omitempty"`
	Ref  string          `json:"ref,omitempty"`
}
