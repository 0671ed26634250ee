package hub

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/sessionhub/sessionhub/protocol"
)

// ErrShuttingDown is returned by Shutdown when it is called twice.
var ErrShuttingDown = errors.New("hub: already shutting down")

// Handler returns the hub's HTTP routes: GET /ws (the WebSocket), /healthz,
// /readyz and /metrics.
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", h.ServeWS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !h.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("shutting down\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", h.metrics.handler())
	return mux
}

// ServeWS upgrades the request to a WebSocket and serves it until it ends.
// A refused Origin gets 403; a hub that is shutting down answers 503.
func (h *Hub) ServeWS(w http.ResponseWriter, r *http.Request) {
	if !h.ready.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	hw := &hijackRecorder{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &h.accept)
	if err != nil {
		h.log.Info("upgrade refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "err", err)
		h.metrics.refused.Inc()
		return
	}
	ws.SetReadLimit(h.opts.MaxMessageBytes)
	c := h.newConn(ws, r.RemoteAddr)
	c.netConn = hw.conn
	if !h.track(c) {
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	// Serve on a goroutine of its own and return, so that net/http lets go
	// of the request and of this goroutine's deeper stack.
	go func() {
		defer h.untrack(c)
		h.serve(c)
	}()
}

func (h *Hub) newConn(ws *websocket.Conn, addr string) *conn {
	c := &conn{
		id:         h.nextID.Add(1),
		hub:        h,
		ws:         ws,
		batch:      ws.Subprotocol() == protocol.BatchSubprotocol,
		start:      time.Now(),
		addr:       addr,
		send:       make(chan []byte, min(sendChanSize, h.opts.SendQueue)),
		closing:    make(chan struct{}),
		msgLimiter: rate.NewLimiter(rate.Limit(h.opts.MessageRate), h.opts.MessageBurst),
	}
	c.cursor = cursorGate{
		limiter: rate.NewLimiter(rate.Limit(h.opts.CursorRate), 1),
		forward: func(m protocol.Message, at time.Time) bool {
			return h.submit(inbound{c: c, msg: m, at: at})
		},
	}
	return c
}

// serve runs a connection: its writer on a new goroutine, its reader here.
func (h *Hub) serve(c *conn) {
	h.log.Info("connect", "conn", c.id, "remote", c.addr, "batch", c.batch)
	h.metrics.connections.Inc()
	ctx, cancel := context.WithCancel(context.Background())
	wrote := make(chan struct{})
	go c.writePump(ctx, wrote)

	clean, why := c.readPump(ctx)

	c.cursor.stop()
	c.closeOnce.Do(func() { close(c.closing) }) // the writer stops if nobody asked
	<-wrote
	cancel()
	if c.closeTimer != nil {
		c.closeTimer.Stop()
	}
	c.ws.CloseNow()
	select {
	case h.departures <- departure{c: c, clean: clean}:
	case <-h.done:
	}
	h.metrics.connections.Dec()
	h.log.Info("disconnect", "conn", c.id, "remote", c.addr, "reason", why, "clean", clean,
		"duration", time.Since(c.start).Round(time.Millisecond))
}

// track registers c for Shutdown; it reports false if the hub is shutting
// down.
func (h *Hub) track(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shuttingDown {
		return false
	}
	h.conns[c] = struct{}{}
	h.serving.Add(1)
	return true
}

func (h *Hub) untrack(c *conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.serving.Done()
}

// Shutdown stops the hub: /readyz answers 503, new WebSockets are refused,
// every connection is closed with 1001 (net/http's Server.Shutdown does not
// close hijacked connections, so the hub does), and the run loop stops once
// they have all ended. If ctx ends first, the remaining connections are
// dropped without a close handshake and ctx's error is returned.
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
		c.kill(protocol.CloseGoingAway, "server shutting down")
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
	close(h.quit)
	<-h.done
	return err
}

// hijackRecorder keeps the net.Conn that websocket.Accept hijacks, so that
// the hub can drop it even while a close handshake is in flight (the
// library's CloseNow then only waits for that handshake to time out).
type hijackRecorder struct {
	http.ResponseWriter
	conn net.Conn
}

func (w *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	w.conn = c
	return c, rw, err
}
