package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// waitLog polls p's log until it holds a line matching re, and returns
// that line; it fails the test if p exits or the deadline passes first.
func (p *hubProc) waitLog(t *testing.T, re *regexp.Regexp, deadline time.Time) string {
	t.Helper()
	for {
		for _, line := range strings.Split(p.log.String(), "\n") {
			if re.MatchString(line) {
				return line
			}
		}
		if p.exited() {
			t.Fatalf("%s exited (%s) before logging %q", p.id, p.exit(), re)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no log line %q within the deadline", p.id, re)
		}
		time.Sleep(10 * time.Millisecond) // polling the process's log
	}
}

// waitCount polls p's log until s occurs n times in it.
func (p *hubProc) waitCount(t *testing.T, s string, n int, deadline time.Time) {
	t.Helper()
	for strings.Count(p.log.String(), s) < n {
		if p.exited() {
			t.Fatalf("%s exited (%s) before logging %q %d times", p.id, p.exit(), s, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q is not in its log %d times within the deadline", p.id, s, n)
		}
		time.Sleep(10 * time.Millisecond) // polling the process's log
	}
}

// logTime is the time= of a text log line.
func logTime(t *testing.T, line string) time.Time {
	t.Helper()
	m := regexp.MustCompile(`\btime=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no time in log line %q", line)
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	return at
}

// stuckClient upgrades a raw TCP connection to a WebSocket and never reads
// from it again, so that it never answers the server's close frame.
func stuckClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return nc
}

// A shutdown that had to drop a client that never finished its close
// handshake ran its course: hubd exits 0, within --shutdown-timeout (as
// its own log's clock measures it, not this busy test's).
func TestShutdownDropsStuckClientAndExitsZero(t *testing.T) {
	const timeout = time.Second
	p := startHubProc(t, "hubd", "--shutdown-timeout", timeout.String())
	stuckClient(t, p.addr)
	p.waitLog(t, regexp.MustCompile(`msg=connect `), time.Now().Add(10*time.Second))

	p.terminate()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("hubd did not exit within 30 s of SIGTERM")
	}
	if p.err != nil {
		t.Fatalf("hubd %s after a shutdown that dropped a stuck client, want status 0", p.exit())
	}
	deadline := time.Now()
	began := logTime(t, p.waitLog(t, regexp.MustCompile(`msg="shutting down"`), deadline))
	p.waitLog(t, regexp.MustCompile(`msg="shutdown timeout: dropped`), deadline)
	stopped := logTime(t, p.waitLog(t, regexp.MustCompile(`msg=stopped`), deadline))
	if d := stopped.Sub(began); d > timeout+time.Second {
		t.Errorf("hubd stopped %v after the shutdown began, want within --shutdown-timeout %v + 1 s", d, timeout)
	}
}

// SIGHUP re-reads the secret file and never stops hubd: the connections it
// serves go on, new upgrades are verified with the new secret.
func TestSIGHUPReloadsSecret(t *testing.T) {
	const oldSecret, newSecret = "the-old-secret-0123456789", "the-new-secret-0123456789"
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(oldSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startHubProc(t, "hubd", "--jwt-secret-file", file)
	token := func(secret string) string {
		tok, err := hub.NewToken([]byte(secret), hub.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: "u1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
			Name:             "Ada",
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(secret string) (*websocket.Conn, int) {
		ws, resp, err := websocket.Dial(ctx, p.wsURL()+"?token="+token(secret), nil)
		if err != nil {
			if resp == nil {
				t.Fatalf("dial: %v", err)
			}
			return nil, resp.StatusCode
		}
		t.Cleanup(func() { ws.CloseNow() })
		return ws, resp.StatusCode
	}
	before, _ := dial(oldSecret)
	if before == nil {
		t.Fatal("the old secret is refused before the reload")
	}
	pingPong(t, before, "1")

	if err := os.WriteFile(file, []byte(newSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitCount(t, `msg="reload: JWT keys loaded"`, i+1, time.Now().Add(10*time.Second))
	}
	if p.exited() {
		t.Fatalf("hubd %s after SIGHUP", p.exit())
	}
	pingPong(t, before, "2")
	if ws, status := dial(oldSecret); ws != nil || status != http.StatusUnauthorized {
		t.Errorf("the old secret after the reload: status %d, want 401", status)
	}
	after, _ := dial(newSecret)
	if after == nil {
		t.Fatal("the new secret is refused after the reload")
	}
	pingPong(t, after, "3")

	// A file that cannot be read keeps the secret in force.
	if err := os.WriteFile(file, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, regexp.MustCompile(`msg="reload failed`), time.Now().Add(10*time.Second))
	if ws, _ := dial(newSecret); ws == nil {
		t.Error("the secret in force is refused after a failed reload")
	}
	pingPong(t, before, "4")
}

// In open mode SIGHUP has nothing to reload and stops nothing.
func TestSIGHUPOpenMode(t *testing.T) {
	p := startHubProc(t, "hubd")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, p.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, regexp.MustCompile(`msg="reload: nothing to reload`), time.Now().Add(10*time.Second))
	b, _ := protocol.Encode(protocol.TypePing, "after-hup", map[string]any{})
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	if _, b, err = ws.Read(ctx); err != nil || !strings.Contains(string(b), `"after-hup"`) {
		t.Fatalf("after SIGHUP: %s, %v; want the pong", b, err)
	}
	if p.exited() {
		t.Fatalf("hubd %s after SIGHUP", p.exit())
	}
}
