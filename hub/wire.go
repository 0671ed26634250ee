package hub

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
)

// The hub writes its data frames itself and leaves the rest of the
// WebSocket protocol (the handshake, reading, control frames, the close
// handshake) to coder/websocket. The two share the hijacked connection
// safely because each frame goes out in one Write call, and a net.Conn's
// Write calls do not interleave (the descriptor's write lock, or tls.Conn's
// output lock, is held for the whole call):
//
//   - the hub's data frames are built whole in a buffer (reserveHeader, finishFrame, or
//     appendFrame for several whole frames in a row) and written with one Write;
//   - the library writes control frames (close, ping, pong: at most 127
//     bytes from a server, RFC 6455 §5.5) through the bufio.Writer that
//     hijack hands it, whose buffer takes a whole control frame, so each
//     leaves in the one Write of its flush.
//
// This skips the library's per-message writer (its write mutex, its
// bookkeeping and the copy into its buffer) on the fan-out path, and lets
// the library keep small buffers (wireReadBuf, wireControlBuf) instead of
// net/http's 4 KiB ones for the life of the connection.
const (
	// wireReadBuf is the size of the read buffer a connection keeps: a
	// client's usual frames (a cursor update is about 100 bytes) fit in
	// one read; larger ones are read through it in several.
	wireReadBuf = 512

	// wireControlBuf is the size of the write buffer the library writes
	// control frames through: the largest a server sends is 2 bytes of
	// header and 125 of payload.
	wireControlBuf = 128

	// maxFrameHeader is the longest header of an unmasked frame.
	maxFrameHeader = 10

	opText  = 0x1 // RFC 6455 §5.2
	opPing  = 0x9
	opPong  = 0xA
	finBit  = 0x80
	maskBit = 0x80

	// maxControlPayload is the longest payload of a control frame.
	maxControlPayload = 125
)

// pingFrame is the hub's ping: final, no payload.
var pingFrame = []byte{finBit | opPing, 0}

// pongLen reports the length of the client's pong frame (final, masked, at
// most maxControlPayload bytes of payload) at the start of b, or 0 if b does
// not start with one. b needs only the first two bytes of the frame.
func pongLen(b []byte) int {
	if len(b) < 2 || b[0] != finBit|opPong || b[1]&maskBit == 0 || int(b[1]&^maskBit) > maxControlPayload {
		return 0
	}
	return 2 + 4 + int(b[1]&^maskBit)
}

// hijacker keeps the net.Conn that websocket.Accept hijacks, so that the hub
// can write its data frames to it and drop it even while a close handshake
// is in flight (the library's CloseNow then only waits for that handshake to
// time out), and hands the library small buffers.
type hijacker struct {
	http.ResponseWriter
	conn net.Conn
	br   *bufio.Reader // the library's read buffer, peeked at for pongs
	// bytesAfterUpgrade is set when the client sent bytes behind its
	// upgrade request: the library takes them from behind br's back (it
	// resets br to read them first), so they are not seen as buffered.
	bytesAfterUpgrade bool
	// status is the status of a refused upgrade (403 for the Origin), for
	// sessionhub_upgrades_total.
	status int
}

// WriteHeader records the status the library answers a refused upgrade with.
func (w *hijacker) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Hijack hijacks the connection and returns it with a bufio.ReadWriter of
// wireReadBuf and wireControlBuf bytes. Bytes a client sent right behind its
// upgrade request, already in net/http's buffer, are carried over.
func (w *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = c
	r := bufio.NewReaderSize(c, wireReadBuf)
	if n := rw.Reader.Buffered(); n > 0 {
		w.bytesAfterUpgrade = true
		// Peek fills the new buffer from the old first: the library takes
		// what is buffered from it before reading the connection.
		ahead, _ := rw.Reader.Peek(n)
		r = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(ahead), c), max(n, wireReadBuf))
		if _, err := r.Peek(n); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	w.br = r
	return c, bufio.NewReadWriter(r, bufio.NewWriterSize(c, wireControlBuf)), nil
}

// appendFrame appends p to b as a final, unmasked text frame (RFC 6455
// §5.2), header and payload, and returns the extended buffer.
func appendFrame(b, p []byte) []byte {
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

// reserveHeader starts a frame in b: room for its header, which finishFrame
// fills in once the payload that follows is known.
func reserveHeader(b []byte) []byte {
	var room [maxFrameHeader]byte
	return append(b[:0], room[:]...)
}

// finishFrame turns b, made by reserveHeader and then the payload, into a
// final, unmasked text frame (RFC 6455 §5.2) and returns it: a sub-slice of
// b that starts where the header does.
func finishFrame(b []byte) []byte {
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
