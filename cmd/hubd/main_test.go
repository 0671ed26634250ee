package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a getenv over a fixed environment.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// The defaults are the contract's table ("Server configuration").
func TestParseDefaults(t *testing.T) {
	c, err := parse(nil, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		addr:            ":8080",
		nodeHeartbeat:   5 * time.Second,
		shutdownTimeout: 10 * time.Second,
		logLevel:        "info",
		logFormat:       "text",
		hub: hub.Options{
			MaxMessageBytes:  16384,
			CursorRate:       20,
			MessageRate:      50,
			MessageBurst:     100,
			SendQueue:        256,
			PingInterval:     25 * time.Second,
			PingTimeout:      20 * time.Second,
			IdleAfter:        5 * time.Minute,
			LeaveGrace:       5 * time.Second,
			SessionTTL:       30 * time.Minute,
			HistorySize:      1000,
			HistoryTTL:       10 * time.Minute,
			MaxParticipants:  1000,
			HandshakeTimeout: 30 * time.Second,
		},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *c, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   []string
		check func(*config) bool
	}{
		{"env sets send queue", nil, []string{"HUB_SEND_QUEUE", "7"},
			func(c *config) bool { return c.hub.SendQueue == 7 }},
		{"flag wins over env", []string{"--send-queue", "9"}, []string{"HUB_SEND_QUEUE", "7"},
			func(c *config) bool { return c.hub.SendQueue == 9 }},
		{"flag wins over env (duration)", []string{"--leave-grace=2s"}, []string{"HUB_LEAVE_GRACE", "9s"},
			func(c *config) bool { return c.hub.LeaveGrace == 2*time.Second }},
		{"env of a float", nil, []string{"HUB_CURSOR_RATE", "12.5"},
			func(c *config) bool { return c.hub.CursorRate == 12.5 }},
		{"env of a duration", nil, []string{"HUB_IDLE_AFTER", "90s"},
			func(c *config) bool { return c.hub.IdleAfter == 90*time.Second }},
		{"env of a dashed flag", nil, []string{"HUB_MAX_MESSAGE_BYTES", "1024"},
			func(c *config) bool { return c.hub.MaxMessageBytes == 1024 }},
		{"PORT", nil, []string{"PORT", "9999"},
			func(c *config) bool { return c.addr == ":9999" }},
		{"HUB_ADDR wins over PORT", nil, []string{"PORT", "9999", "HUB_ADDR", "127.0.0.1:7000"},
			func(c *config) bool { return c.addr == "127.0.0.1:7000" }},
		{"--addr wins over PORT", []string{"--addr", ":7001"}, []string{"PORT", "9999"},
			func(c *config) bool { return c.addr == ":7001" }},
		{"--addr wins over PORT and HUB_ADDR", []string{"--addr", ":7001"}, []string{"PORT", "9999", "HUB_ADDR", ":7000"},
			func(c *config) bool { return c.addr == ":7001" }},
		{"allowed origins split and trimmed", []string{"--allowed-origins", "a.com, *.b.org"}, nil,
			func(c *config) bool { return reflect.DeepEqual(c.hub.AllowedOrigins, []string{"a.com", "*.b.org"}) }},
		{"allowed origins from env", nil, []string{"HUB_ALLOWED_ORIGINS", "localhost:3000,,x.io "},
			func(c *config) bool {
				return reflect.DeepEqual(c.hub.AllowedOrigins, []string{"localhost:3000", "x.io"})
			}},
		{"no allowed origins", nil, nil,
			func(c *config) bool { return c.hub.AllowedOrigins == nil }},
		{"leave grace 0 means none", []string{"--leave-grace", "0"}, nil,
			func(c *config) bool { return c.hub.LeaveGrace < 0 }},
		{"log format json", []string{"--log-format", "json", "--log-level", "debug"}, nil,
			func(c *config) bool { return c.logFormat == "json" && c.logLevel == "debug" }},
		{"shutdown timeout", nil, []string{"HUB_SHUTDOWN_TIMEOUT", "3s"},
			func(c *config) bool { return c.shutdownTimeout == 3*time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(tt.args, env(tt.env...), io.Discard)
			if err != nil {
				t.Fatalf("parse(%q, %q): %v", tt.args, tt.env, err)
			}
			if !tt.check(c) {
				t.Errorf("parse(%q, %q) = %+v", tt.args, tt.env, *c)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
	}{
		{"env not a number", nil, []string{"HUB_CURSOR_RATE", "abc"}},
		{"env not an int", nil, []string{"HUB_SEND_QUEUE", "7.5"}},
		{"env not a duration", nil, []string{"HUB_PING_INTERVAL", "soon"}},
		{"flag not a number", []string{"--message-rate", "x"}, nil},
		{"log format xml", []string{"--log-format", "xml"}, nil},
		{"log format xml from env", nil, []string{"HUB_LOG_FORMAT", "xml"}},
		{"negative ping interval", []string{"--ping-interval", "-1s"}, nil},
		{"negative ping timeout", nil, []string{"HUB_PING_TIMEOUT", "-5s"}},
		{"negative idle", []string{"--idle-after", "-1m"}, nil},
		{"negative leave grace", []string{"--leave-grace", "-1s"}, nil},
		{"negative session ttl", []string{"--session-ttl", "-1m"}, nil},
		{"negative history ttl", []string{"--history-ttl", "-1m"}, nil},
		{"negative shutdown timeout", []string{"--shutdown-timeout", "-1s"}, nil},
		{"zero cursor rate", []string{"--cursor-rate", "0"}, nil},
		{"negative cursor rate", []string{"--cursor-rate", "-3"}, nil},
		{"zero send queue", []string{"--send-queue", "0"}, nil},
		{"zero burst", []string{"--message-burst", "0"}, nil},
		{"tiny max message", []string{"--max-message-bytes", "10"}, nil},
		{"bad origin pattern", []string{"--allowed-origins", "[a"}, nil},
		{"unknown flag", []string{"--nope"}, nil},
		{"stray argument", []string{"serve"}, nil},
		{"jwt secret too short", []string{"--jwt-secret", "s3cret"}, nil},
		{"jwt secret twice", []string{"--jwt-secret", "0123456789abcdef", "--jwt-secret-file", "/nonexistent"}, nil},
		{"jwt secret file missing", []string{"--jwt-secret-file", "/nonexistent/secret"}, nil},
		{"negative max connections", []string{"--max-connections", "-1"}, nil},
		{"zero handshake timeout", []string{"--handshake-timeout", "0s"}, nil},
		{"redis refused", []string{"--redis-url", "redis://localhost:6379"}, nil},
		{"jwt secret from env too short", nil, []string{"HUB_JWT_SECRET", "s3cret"}},
		{"redis from env refused", nil, []string{"HUB_REDIS_URL", "redis://localhost:6379"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parse(tt.args, env(tt.env...), io.Discard); err == nil {
				t.Errorf("parse(%q, %q): no error", tt.args, tt.env)
			}
		})
	}
}

// run serves /healthz and WebSockets, and on cancel closes every WebSocket
// with 1001 and returns nil within the shutdown timeout.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	ran := make(chan error, 1)
	go func() {
		ran <- run(ctx, []string{"--addr", "127.0.0.1:0", "--shutdown-timeout", "5s"}, env(), io.Discard, ready)
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-ran:
		t.Fatalf("run returned before it was ready: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("run not ready")
	}
	base := "http://" + addr.String()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	ws, _, err := websocket.Dial(dctx, "ws://"+addr.String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	b, _ := protocol.Encode(protocol.TypeJoinSession, "j", protocol.JoinSession{SessionID: "s",
		UserInfo: protocol.UserInfo{UserID: "u", Name: "U"}})
	if err := ws.Write(dctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	_, b, err = ws.Read(dctx)
	if err != nil {
		t.Fatal(err)
	}
	var env protocol.Envelope
	if json.Unmarshal(b, &env) != nil || env.Type != protocol.TypeSessionJoined {
		t.Fatalf("got %s, want session-joined", b)
	}

	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				closed <- err
				return
			}
		}
	}()
	stopped := time.Now()
	cancel()
	select {
	case err := <-closed:
		if s := websocket.CloseStatus(err); s != websocket.StatusGoingAway {
			t.Errorf("client's connection ended with %v (%v), want 1001", s, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client not closed")
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("run: %v", err)
		}
		if d := time.Since(stopped); d > 5*time.Second {
			t.Errorf("run took %v to stop, over the shutdown timeout", d)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("run did not return within the shutdown timeout")
	}
	// The listener is closed.
	if _, err := client.Get(base + "/healthz"); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("GET after run returned: %v, want connection refused", err)
	}
}

// A listen error is returned, and --help is not an error.
func TestRunErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = run(context.Background(), []string{"--addr", ln.Addr().String()}, env(), io.Discard, nil)
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("run on a taken address: %v, want a listen error", err)
	}
	if err := run(context.Background(), []string{"--help"}, env(), io.Discard, nil); err != nil {
		t.Errorf("run --help: %v", err)
	}
	if err := run(context.Background(), []string{"--log-format", "xml"}, env(), io.Discard, nil); err == nil {
		t.Error("run --log-format xml: no error")
	}
	if err := run(context.Background(), []string{"--log-level", "loud", "--addr", "127.0.0.1:0"}, env(), io.Discard, nil); err == nil {
		t.Error("run --log-level loud: no error")
	}
}
