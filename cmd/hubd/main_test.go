package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/internal/jwttest"
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
		shutdownTimeout: 10 * time.Second,
		logLevel:        "info",
		logFormat:       "text",
		gcPercent:       50,
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
			NodeHeartbeat:    5 * time.Second,
			// v1.1 hardening
			HistoryBytes:      8 << 20,
			HistoryTotalBytes: 256 << 20,
			JoinRate:          2,
			JoinBurst:         10,
			MaxSessions:       100_000,
		},
		httpIdleTimeout: 60 * time.Second,
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
		{"redis url and cluster flags", []string{"--redis-url", "redis://:pw@127.0.0.1:6390/2", "--node-heartbeat", "2s", "--node-id", "n1"}, nil,
			func(c *config) bool {
				return c.redisOpts.Addr == "127.0.0.1:6390" && c.redisOpts.Password == "pw" && c.redisOpts.DB == 2 &&
					c.hub.NodeHeartbeat == 2*time.Second && c.hub.NodeID == "n1"
			}},
		{"redis url from env", nil, []string{"HUB_REDIS_URL", "rediss://r.example:6380", "HUB_NODE_ID", "n2"},
			func(c *config) bool {
				return c.redisOpts.Addr == "r.example:6380" && c.redisOpts.TLSConfig != nil && c.hub.NodeID == "n2"
			}},
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
		{"write delay from env", nil, []string{"HUB_WRITE_DELAY", "20ms"},
			func(c *config) bool { return c.hub.WriteDelay == 20*time.Millisecond }},
		{"write delay off by default", nil, nil,
			func(c *config) bool { return c.hub.WriteDelay == 0 }},
		{"bus linger from env", nil, []string{"HUB_BUS_LINGER", "5ms"},
			func(c *config) bool { return c.hub.BusLinger == 5*time.Millisecond }},
		{"bus linger off by default", nil, nil,
			func(c *config) bool { return c.hub.BusLinger == 0 }},
		{"log format json", []string{"--log-format", "json", "--log-level", "debug"}, nil,
			func(c *config) bool { return c.logFormat == "json" && c.logLevel == "debug" }},
		{"shutdown timeout", nil, []string{"HUB_SHUTDOWN_TIMEOUT", "3s"},
			func(c *config) bool { return c.shutdownTimeout == 3*time.Second }},
		{"gc percent", []string{"--gc-percent", "80"}, nil,
			func(c *config) bool { return c.gcPercent == 80 && c.gcPercentSet }},
		{"gc percent off from env", nil, []string{"HUB_GC_PERCENT", "-1"},
			func(c *config) bool { return c.gcPercent == -1 && c.gcPercentSet }},
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

// The GC target: the flag or its env twin when given, else GOGC when set
// (nothing to set: the runtime read it), else hubd's default.
func TestGCTarget(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		env    []string
		want   int
		wantOK bool
	}{
		{"default", nil, nil, defaultGCPercent, true},
		{"GOGC wins over the default", nil, []string{"GOGC", "200"}, 0, false},
		{"flag wins over GOGC", []string{"--gc-percent", "30"}, []string{"GOGC", "200"}, 30, true},
		{"env twin wins over GOGC", nil, []string{"HUB_GC_PERCENT", "70", "GOGC", "off"}, 70, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := env(tt.env...)
			c, err := parse(tt.args, getenv, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := gcTarget(c, getenv); got != tt.want || ok != tt.wantOK {
				t.Errorf("gcTarget = %d, %t; want %d, %t", got, ok, tt.want, tt.wantOK)
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
		{"short API key", []string{"--api-key", "fifteen-bytes.."}, nil},
		{"short API key from env", nil, []string{"HUB_API_KEY", "short"}},
		{"zero history bytes", []string{"--history-bytes", "0"}, nil},
		{"zero join rate", []string{"--join-rate", "0"}, nil},
		{"zero max sessions", []string{"--max-sessions", "0"}, nil},
		{"zero idle timeout", []string{"--http-idle-timeout", "0s"}, nil},
		{"bad host pattern", []string{"--allowed-hosts", "[a"}, nil},
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
		{"negative write delay", []string{"--write-delay", "-1ms"}, nil},
		{"write delay over a second", nil, []string{"HUB_WRITE_DELAY", "2s"}},
		{"negative bus linger", []string{"--bus-linger", "-1ms"}, nil},
		{"bus linger over a second", nil, []string{"HUB_BUS_LINGER", "2s"}},
		{"bus linger not shorter than the write delay", []string{"--write-delay", "20ms", "--bus-linger", "20ms"}, nil},
		{"zero send queue", []string{"--send-queue", "0"}, nil},
		{"zero burst", []string{"--message-burst", "0"}, nil},
		{"tiny max message", []string{"--max-message-bytes", "10"}, nil},
		{"bad origin pattern", []string{"--allowed-origins", "[a"}, nil},
		{"gc percent 0", []string{"--gc-percent", "0"}, nil},
		{"gc percent below -1", nil, []string{"HUB_GC_PERCENT", "-5"}},
		{"unknown flag", []string{"--nope"}, nil},
		{"stray argument", []string{"serve"}, nil},
		{"jwt secret too short", []string{"--jwt-secret", "s3cret"}, nil},
		{"jwt secret twice", []string{"--jwt-secret", "0123456789abcdef", "--jwt-secret-file", "/nonexistent"}, nil},
		{"jwt secret file missing", []string{"--jwt-secret-file", "/nonexistent/secret"}, nil},
		{"negative max connections", []string{"--max-connections", "-1"}, nil},
		{"zero handshake timeout", []string{"--handshake-timeout", "0s"}, nil},
		{"redis url not a url", []string{"--redis-url", "localhost:6379"}, nil},
		{"redis url bad scheme", []string{"--redis-url", "http://localhost:6379"}, nil},
		{"zero node heartbeat", []string{"--node-heartbeat", "0s"}, nil},
		{"node id too long", []string{"--node-id", strings.Repeat("n", 129)}, nil},
		{"jwt secret from env too short", nil, []string{"HUB_JWT_SECRET", "s3cret"}},
		{"redis url from env bad db", nil, []string{"HUB_REDIS_URL", "redis://localhost:6379/x"}},
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
	// Within the shutdown timeout as hubd's own clock counts it: that is
	// TestShutdownDropsStuckClientAndExitsZero's, from its log; here a
	// generous bound only catches a run that never returns.
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("run: %v", err)
		}
		t.Logf("run stopped %v after the cancel", time.Since(stopped).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return")
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

// tokenSecret is a secret of the accepted length (16 bytes or more).
const tokenSecret = "hubd-test-secret-0123456789"

// mintClaims verifies a token with secret, HS256 only, and returns its
// claims.
func mintClaims(t *testing.T, tok, secret string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		t.Fatalf("the minted token does not verify: %v", err)
	}
	return claims
}

// hubd token mints an HS256 token with sub, name, role, sessions and
// exp = now + ttl, signed with the secret of --secret, --secret-file or
// HUB_JWT_SECRET.
func TestMintToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(tokenSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A rotation in progress: the new secret first signs, the old one
	// after it still verifies.
	rotating := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(rotating, []byte("# new, then old\nthe-newest-secret-0123456789\r\n"+tokenSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		env       []string
		wantSub   string
		wantName  any // nil: absent
		wantRole  string
		wantSess  []any // nil: absent
		wantTTL   time.Duration
		secretFor string
	}{
		{"all claims", []string{"--secret", tokenSecret, "--sub", "u1", "--name", "Ada L", "--role", "instructor",
			"--sessions", "s1, s2,,s3", "--ttl", "10m"}, nil, "u1", "Ada L", "instructor", []any{"s1", "s2", "s3"}, 10 * time.Minute, tokenSecret},
		{"defaults", []string{"--secret", tokenSecret, "--sub", "u2"}, nil, "u2", nil, "learner", nil, time.Hour, tokenSecret},
		{"secret from env", []string{"--sub", "u3"}, []string{"HUB_JWT_SECRET", "env-secret-0123456789"}, "u3", nil, "learner", nil, time.Hour, "env-secret-0123456789"},
		{"secret file, newline trimmed", []string{"--secret-file", file, "--sub", "u4", "--ttl", "90s"}, nil, "u4", nil, "learner", nil, 90 * time.Second, tokenSecret},
		{"first secret of a file of several", []string{"--secret-file", rotating, "--sub", "u7"}, nil, "u7", nil, "learner", nil, time.Hour, "the-newest-secret-0123456789"},
		{"HUB_JWT_SECRET_FILE", []string{"--sub", "u8"}, []string{"HUB_JWT_SECRET_FILE", rotating}, "u8", nil, "learner", nil, time.Hour, "the-newest-secret-0123456789"},
		{"only commas: no session", []string{"--secret", tokenSecret, "--sub", "u6", "--sessions", ","}, nil, "u6", nil, "learner", []any{}, time.Hour, tokenSecret},
		{"--secret wins over env", []string{"--secret", tokenSecret, "--sub", "u5"}, []string{"HUB_JWT_SECRET", "env-secret-0123456789"}, "u5", nil, "learner", nil, time.Hour, tokenSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			before := time.Now()
			if err := mintToken(tt.args, env(tt.env...), &out, &errOut); err != nil {
				t.Fatalf("mintToken(%q): %v (%s)", tt.args, err, errOut.String())
			}
			tok := strings.TrimSuffix(out.String(), "\n")
			if tok == "" || strings.ContainsAny(tok, " \n") {
				t.Fatalf("output %q is not one token on one line", out.String())
			}
			c := mintClaims(t, tok, tt.secretFor)
			if c["sub"] != tt.wantSub || c["name"] != tt.wantName || c["role"] != tt.wantRole {
				t.Errorf("claims %v, want sub %q name %v role %q", c, tt.wantSub, tt.wantName, tt.wantRole)
			}
			if got, _ := c["sessions"].([]any); !reflect.DeepEqual(got, tt.wantSess) || (tt.wantSess == nil) != (c["sessions"] == nil) {
				t.Errorf("sessions %v, want %v", c["sessions"], tt.wantSess)
			}
			exp, err := c.GetExpirationTime()
			if err != nil || exp == nil {
				t.Fatalf("exp: %v, %v", exp, err)
			}
			if want := before.Add(tt.wantTTL); exp.Time.Before(want.Add(-2*time.Second)) || exp.Time.After(want.Add(2*time.Second)) {
				t.Errorf("exp %v, want about %v", exp.Time, want)
			}
			// The hub in token mode takes it: the claims fit hub.Claims.
			var hc hub.Claims
			if _, err := jwt.ParseWithClaims(tok, &hc, func(*jwt.Token) (any, error) { return []byte(tt.secretFor), nil }); err != nil {
				t.Errorf("as hub.Claims: %v", err)
			}
			if hc.Subject != tt.wantSub || hc.Role != tt.wantRole {
				t.Errorf("hub.Claims %+v", hc)
			}
		})
	}
}

func TestMintTokenErrors(t *testing.T) {
	shortFile := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(shortFile, []byte(tokenSecret+"\nshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  []string
	}{
		{"no sub", []string{"--secret", tokenSecret}, nil},
		{"no secret", []string{"--sub", "u"}, nil},
		{"missing secret file", []string{"--secret-file", filepath.Join(t.TempDir(), "missing"), "--sub", "u"}, nil},
		{"secret file with a short secret", []string{"--secret-file", shortFile, "--sub", "u"}, nil},
		{"bad role", []string{"--secret", tokenSecret, "--sub", "u", "--role", "admin"}, nil},
		{"role case", []string{"--secret", tokenSecret, "--sub", "u", "--role", "Instructor"}, nil},
		{"zero ttl", []string{"--secret", tokenSecret, "--sub", "u", "--ttl", "0s"}, nil},
		{"negative ttl", []string{"--secret", tokenSecret, "--sub", "u", "--ttl", "-1h"}, nil},
		{"unknown flag", []string{"--secret", tokenSecret, "--sub", "u", "--admin"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := mintToken(tt.args, env(tt.env...), &out, io.Discard); err == nil {
				t.Errorf("mintToken(%q): no error, printed %q", tt.args, out.String())
			}
			if out.Len() != 0 {
				t.Errorf("mintToken(%q) printed %q on error", tt.args, out.String())
			}
		})
	}
}

// The token-mode and hardening flags, and their environment twins.
func TestParseSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte(tokenSecret+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("0123456789abcde\n"), 0o600); err != nil { // 15 bytes + newline
		t.Fatal(err)
	}
	two := filepath.Join(dir, "two")
	if err := os.WriteFile(two, []byte(tokenSecret+"\nsecond-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemFile, badPEM := filepath.Join(dir, "keys.pem"), filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(pemFile, jwttest.PEM(t, &ecKey.PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badPEM, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   []string
		check func(*config) bool
	}{
		{"open mode by default", nil, nil,
			func(c *config) bool { return len(c.hub.JWTKeys.Secrets) == 0 && c.hub.APIKey == "" }},
		{"--jwt-secret", []string{"--jwt-secret", tokenSecret}, nil,
			func(c *config) bool { return firstSecret(c) == tokenSecret }},
		{"--jwt-secret of exactly 16 bytes", []string{"--jwt-secret", "0123456789abcdef"}, nil,
			func(c *config) bool { return firstSecret(c) == "0123456789abcdef" }},
		{"--jwt-secret-file, newline trimmed", []string{"--jwt-secret-file", file}, nil,
			func(c *config) bool { return firstSecret(c) == tokenSecret }},
		{"HUB_JWT_SECRET", nil, []string{"HUB_JWT_SECRET", tokenSecret},
			func(c *config) bool { return firstSecret(c) == tokenSecret }},
		{"HUB_JWT_SECRET_FILE", nil, []string{"HUB_JWT_SECRET_FILE", file},
			func(c *config) bool { return firstSecret(c) == tokenSecret }},
		{"--jwt-secret wins over HUB_JWT_SECRET", []string{"--jwt-secret", tokenSecret}, []string{"HUB_JWT_SECRET", "env-secret-0123456789"},
			func(c *config) bool { return firstSecret(c) == tokenSecret }},
		{"--jwt-secret-file of two secrets", []string{"--jwt-secret-file", two}, nil,
			func(c *config) bool {
				return len(c.hub.JWTKeys.Secrets) == 2 && string(c.hub.JWTKeys.Secrets[1]) == "second-secret-0123456789"
			}},
		{"--jwt-public-key-file", []string{"--jwt-public-key-file", pemFile}, nil,
			func(c *config) bool { return len(c.hub.JWTKeys.PublicKeys) == 1 && c.tokenMode() }},
		{"HUB_JWT_PUBLIC_KEY_FILE", nil, []string{"HUB_JWT_PUBLIC_KEY_FILE", pemFile},
			func(c *config) bool { return len(c.hub.JWTKeys.PublicKeys) == 1 }},
		{"--jwks-url", []string{"--jwks-url", "https://idp.example.com/.well-known/jwks.json"}, nil,
			func(c *config) bool {
				return c.jwksURL == "https://idp.example.com/.well-known/jwks.json" && c.tokenMode()
			}},
		{"HUB_JWKS_URL", nil, []string{"HUB_JWKS_URL", "http://idp.internal/jwks"},
			func(c *config) bool { return c.jwksURL == "http://idp.internal/jwks" }},
		{"--jwt-issuer and --jwt-audience", []string{"--jwt-secret", tokenSecret, "--jwt-issuer", "https://idp/", "--jwt-audience", "hub"}, nil,
			func(c *config) bool { return c.hub.JWTIssuer == "https://idp/" && c.hub.JWTAudience == "hub" }},
		{"HUB_JWT_ISSUER and HUB_JWT_AUDIENCE", nil, []string{"HUB_JWT_SECRET", tokenSecret, "HUB_JWT_ISSUER", "https://idp/", "HUB_JWT_AUDIENCE", "hub"},
			func(c *config) bool { return c.hub.JWTIssuer == "https://idp/" && c.hub.JWTAudience == "hub" }},
		{"--api-key", []string{"--api-key", "k3y-0123456789abcdef"}, nil,
			func(c *config) bool { return c.hub.APIKey == "k3y-0123456789abcdef" }},
		{"HUB_API_KEY", nil, []string{"HUB_API_KEY", "envkey-0123456789abcdef"},
			func(c *config) bool { return c.hub.APIKey == "envkey-0123456789abcdef" }},
		{"--allowed-hosts", []string{"--allowed-hosts", "hub.example.com, *.internal,"}, nil,
			func(c *config) bool {
				return reflect.DeepEqual(c.hub.AllowedHosts, []string{"hub.example.com", "*.internal"})
			}},
		{"HUB_ALLOWED_HOSTS", nil, []string{"HUB_ALLOWED_HOSTS", "a.example"},
			func(c *config) bool { return reflect.DeepEqual(c.hub.AllowedHosts, []string{"a.example"}) }},
		{"--http-idle-timeout", []string{"--http-idle-timeout", "5s"}, nil,
			func(c *config) bool { return c.httpIdleTimeout == 5*time.Second }},
		{"HUB_HTTP_IDLE_TIMEOUT", nil, []string{"HUB_HTTP_IDLE_TIMEOUT", "7s"},
			func(c *config) bool { return c.httpIdleTimeout == 7*time.Second }},
		{"history budgets, join rate, max sessions", []string{"--history-bytes", "1000", "--history-total-bytes", "5000",
			"--join-rate", "0.5", "--join-burst", "3", "--max-sessions", "7"}, nil,
			func(c *config) bool {
				o := c.hub
				return o.HistoryBytes == 1000 && o.HistoryTotalBytes == 5000 && o.JoinRate == 0.5 && o.JoinBurst == 3 && o.MaxSessions == 7
			}},
		{"their environment twins", nil, []string{"HUB_HISTORY_BYTES", "1000", "HUB_HISTORY_TOTAL_BYTES", "5000",
			"HUB_JOIN_RATE", "0.5", "HUB_JOIN_BURST", "3", "HUB_MAX_SESSIONS", "7"},
			func(c *config) bool {
				o := c.hub
				return o.HistoryBytes == 1000 && o.HistoryTotalBytes == 5000 && o.JoinRate == 0.5 && o.JoinBurst == 3 && o.MaxSessions == 7
			}},
		{"--max-connections", []string{"--max-connections", "5000"}, nil,
			func(c *config) bool { return c.hub.MaxConnections == 5000 && c.hub.MaxConnectionsPerIP == 0 }},
		{"--max-connections-per-ip", []string{"--max-connections-per-ip=32"}, nil,
			func(c *config) bool { return c.hub.MaxConnectionsPerIP == 32 && c.hub.MaxConnections == 0 }},
		{"limits from env", nil, []string{"HUB_MAX_CONNECTIONS", "10", "HUB_MAX_CONNECTIONS_PER_IP", "3", "HUB_HANDSHAKE_TIMEOUT", "4s"},
			func(c *config) bool {
				return c.hub.MaxConnections == 10 && c.hub.MaxConnectionsPerIP == 3 && c.hub.HandshakeTimeout == 4*time.Second
			}},
		{"--handshake-timeout", []string{"--handshake-timeout", "750ms"}, nil,
			func(c *config) bool { return c.hub.HandshakeTimeout == 750*time.Millisecond }},
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
	for _, bad := range []struct {
		name string
		args []string
		env  []string
	}{
		{"secret file under 16 bytes", []string{"--jwt-secret-file", short}, nil},
		{"15-byte secret", []string{"--jwt-secret", "0123456789abcde"}, nil},
		{"a bad public key file", []string{"--jwt-public-key-file", badPEM}, nil},
		{"a missing public key file", []string{"--jwt-public-key-file", filepath.Join(dir, "missing")}, nil},
		{"a JWKS URL that is not http", []string{"--jwks-url", "file:///etc/jwks.json"}, nil},
		{"an issuer in open mode", []string{"--jwt-issuer", "https://idp/"}, nil},
		{"negative per-ip", []string{"--max-connections-per-ip", "-1"}, nil},
		{"negative handshake", nil, []string{"HUB_HANDSHAKE_TIMEOUT", "-1s"}},
		{"max connections not a number", nil, []string{"HUB_MAX_CONNECTIONS", "lots"}},
	} {
		t.Run(bad.name, func(t *testing.T) {
			if _, err := parse(bad.args, env(bad.env...), io.Discard); err == nil {
				t.Errorf("parse(%q, %q): no error", bad.args, bad.env)
			}
		})
	}
}

// A secret file on the command line wins over HUB_JWT_SECRET, and a secret
// on the command line over HUB_JWT_SECRET_FILE.
func TestParseSecretPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("from-the-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"file flag over env secret", []string{"--jwt-secret-file", file}, map[string]string{"HUB_JWT_SECRET": "from-the-env-0123456789"}, "from-the-file-0123456789"},
		{"secret flag over env file", []string{"--jwt-secret", "from-the-flag-0123456789"}, map[string]string{"HUB_JWT_SECRET_FILE": file}, "from-the-flag-0123456789"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got := firstSecret(c); got != tt.want {
				t.Errorf("secret = %q, want %q", got, tt.want)
			}
		})
	}
}

// firstSecret is the first HS256 secret the flags gave, "" for none.
func firstSecret(c *config) string {
	if len(c.hub.JWTKeys.Secrets) == 0 {
		return ""
	}
	return string(c.hub.JWTKeys.Secrets[0])
}
