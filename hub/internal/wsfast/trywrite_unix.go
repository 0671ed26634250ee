//go:build unix

package wsfast

import (
	"net"
	"syscall"

	"github.com/sessionhub/sessionhub/internal/rawsock"
)

// write writes what of b the socket of nc takes now: ok is false (and
// nothing written) when nc has no socket to write to without waiting.
func (w *TryWriter) write(nc net.Conn, b []byte) (n int, ok bool, err error) {
	if nb, ok := nc.(nonBlocking); ok {
		n, err := nb.TryWrite(b)
		return n, true, err
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0, false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, true, err
	}
	w.b, w.n, w.err = b, 0, nil
	// RawWrite holds the descriptor's write lock and a reference to it
	// while attempt runs, so the descriptor cannot be closed and reused
	// under it; attempt never asks it to wait for the socket.
	err = rc.Write(w.attempt)
	n, err = w.n, firstErr(err, w.err)
	w.b, w.err = nil, nil
	return n, true, err
}

// attemptOnce writes w.b from w.n on until the socket takes no more, and
// always reports itself done: RawWrite does not wait.
func (w *TryWriter) attemptOnce(fd uintptr) bool {
	n, err := rawsock.WriteNow(fd, w.b[w.n:])
	w.n += n
	if err != nil && err != syscall.EAGAIN {
		w.err = err
	}
	return true
}

// firstErr is the first of its errors that is not nil.
func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
