//go:build !unix || aix

package hub

import "net"

// readableWaiter returns nil: without a socket to peek at, a connection's
// reader waits in its read (see the unix version).
func readableWaiter(net.Conn) func() { return nil }
