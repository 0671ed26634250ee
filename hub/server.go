package hub

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

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
	if h.cl != nil && !h.cl.nodes.Healthy() {
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
	c.netConn = hw.Conn()
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

// newConn makes a connection over tr from the remote address addr; delay
// is set for a batch WebSocket under Options.WriteDelay (see conn.delay).
// The caller sets what its transport needs.
func (h *Hub) newConn(tr transport, addr string, delay bool) *conn {
	chanSize := sendChanSize
	if delay {
		chanSize = delayedChanSize
	}
	c := &conn{
		id:          h.nextID.Add(1),
		hub:         h,
		tr:          tr,
		start:       time.Now(),
		addr:        addr,
		delay:       delay,
		send:        make(chan []byte, min(chanSize, h.opts.SendQueue)),
		closing:     make(chan struct{}),
		writersDone: make(chan struct{}),
		msgLimiter:  rate.NewLimiter(rate.Limit(h.opts.MessageRate), h.opts.MessageBurst),
		joinLimiter: rate.NewLimiter(rate.Limit(h.opts.JoinRate), h.opts.JoinBurst),
	}
	c.cursor = cursorGate{
		limiter: rate.NewLimiter(rate.Limit(h.opts.CursorRate), 1),
		forward: func(m protocol.Message, at time.Time) bool {
			return h.submit(inbound{c: c, msg: m, at: at})
		},
	}
	return c
}

// admitted gives c what admitRequest found: the slot of its address (ip)
// and its token's identity (nil in open mode).
func (c *conn) admitted(ip string, id *identity) {
	c.ip, c.identity = ip, id
	if id != nil {
		c.tokenUser = id.userID
	}
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

// connKey is the context key under which the reader's context holds its
// conn, for the library's OnPongReceived.
type connKey struct{}

// serve runs a connection: its reader here (its transport's read), its
// writer on a goroutine of its own while there is something to write
// (startWriter), its pings on a timer.
func (h *Hub) serve(c *conn) {
	// The reader's context is never done (the reader ends when the
	// connection does), so that the library registers no cancellation per
	// read; it names the connection for OnPongReceived.
	ctx := context.WithValue(context.Background(), connKey{}, c)
	c.pingMu.Lock()
	c.pingTimer = time.AfterFunc(h.opts.PingInterval, c.ping)
	c.pingMu.Unlock()
	handshake := time.AfterFunc(h.opts.HandshakeTimeout, func() {
		if !c.joined.Load() {
			c.kill(closeHandshake)
		}
	})
	defer handshake.Stop()
	if c.identity != nil {
		// Armed for every token connection: refresh-token may give a token
		// with an exp to a connection whose first token had none.
		d := time.Duration(math.MaxInt64) // stopped below: no exp
		if !c.identity.expires.IsZero() {
			d = time.Until(c.identity.expires)
		}
		c.expiry = time.AfterFunc(d, func() { c.kill(closeTokenExpired) })
		if c.identity.expires.IsZero() {
			c.expiry.Stop()
		}
		defer c.expiry.Stop()
	}

	end := c.tr.read(ctx, c)

	c.cursor.stop()
	c.stopPings()
	c.closeOnce.Do(func() { close(c.closing) }) // the writer stops if nobody asked
	c.startWriter()
	<-c.writersDone
	if c.closeTimer != nil {
		c.closeTimer.Stop()
	}
	c.drop() // the writer is done: nothing more goes out
	select {
	case h.departures <- departure{c: c, clean: end.clean}:
	case <-h.done:
	}
	h.metrics.closed(c.tr.name())
	h.log.Info("disconnect", append([]any{"conn", c.id, "transport", c.tr.name(), "remote", c.addr},
		append(c.logAttrs(), "code", int(end.code), "reason", end.why, "clean", end.clean,
			"duration", time.Since(c.start).Round(time.Millisecond))...)...)
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
	if h.cl != nil {
		// The broker stops before run: its last results may still need it.
		h.relay.Close()
		h.cl.close(ctx)
	}
	close(h.quit)
	<-h.done
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
