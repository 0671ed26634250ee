//go:build unix && !aix

package wsfast

import (
	"net"
	"syscall"

	"github.com/sessionhub/sessionhub/internal/rawsock"
)

// readableWaiter returns a function that waits until nc has something to
// read, or has ended, without reading it and on a shallow stack; nil if nc
// has no socket to wait on (a TLS connection). Only the reader may call
// the function (Reader.Await).
func readableWaiter(nc net.Conn) func() {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var one [1]byte
	// ready peeks at the socket: anything but "nothing yet" (a byte, the
	// end, an error) ends the wait, and the read that follows sees it.
	ready := func(fd uintptr) bool {
		_, err := rawsock.Peek(fd, one[:])
		return err != syscall.EAGAIN
	}
	return func() {
		// An error (the connection was closed) also ends the wait: the
		// read that follows reports it.
		_ = rc.Read(ready)
	}
}
