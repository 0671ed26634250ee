//go:build !unix

package wsfast

import "net"

// write does nothing but for a test's recorder: without a socket API to
// write without waiting, every frame goes through Write.
func (w *TryWriter) write(nc net.Conn, b []byte) (n int, ok bool, err error) {
	if nb, ok := nc.(nonBlocking); ok {
		n, err := nb.TryWrite(b)
		return n, true, err
	}
	return 0, false, nil
}

// attemptOnce is not used without a socket API.
func (w *TryWriter) attemptOnce(uintptr) bool { return true }
