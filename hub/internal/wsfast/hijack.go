package wsfast

// Hijacker runs on the goroutine of the upgrade request (websocket.Accept
// calls it).

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"

	"github.com/sessionhub/sessionhub/internal/rawsock"
)

const (
	// wireReadBuf is the size of the read buffer a connection keeps: a
	// client's usual frames (a cursor update is about 100 bytes) fit in
	// one read; larger ones are read through it in several.
	wireReadBuf = 512

	// wireControlBuf is the size of the write buffer the library writes
	// control frames through: the largest a server sends is 2 bytes of
	// header and 125 of payload (see the package doc, point 2).
	wireControlBuf = 128
)

// Hijacker is the http.ResponseWriter to hand websocket.Accept: it keeps
// the net.Conn that Accept hijacks, so that the hub can write its data
// frames to it and drop it even while a close handshake is in flight (the
// library's CloseNow then only waits for that handshake to time out), and
// hands the library small buffers. After a successful Accept, Conn is the
// connection and Reader.Init takes its read buffer; after a refused one,
// Status is the status Accept answered with. Its zero value is not usable:
// set ResponseWriter.
type Hijacker struct {
	http.ResponseWriter

	conn net.Conn
	out  *Out          // conn's writing end, through which the library writes too
	br   *bufio.Reader // the library's read buffer, peeked at for pongs
	// bytesAfterUpgrade is set when the client sent bytes behind its
	// upgrade request: the library takes them from behind br's back (it
	// resets br to read them first), so they are not seen as buffered.
	bytesAfterUpgrade bool
	status            int
}

// Conn is the hijacked connection as Hijack returned it (wrapped), nil
// before Hijack.
func (w *Hijacker) Conn() net.Conn { return w.conn }

// Out is the hijacked connection's writing end, nil before Hijack: the
// library writes its control frames through it, and the hub its frames
// (AppendFrame, FinishFrame, WritePing), each whole.
func (w *Hijacker) Out() *Out { return w.out }

// Status is the status the library answered a refused upgrade with (403
// for the Origin), 0 if it wrote none.
func (w *Hijacker) Status() int { return w.status }

// WriteHeader records the status the library answers a refused upgrade with.
func (w *Hijacker) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Hijack hijacks the connection and returns it, wrapped by rawsock.Wrap
// (a TCP connection's reads and writes then skip the runtime's system-call
// bookkeeping; see the package doc), with a bufio.ReadWriter of
// wireReadBuf and wireControlBuf bytes, whose writer writes through Out. Bytes a client sent right behind its
// upgrade request, already in net/http's buffer, are carried over.
func (w *Hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	c = rawsock.Wrap(c) // the library's reads and writes too (see the doc above)
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
	w.out = NewOut(c)
	return c, bufio.NewReadWriter(r, bufio.NewWriterSize(w.out, wireControlBuf)), nil
}
