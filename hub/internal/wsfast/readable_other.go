//go:build !unix || aix

package wsfast

import "net"

// readableWaiter returns nil: without a socket to peek at, a connection's
// reader waits in the library's read (see the unix version).
func readableWaiter(net.Conn) func() { return nil }
