package hub

// The HTTP side of the v1.1 hardening: the per-address count of every TCP
// connection (Listener), IPv6 peers counted per /64 (ipKey), the Host check
// (Options.AllowedHosts) and the rate-limited log of refusals. Listener's
// Accept runs on the http.Server's accept goroutine; the rest on request
// goroutines.

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ipKey is the per-address key of remote address ip (no port): the address
// itself for IPv4, its /64 for IPv6 (one host commonly holds a whole /64).
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if a.Is4() {
		// ParseAddr takes an IPv4 address in its one form: ip is that
		// form, and a connection's key costs no string of its own.
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// Listener wraps ln so that every TCP connection it accepts counts toward
// Options.MaxConnectionsPerIP while it is open, plain HTTP (keep-alive
// connections between requests included) as well as WebSocket and SSE; IPv6
// peers count per /64. A connection past the limit is answered 429 once
// its request's head came, and closed. Without a per-address limit it returns
// ln unchanged. Serve the hub's Handler on it (hubd does). A refused
// connection is answered on a goroutine of its own that lives at most
// about a second.
func (h *Hub) Listener(ln net.Listener) net.Listener {
	if h.opts.MaxConnectionsPerIP <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, h: h}
}

// limitListener is Hub.Listener's listener.
type limitListener struct {
	net.Listener
	h *Hub
}

// tooManyFromAddress is the whole answer to a connection past the
// per-address limit.
var tooManyFromAddress = []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nContent-Length: 39\r\n\r\ntoo many connections from this address\n")

// Accept returns the next connection within the per-address limit.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := ipKey(remoteIP(c.RemoteAddr().String()))
		if l.h.holdTCP(key) {
			return &countedConn{Conn: c, release: func() { l.h.releaseTCP(key) }}, nil
		}
		l.h.metrics.upgrade(upgradeLimit)
		l.h.logRefusal(c.RemoteAddr().String(), http.StatusTooManyRequests, "too many connections from this address")
		go refuseTCP(c)
	}
}

// refuseTCP answers a connection past the per-address limit with 429 once
// its request's head came (within a second; at most 8 KiB of it is read),
// so that the client reads an answer to its request, then closes it. It
// runs on a goroutine of its own, which lives at most about a second.
func refuseTCP(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	var buf [8 << 10]byte
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil || bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			break
		}
	}
	c.Write(tooManyFromAddress)
}

// holdTCP counts a TCP connection from key, or reports false at the limit.
func (h *Hub) holdTCP(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tcpPerIP[key] >= h.opts.MaxConnectionsPerIP {
		return false
	}
	h.tcpPerIP[key]++
	return true
}

// releaseTCP gives back what holdTCP took.
func (h *Hub) releaseTCP(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tcpPerIP[key]--; h.tcpPerIP[key] <= 0 {
		delete(h.tcpPerIP, key)
	}
}

// countedConn is a connection limitListener counts until its first Close.
// It keeps the socket reachable (SyscallConn) for the shallow reader.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// SyscallConn is the wrapped connection's, for the shallow reader
// (wsfast.Reader).
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, fmt.Errorf("hub: %T has no socket", c.Conn)
}

// hostAllowed reports whether r's Host header is one of
// Options.AllowedHosts (any when it is empty): patterns in path.Match
// syntax, matched case-insensitively against the host with its port and
// without it.
func (h *Hub) hostAllowed(r *http.Request) bool {
	if len(h.opts.AllowedHosts) == 0 {
		return true
	}
	host := strings.ToLower(r.Host)
	bare := host
	if hp, _, err := net.SplitHostPort(host); err == nil {
		bare = hp
	}
	bare = strings.TrimSuffix(strings.TrimPrefix(bare, "["), "]")
	for _, p := range h.opts.AllowedHosts {
		p = strings.ToLower(p)
		if m, _ := path.Match(p, host); m {
			return true
		}
		if m, _ := path.Match(p, bare); m {
			return true
		}
	}
	return false
}

// checkHost refuses, with 403, a request whose Host is not allowed
// (protection against DNS rebinding), except the health checks, which
// orchestrators send to an address.
func (h *Hub) checkHost(next http.Handler) http.Handler {
	if len(h.opts.AllowedHosts) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.hostAllowed(r) && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			h.logRefusal(r.RemoteAddr, http.StatusForbidden, "host not allowed")
			http.Error(w, "host not allowed", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// logRefusal logs a refused upgrade or request (a limit, a token, an
// origin, a host) at most once a second, with how many were refused since
// the last line: a flood must not flood the log. The metrics count them
// all.
func (h *Hub) logRefusal(remote string, status int, why string, attrs ...any) {
	h.refusedSince.Add(1)
	now := time.Now().UnixNano()
	last := h.lastRefusalLog.Load()
	if now-last < int64(time.Second) || !h.lastRefusalLog.CompareAndSwap(last, now) {
		return
	}
	n := h.refusedSince.Swap(0)
	h.log.Warn("upgrade refused", append([]any{"remote", remote, "status", status, "reason", why, "count", n}, attrs...)...)
}
