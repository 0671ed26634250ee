//go:build linux && (amd64 || arm64)

package rawsock

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Enabled reports whether this platform has the raw path: whether Wrap
// wraps a socket connection.
const Enabled = true

// Wrap returns c with Read and Write whose system calls skip the runtime's
// bookkeeping (see the package doc), and every other method c's own. c
// must be a *net.TCPConn or a *net.UnixConn; any other connection (a
// *tls.Conn, a net.Pipe) is returned as it is. The result is a net.Conn
// like c: its methods may be called concurrently, Reads take turns, and
// so do Writes, each of which writes all of its bytes before the next
// begins; a deadline or Close ends a Read or Write that waits. It is also
// a syscall.Conn, with c's RawConn, and its NetConn method returns c.
func Wrap(c net.Conn) net.Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return c
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return c
	}
	w := &conn{Conn: c, raw: raw, network: c.LocalAddr().Network()}
	w.r.fn = w.readOnce
	w.w.fn = w.writeAll
	return w
}

// Wrapped reports whether c came from Wrap.
func Wrapped(c net.Conn) bool {
	_, ok := c.(*conn)
	return ok
}

// conn is a wrapped socket connection: its reads and its writes each go
// through a call.
type conn struct {
	net.Conn
	raw     syscall.RawConn
	network string
	r, w    call
}

// call is one side of a conn, reading or writing. A Read's buffer and
// result are kept in its call (under mu), as a Write's are, so that the
// function RawConn calls (fn: readOnce or writeAll) is bound once, not
// made per call; mu also makes concurrent Reads (or Writes) take turns.
type call struct {
	mu    sync.Mutex
	buf   []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// run makes RawConn call s.fn on p (RawConn.Write's when write, else its
// Read's) and returns how many bytes it moved, the system call's error
// and RawConn's (the connection was closed, a deadline passed).
func (s *call) run(raw syscall.RawConn, write bool, p []byte) (n int, errno syscall.Errno, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf, s.n, s.errno = p, 0, 0
	if write {
		err = raw.Write(s.fn)
	} else {
		err = raw.Read(s.fn)
	}
	n, errno = s.n, s.errno
	s.buf = nil
	return n, errno, err
}

// NetConn returns the connection Wrap wrapped (as crypto/tls.Conn's
// does), for its own methods: SetNoDelay, SetWriteBuffer and the like.
func (c *conn) NetConn() net.Conn { return c.Conn }

// SyscallConn returns the wrapped connection's RawConn.
func (c *conn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// Read reads what the socket has, waiting (in the runtime's poller) until
// it has something; io.EOF at its end.
func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, errno, err := c.r.run(c.raw, false, p)
	switch {
	case err != nil:
		return 0, renamed(err, "read")
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readOnce is the Read's call, made by RawConn with the descriptor held:
// false asks RawConn to wait until the socket is readable and call again.
func (c *conn) readOnce(fd uintptr) bool {
	r := &c.r
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)))
		switch errno {
		case 0:
			r.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.errno = errno
		return true
	}
}

// Write writes all of p, waiting (in the runtime's poller) while the
// socket has no room; it returns how much it wrote before an error.
func (c *conn) Write(p []byte) (int, error) {
	n, errno, err := c.w.run(c.raw, true, p)
	switch {
	case err != nil:
		return n, renamed(err, "write")
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

// writeAll is the Write's call, made by RawConn with the descriptor held
// (so that no other write lands in the middle of p): false asks RawConn to
// wait until the socket is writable and call again.
func (c *conn) writeAll(fd uintptr) bool {
	w := &c.w
	n, err := WriteNow(fd, w.buf[w.n:])
	w.n += n
	if err == syscall.EAGAIN {
		return false
	}
	if err != nil {
		w.errno = err.(syscall.Errno)
	}
	return true
}

// opError is the error a net.Conn returns for a failed system call.
func (c *conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.network, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// renamed gives an error of RawConn's (the connection was closed, a
// deadline passed) the operation a net.Conn's Read or Write names.
func renamed(err error, op string) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		e := *oe
		e.Op = op
		return &e
	}
	return err
}

// Peek copies into b what the socket fd has to read, without taking it
// and without waiting: syscall.EAGAIN when it has nothing yet, n = 0 at its
// end. It is for a syscall.RawConn's Read callback.
func Peek(fd uintptr, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// WriteNow writes what of b the socket fd takes now, with as many
// write(2)s as it takes, and returns how much it wrote: with
// syscall.EAGAIN when the socket took no more before the end of b, with
// another syscall.Errno when a call failed. It is for a syscall.RawConn's
// Write callback, which holds the descriptor.
func WriteNow(fd uintptr, b []byte) (int, error) {
	written := 0
	for written < len(b) {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[written])), uintptr(len(b)-written))
		switch errno {
		case 0:
			written += int(n)
		case syscall.EINTR:
		default:
			return written, errno
		}
	}
	return written, nil
}
