package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/sessionhub/sessionhub/hub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startHub serves a real hub in-process and returns its WebSocket URL.
func startHub(t *testing.T) string {
	t.Helper()
	h := hub.New(&hub.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func runLoad(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = run(ctx, args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestRunAgainstHub(t *testing.T) {
	url := startHub(t)
	out, progress, err := runLoad(t, "--url", url, "--sessions", "2", "--clients", "3",
		"--cursor-rate", "10", "--warmup", "200ms", "--duration", "1s", "--json",
		"--server-pid", strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, progress)
	}
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, out)
	}
	if s.Connect.OK != 6 || s.Connect.Failed != 0 {
		t.Errorf("connected %d, failed %d; want 6, 0", s.Connect.OK, s.Connect.Failed)
	}
	w := s.Window
	if w.Expected < 100 { // 6 clients × 10/s × 1 s × 2 receivers ≈ 120
		t.Errorf("expected deliveries %d, want about 120", w.Expected)
	}
	if w.DeliveryRatio < 0.99 || w.DeliveryRatio > 1 {
		t.Errorf("delivery ratio %.4f (%d of %d), want ≥ 0.99", w.DeliveryRatio, w.Delivered, w.Expected)
	}
	if s.Latency.P99Us <= 0 || s.Latency.Count != w.Delivered {
		t.Errorf("latency p99 %d µs over %d samples, want > 0 over %d", s.Latency.P99Us, s.Latency.Count, w.Delivered)
	}
	if len(s.Errors) != 0 || len(s.CloseCodes) != 0 {
		t.Errorf("errors %v, close codes %v; want none", s.Errors, s.CloseCodes)
	}
	if s.Server == nil || s.Server.Error != "" || s.Server.RSSEndKiB <= 0 {
		t.Errorf("server stats %+v, want the test process's", s.Server)
	}
	if s.Hubload.CPUUsPerReceived <= 0 {
		t.Errorf("hubload CPU per received message %.2f µs, want > 0", s.Hubload.CPUUsPerReceived)
	}
	if !strings.Contains(progress, "measure") {
		t.Errorf("no progress line for the window in stderr:\n%s", progress)
	}
}

func TestRunTextSummaryAndIdle(t *testing.T) {
	url := startHub(t)
	out, _, err := runLoad(t, "--url", url+","+url, "--sessions", "1", "--clients", "4",
		"--idle", "--warmup", "0s", "--duration", "300ms", "--presence", "full", "--batch=false")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"connect:   4/4 ok, 0 failed", "errors:    none", "closes:    none", "idle true"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestRunBroadcasts(t *testing.T) {
	url := startHub(t)
	out, _, err := runLoad(t, "--url", url, "--sessions", "1", "--clients", "3", "--cursor-rate", "0",
		"--broadcast-rate", "5", "--warmup", "0s", "--duration", "600ms", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if s.Window.BroadcastsSent == 0 || s.Window.BroadcastsRecv < s.Window.BroadcastsSent {
		t.Errorf("broadcasts sent %d, received %d; want each received by 2 others", s.Window.BroadcastsSent, s.Window.BroadcastsRecv)
	}
	if len(s.Errors) != 0 {
		t.Errorf("errors %v", s.Errors)
	}
}

func TestRunWithTokens(t *testing.T) {
	const secret = "s3cret"
	h := hub.New(&hub.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var mu sync.Mutex
	subs := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		claims := jwt.MapClaims{}
		_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return []byte(secret), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
		if !ok || err != nil || claims["name"] == "" || (claims["role"] != "learner" && claims["role"] != "instructor") {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		sub, _ := claims.GetSubject()
		mu.Lock()
		subs[sub] = true
		mu.Unlock()
		h.Handler().ServeHTTP(w, r)
	}))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
	}()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	out, _, err := runLoad(t, "--url", url, "--jwt-secret", secret, "--sessions", "2", "--clients", "2",
		"--warmup", "0s", "--duration", "300ms", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if s.Connect.OK != 4 || len(subs) != 4 || !subs["u0-0"] || !subs["u1-1"] {
		t.Errorf("connected %d with subjects %v; want 4: u0-0 … u1-1 (errors %v)", s.Connect.OK, subs, s.Errors)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	url := startHub(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	var out bytes.Buffer
	start := time.Now()
	err := run(ctx, []string{"--url", url, "--sessions", "1", "--clients", "2", "--warmup", "1m", "--duration", "1h", "--json"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("run took %s after cancel", d)
	}
	var s summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if !s.Interrupted || s.Connect.OK != 2 || len(s.CloseCodes) != 0 {
		t.Errorf("interrupted %t, connected %d, closes %v", s.Interrupted, s.Connect.OK, s.CloseCodes)
	}
}

func TestRunNobodyConnects(t *testing.T) {
	srv := httptest.NewServer(nil) // 404 on /ws
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	out, _, err := runLoad(t, "--url", url, "--sessions", "1", "--clients", "2", "--warmup", "0s", "--duration", "100ms", "--json")
	if err != errFailed {
		t.Fatalf("err %v, want errFailed", err)
	}
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if s.Connect.Failed != 2 || s.Errors["connect_http_404"] != 2 {
		t.Errorf("failed %d, errors %v; want 2 connect_http_404", s.Connect.Failed, s.Errors)
	}
}

func TestFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sessions", "0"}, "--sessions and --clients"},
		{[]string{"--clients", "-1"}, "--sessions and --clients"},
		{[]string{"--sessions", "1000", "--clients", "1000"}, "at most"},
		{[]string{"--cursor-rate", "-1"}, "--cursor-rate"},
		{[]string{"--broadcast-rate", "5000"}, "--broadcast-rate"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--warmup", "-1s"}, "--warmup"},
		{[]string{"--ramp", "-5"}, "--ramp"},
		{[]string{"--presence", "partial"}, "--presence"},
		{[]string{"--url", "http://127.0.0.1:8080/ws"}, "scheme"},
		{[]string{"--url", "ws://example.com/ws"}, "loopback"},
		{[]string{"--url", "ws://10.255.255.1/ws"}, "loopback"},
		{[]string{"--source-addrs", "nope"}, "not an IP"},
		{[]string{"--source-addrs", "8.8.8.8"}, "loopback"},
		{[]string{"--server-pid", "-3"}, "--server-pid"},
		{[]string{"--nosuchflag"}, "not defined"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		_, _, err := runLoad(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

func TestParseDefaultsAndLists(t *testing.T) {
	c, err := parse([]string{"--url", "ws://127.0.0.1:1/ws,ws://localhost:2/ws", "--url", "ws://[::1]:3/ws",
		"--source-addrs", "127.0.0.1, 127.0.0.2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.urls) != 3 || len(c.sourceAddrs) != 2 {
		t.Errorf("urls %v, source addrs %v", c.urls, c.sourceAddrs)
	}
	if !c.batch || c.presence != "diff" || c.idle {
		t.Errorf("defaults: batch %t presence %s idle %t", c.batch, c.presence, c.idle)
	}
	c, err = parse(nil, io.Discard)
	if err != nil || len(c.urls) != 1 || c.urls[0] != "ws://127.0.0.1:8080/ws" {
		t.Errorf("default url %v, %v", c, err)
	}
}

func TestScan(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind msgKind
		ts   int64
	}{
		{`{"type":"cursor-moved","data":{"userId":"u0-1","cursor":{"line":1,"column":2,"file":"t/1732567890123456789"}}}`, kindCursorMoved, 1732567890123456789},
		{`{"data":{"userId":"u","cursor":{"line":1,"column":2,"file":"t/42"}},"type":"cursor-moved"}`, kindCursorMoved, 42},
		{`{"type":"cursor-moved","data":{"userId":"u","cursor":{"line":1,"column":2}}}`, kindCursorMoved, 0},
		{`{"type":"cursor-moved","data":{"userId":"u","cursor":{"line":1,"column":2,"file":"t/12x"}}}`, kindCursorMoved, 0},
		{`{"type":"cursor-moved","data":{"cursor":{"file":"t/99999999999999999999999"}}}`, kindCursorMoved, 0},
		{`{"type":"session-joined","data":{}}`, kindSessionJoined, 0},
		{`{"type":"broadcast","data":{}}`, kindBroadcast, 0},
		{`{"type":"error","data":{"code":"rate_limited","message":"x"}}`, kindError, 0},
		{`{"type":"user-joined","data":{}}`, kindOther, 0},
		{`not json`, kindOther, 0},
	} {
		k, ts := scan([]byte(tc.in))
		if k != tc.kind || ts != tc.ts {
			t.Errorf("scan(%s) = %d, %d; want %d, %d", tc.in, k, ts, tc.kind, tc.ts)
		}
	}
	if got := errorCode([]byte(`{"type":"error","data":{"code":"rate_limited"}}`)); got != "rate_limited" {
		t.Errorf("errorCode = %q", got)
	}
}

func TestReadProc(t *testing.T) {
	p := readProc(os.Getpid())
	if p.err != nil || p.rssKiB <= 0 {
		t.Fatalf("readProc(self) = %+v", p)
	}
	if p := readProc(1 << 30); p.err == nil {
		t.Error("readProc of a missing pid succeeded")
	}
}

func BenchmarkScanCursorMoved(b *testing.B) {
	m := []byte(`{"type":"cursor-moved","data":{"userId":"u12-7","cursor":{"line":123,"column":7,"file":"t/1732567890123456789"}}}`)
	b.ReportAllocs()
	for b.Loop() {
		scan(m)
	}
}
