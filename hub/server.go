package hub

// The HTTP side of the hub: Handler's routes, the start of every
// connection, and the hub's methods for its owner (Shutdown, SetKeys,
// NodeID). ServeWS runs on net/http's goroutine for the request until the
// upgrade, then serves the connection on a goroutine of its own (serve,
// conn.go); admit, release, track and untrack run on any goroutine, under
// h.mu; Shutdown and SetKeys on their caller's.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/hub/internal/wsfast"
	"github.com/sessionhub/sessionhub/hub/web"
	"github.com/sessionhub/sessionhub/protocol"
)

// ErrShuttingDown is returned by Shutdown when it is called twice.
var ErrShuttingDown = errors.New("hub: already shutting down")

// Handler returns the hub's HTTP routes: GET /ws (the WebSocket), GET /sse
// and POST /sse/send (the fallback transport, sse.go), /healthz,
// /readyz, /metrics, the browser files (/ the demo page, /hub.js and
// /hub.d.ts) and, with Options.APIKey, the server API (/api/...). With
// Options.AllowedHosts, a request for another Host gets 403 (the health
// checks excepted).
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", h.ServeWS)
	mux.HandleFunc("GET /sse", h.ServeSSE)
	mux.HandleFunc("POST "+ssePath, h.ServeSSESend)
	mux.HandleFunc("OPTIONS "+ssePath, h.sendPreflight)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if why := h.notReady(); why != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(why + "\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", h.metrics.handler())
	h.apiRoutes(mux)
	// The browser files, with ETags and revalidation; pages of the
	// allowed origins may import /hub.js.
	static := web.Handler(h.opts.AllowedOrigins)
	for _, path := range []string{"GET /{$}", "GET /hub.js", "GET /hub.d.ts"} {
		mux.Handle(path, static)
	}
	return h.checkHost(mux)
}

// notReady says why /readyz answers 503, and sessionhub_ready is 0: the hub
// is shutting down, or (in a cluster) does not reach Redis. It is "" while
// the hub is ready.
func (h *Hub) notReady() string {
	if !h.ready.Load() {
		return "shutting down"
	}
	if h.broker != nil && !h.broker.nodes.Healthy() {
		return "redis unreachable"
	}
	return ""
}

// ServeWS upgrades the request to a WebSocket and serves it until it ends.
// Before the upgrade it refuses, with no goroutine spent: a hub that is
// shutting down or at Options.MaxConnections (503), an address at
// Options.MaxConnectionsPerIP (429), a missing or invalid token in token
// mode (401, with a one-line reason), and a refused Origin (403).
func (h *Hub) ServeWS(w http.ResponseWriter, r *http.Request) {
	ip, id, ok := h.admitRequest(w, r, "websocket")
	if !ok {
		return
	}
	hw := &wsfast.Hijacker{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &h.accept)
	if err != nil {
		h.release(ip)
		h.logRefusal(r.RemoteAddr, hw.Status(), err.Error(), "origin", r.Header.Get("Origin"))
		if hw.Status() == http.StatusForbidden {
			h.metrics.upgrade(upgradeOrigin)
		} else {
			h.metrics.upgrade(upgradeBadRequest)
		}
		return
	}
	ws.SetReadLimit(h.opts.MaxMessageBytes)
	batch := ws.Subprotocol() == protocol.BatchSubprotocol
	c := h.newConn(wsTransport{}, r.RemoteAddr, batch && h.opts.WriteDelay > 0)
	c.ws, c.batch = ws, batch
	c.admitted(ip, id)
	c.out = hw.Out()
	if c.wire.Init(hw); c.wire.Shallow() {
		c.burstEnd = make(chan readEnd, 1)
	}
	if !h.track(c) {
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		h.release(ip)
		return
	}
	h.accepted(c, "batch", c.batch)
	// Serve on a goroutine of its own, with a small stack, and return, so
	// that net/http lets go of the request and of this goroutine's deeper
	// stack.
	go func() {
		defer h.untrack(c)
		h.serve(c)
	}()
}

// remoteIP is addr without its port.
func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// admitRequest is the start of every connection, a WebSocket's or a
// stream's: it reserves a connection slot for the request's address (503
// while shutting down or at Options.MaxConnections, 429 at
// Options.MaxConnectionsPerIP) and, in token mode, verifies its token
// (401), answering, logging (with the transport's name) and counting a
// refusal itself. On ok the caller owns the slot of ip (release or untrack
// gives it back).
func (h *Hub) admitRequest(w http.ResponseWriter, r *http.Request, transport string) (ip string, id *identity, ok bool) {
	ip = ipKey(remoteIP(r.RemoteAddr))
	if status, why := h.admit(ip); status != 0 {
		if why == whyShuttingDown {
			h.metrics.upgrade(upgradeShutdown)
		} else {
			h.metrics.upgrade(upgradeLimit)
		}
		h.logRefusal(r.RemoteAddr, status, why, "transport", transport)
		http.Error(w, why, status)
		return "", nil, false
	}
	if h.tokens != nil {
		var err error
		if id, err = authenticate(r, h.tokens, time.Now()); err != nil {
			h.release(ip)
			h.metrics.upgrade(upgradeUnauthorized)
			h.logRefusal(r.RemoteAddr, http.StatusUnauthorized, err.Error(), "transport", transport)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return "", nil, false
		}
	}
	return ip, id, true
}

// accepted counts c as an accepted connection of its transport and logs
// it ("connect", with its transport's own attrs); c is tracked, and served
// next.
func (h *Hub) accepted(c *conn, attrs ...any) {
	h.metrics.upgrade(upgradeAccepted)
	head := append([]any{"conn", c.id, "transport", c.tr.name(), "remote", c.addr}, attrs...)
	h.log.Info("connect", append(head, c.logAttrs()...)...)
	h.metrics.opened(c.tr.name())
}

// whyShuttingDown is admit's reason while the hub shuts down.
const whyShuttingDown = "shutting down"

// admit reserves a connection slot for ip, or says why not: 503 while
// shutting down or at MaxConnections, 429 at MaxConnectionsPerIP. A
// reserved slot is given back by release (or untrack).
func (h *Hub) admit(ip string) (status int, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.shuttingDown:
		return http.StatusServiceUnavailable, whyShuttingDown
	case h.opts.MaxConnections > 0 && h.open >= h.opts.MaxConnections:
		return http.StatusServiceUnavailable, "too many connections"
	case h.opts.MaxConnectionsPerIP > 0 && h.perIP[ip] >= h.opts.MaxConnectionsPerIP:
		return http.StatusTooManyRequests, "too many connections from this address"
	}
	h.open++
	h.perIP[ip]++
	h.serving.Add(1)
	return 0, ""
}

// release gives back the slot admit reserved for ip.
func (h *Hub) release(ip string) {
	h.mu.Lock()
	h.open--
	if h.perIP[ip]--; h.perIP[ip] <= 0 {
		delete(h.perIP, ip)
	}
	h.mu.Unlock()
	h.serving.Done()
}

// track registers an admitted c for Shutdown; it reports false if the hub
// is shutting down.
func (h *Hub) track(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shuttingDown {
		return false
	}
	h.conns[c] = struct{}{}
	if s, ok := c.tr.(*sseTransport); ok {
		h.streams[s.id] = c
	}
	return true
}

func (h *Hub) untrack(c *conn) {
	h.mu.Lock()
	delete(h.conns, c)
	if s, ok := c.tr.(*sseTransport); ok {
		delete(h.streams, s.id)
	}
	h.mu.Unlock()
	h.release(c.ip)
}

// Shutdown stops the hub: /readyz answers 503, new WebSockets are refused,
// every connection is closed with 1001 (net/http's Server.Shutdown does not
// close hijacked connections, so the hub does), and the run loop stops once
// they have all ended. If ctx ends first, the remaining connections are
// dropped without a close handshake and ctx's error is returned. A cluster
// node then hands its users to the leave grace in Redis and says goodbye to
// the other nodes (unless ctx ended), so that their grace starts at once.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if h.shuttingDown {
		h.mu.Unlock()
		return ErrShuttingDown
	}
	h.shuttingDown = true
	h.ready.Store(false)
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()

	for _, c := range conns {
		c.kill(closeShutdown)
	}
	ended := make(chan struct{})
	go func() {
		h.serving.Wait()
		close(ended)
	}()
	var err error
	select {
	case <-ended:
	case <-ctx.Done():
		err = ctx.Err()
		for _, c := range conns {
			c.drop()
		}
		<-ended
	}
	if h.broker != nil {
		// The broker stops before run: its last results may still need it.
		h.relay.Close()
		h.broker.close(ctx)
	}
	close(h.quit)
	<-h.done
	if h.flusher != nil {
		<-h.flusher.done
	}
	return err
}

// ErrOpenMode is returned by SetKeys and SetJWTSecret on a hub started in
// open mode: the mode is fixed when the hub starts.
var ErrOpenMode = errors.New("hub: open mode (no JWT key at start)")

// SetKeys replaces the static keys of token mode (a rotation, as hubd's
// SIGHUP does): upgrades and refresh-token from now on are verified with
// k (and the JWKS, if the hub has one); open connections keep the identity
// they have. It returns ErrOpenMode on a hub started in open mode, and an
// error for keys the hub would not take or for no key at all on a hub
// without a JWKS; the keys in force then stay.
func (h *Hub) SetKeys(k Keys) error {
	if h.tokens == nil {
		return ErrOpenMode
	}
	c := k.clone()
	if err := c.check(); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if c.empty() && h.tokens.jwks == nil {
		return errors.New("hub: no JWT key")
	}
	h.tokens.keys.Store(c)
	return nil
}

// SetJWTSecret replaces the HS256 secrets of token mode with secret alone,
// keeping the public keys; see SetKeys.
func (h *Hub) SetJWTSecret(secret []byte) error {
	if h.tokens == nil {
		return ErrOpenMode
	}
	if len(secret) == 0 {
		return errors.New("hub: empty JWT secret")
	}
	k := h.tokens.keys.Load()
	return h.SetKeys(Keys{Secrets: [][]byte{secret}, PublicKeys: k.PublicKeys})
}

// NodeID is the hub's name in its cluster, empty on a single node.
func (h *Hub) NodeID() string { return h.opts.NodeID }
