package wsfast

// Out's methods run on the goroutine that writes a frame: the hub's writer
// (a connection's writer goroutine, or the hub's flusher) for data frames
// and pings, the library for its control frames (a pong on the reader,
// the close on the writer).

import (
	"net"
	"sync"
)

// Out is the writing end of a hijacked connection, which the hub's frames
// and the library's control frames share (see the package doc, point 2).
// Every frame leaves whole: Write writes one frame with one Write on the
// connection, and a frame that TryWrite could only begin (the peer's
// socket buffer was full) holds Out until Finish has written its rest, so
// that no other frame lands in its middle.
//
// Write may be called concurrently with itself and with TryWrite. TryWrite
// and Finish are the hub writer's, which runs one at a time; when TryWrite
// did not write the whole frame, Finish must be the writer's next call
// (the frame's messages were taken from the send queue: the rest of the
// frame is the next thing the peer must get).
type Out struct {
	conn net.Conn
	// mu is held by a Write for its frame, and by the hub's writer from a
	// TryWrite that began a frame (held) until Finish wrote its rest.
	mu sync.Mutex
	// rest is what TryWrite left of a frame for Finish: its unwritten end
	// (held) or, when it could not begin it, all of it. Only the writer
	// reads or writes rest and held.
	rest []byte
	held bool
}

// NewOut returns the writing end of conn.
func NewOut(conn net.Conn) *Out { return &Out{conn: conn} }

// Conn is the connection Out writes to.
func (o *Out) Conn() net.Conn { return o.conn }

// Write writes p, one whole frame (or several whole frames), with one
// Write on the connection, after a frame TryWrite began has been finished.
func (o *Out) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.conn.Write(p)
}

// Close closes the connection, which ends a Write or Finish stuck on a
// peer that does not read.
func (o *Out) Close() error { return o.conn.Close() }

// TryWrite writes frame without waiting on the peer, using tw (which only
// one goroutine may use at a time), and reports whether all of it left.
// What did not (the end the peer's socket buffer did not take; the whole
// frame when another frame was leaving or the connection cannot be
// written without waiting, a TLS one) is kept, copied, for Finish. An
// error is the connection's (it was closed or reset): the frame is lost
// with it.
func (o *Out) TryWrite(tw *TryWriter, frame []byte) (done bool, err error) {
	if !o.mu.TryLock() { // a control frame is leaving
		o.rest, o.held = append([]byte(nil), frame...), false
		return false, nil
	}
	n, ok, err := tw.write(o.conn, frame)
	switch {
	case err != nil:
		o.mu.Unlock()
		return false, err
	case !ok:
		o.mu.Unlock()
		o.rest, o.held = append([]byte(nil), frame...), false
		return false, nil
	case n < len(frame):
		o.rest, o.held = append([]byte(nil), frame[n:]...), true
		return false, nil // mu stays held until Finish
	}
	o.mu.Unlock()
	return true, nil
}

// Unfinished reports whether TryWrite left (part of) a frame for Finish.
func (o *Out) Unfinished() bool { return o.rest != nil }

// Finish writes what TryWrite left of a frame, waiting on the peer as
// Write does, and lets other frames go again. It does nothing when
// nothing was left.
func (o *Out) Finish() error {
	if o.rest == nil {
		return nil
	}
	rest := o.rest
	o.rest = nil
	if !o.held {
		o.mu.Lock()
	}
	o.held = false
	_, err := o.conn.Write(rest)
	o.mu.Unlock()
	return err
}

// TryWriter makes the writes of TryWrite without allocating for each.
// Only one goroutine may use a TryWriter at a time.
type TryWriter struct {
	b       []byte
	n       int
	err     error
	attempt func(fd uintptr) bool // w.attemptOnce, bound once
}

// NewTryWriter returns a TryWriter.
func NewTryWriter() *TryWriter {
	w := &TryWriter{}
	w.attempt = w.attemptOnce
	return w
}

// nonBlocking is a connection that writes without waiting by itself: a
// test's recorder. TryWrite uses its TryWrite instead of the socket's.
type nonBlocking interface {
	TryWrite(b []byte) (int, error)
}
