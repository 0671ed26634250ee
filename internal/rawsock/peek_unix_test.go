//go:build unix

package rawsock_test

import (
	"io"
	"syscall"
	"testing"

	"github.com/sessionhub/sessionhub/internal/rawsock"
)

// Peek sees the bytes without taking them, and EAGAIN when there are
// none; WriteNow writes what the socket takes.
func TestPeekAndWriteNow(t *testing.T) {
	w, peer := pair(t)
	rc, err := w.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	peek := func() (n int, err error) {
		buf := make([]byte, 4)
		rc.Read(func(fd uintptr) bool {
			n, err = rawsock.Peek(fd, buf)
			return true
		})
		return n, err
	}
	if _, err := peek(); err != syscall.EAGAIN {
		t.Fatalf("Peek with nothing to read: %v, want EAGAIN", err)
	}
	peer.Write([]byte("hi"))
	rc.Read(func(fd uintptr) bool { // wait until it arrives
		_, err := rawsock.Peek(fd, make([]byte, 1))
		return err != syscall.EAGAIN
	})
	if n, err := peek(); n != 2 || err != nil {
		t.Fatalf("Peek = %d, %v; want 2 bytes", n, err)
	}
	b := make([]byte, 4)
	if n, err := w.Read(b); string(b[:n]) != "hi" || err != nil {
		t.Fatalf("Read after Peek = %q, %v; want the peeked bytes", b[:n], err)
	}

	var wrote int
	rc.Write(func(fd uintptr) bool {
		wrote, err = rawsock.WriteNow(fd, []byte("now"))
		return true
	})
	got := make([]byte, 3)
	if _, rerr := io.ReadFull(peer, got); wrote != 3 || err != nil || rerr != nil || string(got) != "now" {
		t.Fatalf("WriteNow = %d, %v; the peer read %q, %v", wrote, err, got, rerr)
	}
}
