package wsfast

// Reader runs on the connection's reader (the hub's readPump and the
// readFrames it starts), but Lock and Unlock, which the writer takes
// around the close handshake.

import (
	"bufio"
	"sync"
)

// Reader is the shallow reader of one WebSocket connection: between the
// messages the library reads, it waits for the next bytes without reading
// them (Await), and takes the client's pongs off the head of the
// library's read buffer (TakePong), so that an idle connection waits on a
// shallow stack rather than deep in the library's read. Its zero value has
// no shallow wait (Shallow reports false): the reader then waits in the
// library's read, which takes the pongs itself. Set it up with Init.
//
// Only the connection's reader may call its methods, but Lock and Unlock.
type Reader struct {
	// mu guards br, the library's read buffer, which the reader peeks at
	// between messages and the library's close handshake reads.
	mu sync.Mutex
	br *bufio.Reader
	// afterUpgrade is Hijacker's bytesAfterUpgrade until the first Await.
	afterUpgrade bool
	// await waits shallowly for the next bytes; nil: no socket to wait on.
	await func()
}

// Init sets r up for the connection h hijacked, after a successful
// websocket.Accept: r shares the library's read buffer, and waits
// shallowly if the connection has a socket to wait on (not a TLS
// connection, which reads ahead of its socket). Call it before the reader
// starts.
func (r *Reader) Init(h *Hijacker) {
	r.br, r.afterUpgrade = h.br, h.bytesAfterUpgrade
	r.await = readableWaiter(h.conn)
}

// Shallow reports whether r waits shallowly: if not, Await and TakePong
// must not be used, and the reader waits in the library's read.
func (r *Reader) Shallow() bool { return r.await != nil }

// Await waits until the connection has something to read, or has ended
// (the read that follows reports how), without reading it: at once if
// bytes are buffered, or on the first call if bytes came behind the
// upgrade request. Only for a Shallow r.
func (r *Reader) Await() {
	if r.afterUpgrade {
		r.afterUpgrade = false
		return
	}
	if !r.Buffered() {
		r.await()
	}
}

// Buffered reports whether the read buffer holds bytes the library has not
// read yet.
func (r *Reader) Buffered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.br != nil && r.br.Buffered() > 0
}

// TakePong consumes the client's pong at the head of what came in, if a
// whole one is there, and reports whether it did: the caller records the
// pong. The library would read it too (OnPongReceived), but then go on to
// wait for the next message, deep in its read. It reads from the
// connection only when nothing is buffered (Await said something came).
// Call it between messages only, and only for a Shallow r (else it
// reports false).
func (r *Reader) TakePong() bool {
	if r.await == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.br.Buffered() == 0 {
		// Something is readable (Await waited for it): take it in.
		r.br.Peek(1)
	}
	head, _ := r.br.Peek(min(r.br.Buffered(), 2))
	n := pongLen(head)
	if n == 0 || r.br.Buffered() < n {
		return false
	}
	r.br.Discard(n)
	return true
}

// Lock keeps the reader off the read buffer while another goroutine has
// the library read from it: the writer holds it around the library's close
// handshake, which reads the peer's reply there.
func (r *Reader) Lock() { r.mu.Lock() }

// Unlock undoes Lock.
func (r *Reader) Unlock() { r.mu.Unlock() }
