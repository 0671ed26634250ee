//go:build unix

package hub_test

import "syscall"

// setRcvBuf shrinks a socket's receive buffer so that a peer that does not
// read fills it fast.
func setRcvBuf(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	if err != nil {
		return err
	}
	return serr
}
