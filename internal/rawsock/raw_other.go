//go:build !unix

package rawsock

import "net"

// Enabled reports whether this platform has the raw path: whether Wrap
// wraps a socket connection.
const Enabled = false

// Wrap returns c as it is: the raw path is built for linux/amd64 and
// linux/arm64 only (see the package doc).
func Wrap(c net.Conn) net.Conn { return c }

// Wrapped reports whether c came from Wrap: never here.
func Wrapped(net.Conn) bool { return false }
