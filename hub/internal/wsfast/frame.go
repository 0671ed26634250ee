package wsfast

import (
	"encoding/binary"
	"io"
)

// The hub's frames (RFC 6455 §5.2): the server's are final and unmasked.
const (
	// maxFrameHeader is the longest header of an unmasked frame.
	maxFrameHeader = 10

	opText  = 0x1
	opPing  = 0x9
	opPong  = 0xA
	finBit  = 0x80
	maskBit = 0x80

	// maxControlPayload is the longest payload of a control frame.
	maxControlPayload = 125
)

// pingFrame is the hub's ping: final, no payload.
var pingFrame = []byte{finBit | opPing, 0}

// WritePing writes the hub's ping (a final ping frame with no payload) to
// w, the connection Hijacker hijacked, in one Write. The client's pong is
// taken by Reader.TakePong or by the library (OnPongReceived).
func WritePing(w io.Writer) error {
	_, err := w.Write(pingFrame)
	return err
}

// AppendFrame appends p to b as a final, unmasked text frame (RFC 6455
// §5.2), header and payload, and returns the extended buffer. Several
// frames appended in a row may leave in one Write.
func AppendFrame(b, p []byte) []byte {
	n := len(p)
	switch {
	case n < 126:
		b = append(b, finBit|opText, byte(n))
	case n <= 0xFFFF:
		b = append(b, finBit|opText, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, finBit|opText, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, p...)
}

// ReserveHeader starts a frame in b, whose contents it drops: it returns b
// holding room for the longest header, to which the caller appends the
// payload (when it is not known in advance: a batch joined from a queue)
// and which FinishFrame then turns into the frame.
func ReserveHeader(b []byte) []byte {
	var room [maxFrameHeader]byte
	return append(b[:0], room[:]...)
}

// FinishFrame turns b, made by ReserveHeader and then the payload, into a
// final, unmasked text frame (RFC 6455 §5.2) and returns it: a sub-slice
// of b that starts where the header does (b's first bytes are unused when
// the header is shorter than the longest). It allocates nothing.
func FinishFrame(b []byte) []byte {
	n := len(b) - maxFrameHeader
	var h []byte
	switch {
	case n < 126:
		h = b[maxFrameHeader-2 : maxFrameHeader]
		h[1] = byte(n)
	case n <= 0xFFFF:
		h = b[maxFrameHeader-4 : maxFrameHeader]
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = b[:maxFrameHeader]
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	h[0] = finBit | opText
	return b[maxFrameHeader-len(h):]
}

// pongLen reports the length of the client's pong frame (final, masked, at
// most maxControlPayload bytes of payload) at the start of b, or 0 if b
// does not start with one. b needs only the first two bytes of the frame.
func pongLen(b []byte) int {
	if len(b) < 2 || b[0] != finBit|opPong || b[1]&maskBit == 0 || int(b[1]&^maskBit) > maxControlPayload {
		return 0
	}
	return 2 + 4 + int(b[1]&^maskBit)
}
