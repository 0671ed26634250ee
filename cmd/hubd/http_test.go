package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// keepAliveGet sends GET path on a new keep-alive connection to p and
// returns the connection (open, idle) and the status.
func keepAliveGet(t *testing.T, p *hubProc, path string) (net.Conn, *bufio.Reader, int) {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(clWait))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+p.addr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c, br, resp.StatusCode
}

// hubd closes a keep-alive connection idle for --http-idle-timeout
// (finding 5: idle connections were kept forever): the server ends it, the
// client sees the end.
func TestHTTPIdleTimeout(t *testing.T) {
	p := startHubProc(t, "idle", "--http-idle-timeout", "300ms")
	c, br, code := keepAliveGet(t, p, "/healthz")
	if code != http.StatusOK {
		t.Fatalf("GET /healthz = %d", code)
	}
	c.SetReadDeadline(time.Now().Add(clWait))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("an idle keep-alive connection: read %v, want the server's close (EOF)", err)
	}
}

// hubd counts plain HTTP connections toward --max-connections-per-ip
// (finding 5): two idle keep-alive connections from one address, and a
// third connection from it gets 429.
func TestHTTPConnectionsPerIP(t *testing.T) {
	p := startHubProc(t, "perip", "--max-connections-per-ip", "2")
	for range 2 {
		if _, _, code := keepAliveGet(t, p, "/healthz"); code != http.StatusOK {
			t.Fatalf("GET /healthz = %d", code)
		}
	}
	if _, _, code := keepAliveGet(t, p, "/healthz"); code != http.StatusTooManyRequests {
		t.Errorf("a third connection from the address got %d, want 429", code)
	}
}
