//go:build unix && !(linux && (amd64 || arm64))

package rawsock

import (
	"net"
	"syscall"
)

// Enabled reports whether this platform has the raw path: whether Wrap
// wraps a socket connection.
const Enabled = false

// Wrap returns c as it is: the raw path is built for linux/amd64 and
// linux/arm64 only (see the package doc).
func Wrap(c net.Conn) net.Conn { return c }

// Wrapped reports whether c came from Wrap: never here.
func Wrapped(net.Conn) bool { return false }

// Peek copies into b what the socket fd has to read, without taking it
// and without waiting: syscall.EAGAIN when it has nothing yet, n = 0 at its
// end. It is for a syscall.RawConn's Read callback.
func Peek(fd uintptr, b []byte) (int, error) {
	n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}

// WriteNow writes what of b the socket fd takes now, with as many
// write(2)s as it takes, and returns how much it wrote: with
// syscall.EAGAIN when the socket took no more before the end of b, with
// another error when a call failed. It is for a syscall.RawConn's Write
// callback, which holds the descriptor.
func WriteNow(fd uintptr, b []byte) (int, error) {
	written := 0
	for written < len(b) {
		n, err := syscall.Write(int(fd), b[written:])
		switch {
		case err == syscall.EINTR:
		case err != nil:
			return written, err
		default:
			written += n
		}
	}
	return written, nil
}
