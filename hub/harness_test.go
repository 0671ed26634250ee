package hub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// wait is the deadline of every wait for an event.
const wait = 5 * time.Second

// server is a hub behind a real HTTP server.
type server struct {
	*hub.Hub
	ts  *httptest.Server
	url string // ws://.../ws
}

// startServer runs a hub with opts behind httptest and stops both at the
// end of the test.
func startServer(t testing.TB, opts *hub.Options) *server {
	t.Helper()
	return startServerWith(t, opts, nil)
}

// startServerWith is startServer with setup (if not nil) run on the
// httptest server before it starts: to wrap its listener or set its
// http.Server's limits.
func startServerWith(t testing.TB, opts *hub.Options, setup func(*httptest.Server)) *server {
	t.Helper()
	if opts == nil {
		opts = &hub.Options{}
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	h := hub.New(opts)
	ts := httptest.NewUnstartedServer(h.Handler())
	if setup != nil {
		setup(ts)
	}
	ts.Start()
	s := &server{Hub: h, ts: ts, url: "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil && err != hub.ErrShuttingDown {
			t.Errorf("shutdown: %v", err)
		}
		ts.Close()
	})
	return s
}

// peer is a raw WebSocket client that reads every frame into a channel.
type peer struct {
	t    testing.TB
	ws   *websocket.Conn
	msgs chan protocol.Envelope
	end  chan error // the read error that ended the connection
}

// dial opens a peer to s; it is closed at the end of the test.
func dial(t testing.TB, s *server, opts *websocket.DialOptions) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, s.url, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(1 << 20)
	p := &peer{t: t, ws: ws, msgs: make(chan protocol.Envelope, 100000), end: make(chan error, 1)}
	go p.readLoop()
	t.Cleanup(func() { ws.CloseNow() })
	return p
}

func (p *peer) readLoop() {
	for {
		typ, b, err := p.ws.Read(context.Background())
		if err != nil {
			p.end <- err
			close(p.msgs)
			return
		}
		if typ != websocket.MessageText {
			p.end <- err
			close(p.msgs)
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			var env protocol.Envelope
			if err := json.Unmarshal([]byte(line), &env); err != nil {
				p.t.Errorf("server sent invalid JSON %q: %v", line, err)
				continue
			}
			p.msgs <- env
		}
	}
}

// send writes one message.
func (p *peer) send(typ string, data any, ref string) {
	p.t.Helper()
	b, err := protocol.Encode(typ, ref, data)
	if err != nil {
		p.t.Fatal(err)
	}
	p.sendRaw(b)
}

func (p *peer) sendRaw(b []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageText, b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// next returns the next message, failing the test after the deadline.
func (p *peer) next() protocol.Envelope {
	p.t.Helper()
	select {
	case m, ok := <-p.msgs:
		if !ok {
			p.t.Fatalf("connection ended while waiting for a message: %v", <-p.end)
		}
		return m
	case <-time.After(wait):
		p.t.Fatal("no message within the deadline")
	}
	return protocol.Envelope{}
}

// expect returns the next message of type typ, decoded into data (if not
// nil), failing on any message of another type before it.
func (p *peer) expect(typ string, data any) protocol.Envelope {
	p.t.Helper()
	m := p.next()
	if m.Type != typ {
		p.t.Fatalf("got %s %s, want %s", m.Type, m.Data, typ)
	}
	if data != nil {
		if err := json.Unmarshal(m.Data, data); err != nil {
			p.t.Fatalf("decode %s: %v", typ, err)
		}
	}
	return m
}

// skipUntil returns the first message of type typ, dropping others.
func (p *peer) skipUntil(typ string, data any) protocol.Envelope {
	p.t.Helper()
	m := p.skipUntilAny(typ)
	if data != nil {
		if err := json.Unmarshal(m.Data, data); err != nil {
			p.t.Fatalf("decode %s: %v", typ, err)
		}
	}
	return m
}

// skipUntilAny returns the first message of one of types, dropping others.
func (p *peer) skipUntilAny(types ...string) protocol.Envelope {
	p.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				p.t.Fatalf("connection ended while waiting for %v: %v", types, <-p.end)
			}
			for _, typ := range types {
				if m.Type == typ {
					return m
				}
			}
		case <-deadline:
			p.t.Fatalf("none of %v within the deadline", types)
		}
	}
}

// closed waits for the connection to end and returns its close status (-1
// when it ended without a close frame).
func (p *peer) closed() websocket.StatusCode {
	p.t.Helper()
	deadline := time.After(wait + 10*time.Second)
	for {
		select {
		case _, ok := <-p.msgs:
			if !ok {
				return websocket.CloseStatus(<-p.end)
			}
		case <-deadline:
			p.t.Fatal("connection still open after the deadline")
		}
	}
}

// join sends join-session and returns the session-joined reply.
func (p *peer) join(sessionID, userID, name string, role protocol.Role) protocol.SessionJoined {
	p.t.Helper()
	p.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: sessionID,
		UserInfo: protocol.UserInfo{UserID: userID, Name: name, Role: role}}, "j")
	var sj protocol.SessionJoined
	p.expect(protocol.TypeSessionJoined, &sj)
	return sj
}

// ping does a ping round trip: every message the server queued for p
// before the pong has been read when it returns.
func (p *peer) sync() {
	p.t.Helper()
	p.send(protocol.TypePing, map[string]any{"sync": true}, "sync")
	p.skipUntil(protocol.TypePong, nil)
}

// get fetches an HTTP path of s.
func (s *server) get(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(s.ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String()
}
