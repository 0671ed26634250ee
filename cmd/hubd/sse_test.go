package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/coder/websocket"
)

// idleStreams is how many SSE streams TestSSEIdleStreams holds: thousands,
// fewer when the file-descriptor limit is lower (each stream takes one here
// and one in hubd). SSE_IDLE_STREAMS overrides it.
func idleStreams(t *testing.T) int {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("SSE_IDLE_STREAMS")); err == nil && v > 0 {
		n = v
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n)+256 {
		n = int(lim.Cur) - 256
		t.Logf("file descriptor limit %d: %d streams", lim.Cur, n)
	}
	return n
}

// rssBytes is the resident memory of process pid (Linux; 0 elsewhere).
func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestSSEIdleStreams holds thousands of idle SSE streams, each joined to one
// of 20 sessions, on a real hubd: every one is served (the hub's own gauge),
// a WebSocket client is still answered at once, and each stream's send is
// still taken. It logs hubd's resident memory per stream (BENCHMARKS.md; run
// without -race for the figure).
func TestSSEIdleStreams(t *testing.T) {
	n := idleStreams(t)
	p := startHubProc(t, "hubd")
	pid := p.cmd.Process.Pid
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	before := rssBytes(pid)

	type stream struct {
		id   string
		body io.ReadCloser
	}
	streams := make([]stream, 0, n)
	defer func() {
		for _, s := range streams {
			s.body.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range n {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url("/sse"), nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			t.Fatalf("stream %d: %s", i, resp.Status)
		}
		br := bufio.NewReader(resp.Body)
		var id string
		for id == "" {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream %d: no open event: %v", i, err)
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var o struct{ StreamID string }
				json.Unmarshal([]byte(data), &o)
				id = o.StreamID
			}
		}
		streams = append(streams, stream{id, resp.Body})
		join := fmt.Sprintf(`{"streamId":%q,"messages":[{"type":"join-session","data":{"sessionId":"s%d","presence":"diff","userInfo":{"userId":"u%d","name":"U"}}}]}`,
			id, i%20, i)
		if code := post(t, client, p.url("/sse/send"), join); code != http.StatusAccepted {
			t.Fatalf("join of stream %d (%q): %d", i, id, code)
		}
	}
	waitMetric(t, p, `sessionhub_transport_connections{transport="sse"}`, float64(n))
	waitMetric(t, p, `sessionhub_participants`, float64(n))
	after := rssBytes(pid)

	// The hub still answers: a WebSocket round trip, a send on the first
	// stream.
	wctx, wcancel := context.WithTimeout(ctx, clWait)
	defer wcancel()
	ws, _, err := websocket.Dial(wctx, p.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(wctx, websocket.MessageText, []byte(`{"type":"ping","ref":"p"}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(wctx); err != nil || !strings.Contains(string(b), `"pong"`) {
		t.Fatalf("pong: %s, %v", b, err)
	}
	if code := post(t, client, p.url("/sse/send"), fmt.Sprintf(`{"streamId":%q,"messages":[{"type":"ping"}]}`, streams[0].id)); code != http.StatusAccepted {
		t.Fatalf("send on an idle stream: %d", code)
	}
	if before > 0 && after > 0 {
		t.Logf("%d idle SSE streams (joined, 20 sessions): hubd RSS %.1f MiB → %.1f MiB, %.1f KiB per stream",
			n, float64(before)/(1<<20), float64(after)/(1<<20), float64(after-before)/float64(n)/1024)
	}
}

// post POSTs a send and returns its status.
func post(t *testing.T, c *http.Client, url, body string) int {
	t.Helper()
	resp, err := c.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
