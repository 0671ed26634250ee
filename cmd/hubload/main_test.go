package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/sessionhub/sessionhub/hub"
)

func TestMain(m *testing.M) {
	if os.Getenv(spinEnv) != "" {
		spin()
		return
	}
	goleak.VerifyTestMain(m)
}

// spinEnv makes the test binary a child that burns CPU (spin) until it is
// killed, at most a minute: a second server process to watch.
const spinEnv = "HUBLOAD_TEST_SPIN"

func spin() {
	end := time.Now().Add(time.Minute)
	for n := 0; time.Now().Before(end); n++ {
		_ = n * n
	}
}

// startSpinner starts a spinning copy of the test binary and returns its PID.
func startSpinner(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), spinEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// startHub serves a real hub in-process and returns its WebSocket URL.
func startHub(t *testing.T) string {
	t.Helper()
	// No cursor rate to speak of: a busy machine bunches the clients'
	// updates, and at the default 20 a second the hub would coalesce some,
	// which hubload counts as not delivered.
	return startHubWith(t, &hub.Options{CursorRate: 1e6})
}

// startHubWith is startHub with o (its logger discards).
func startHubWith(t *testing.T, o *hub.Options) string {
	t.Helper()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h := hub.New(o)
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
	if c := s.Connect; c.JoinP50Ms <= 0 || c.JoinP99Ms < c.JoinP50Ms || c.JoinMaxMs < c.JoinP99Ms {
		t.Errorf("join p50 %.3f, p99 %.3f, max %.3f ms; want positive and in order", c.JoinP50Ms, c.JoinP99Ms, c.JoinMaxMs)
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
	if s.Server == nil || s.Server.Error != "" || s.Server.RSSEndKiB <= 0 || s.Server.PID != os.Getpid() || s.Server.CPUBeforeWindowSeconds < 0 {
		t.Errorf("server stats %+v, want the test process's", s.Server)
	}
	if len(s.Servers) != 1 || !reflect.DeepEqual(s.Servers[0], s.Server) {
		t.Errorf("servers %+v, want just the server %+v", s.Servers, s.Server)
	}
	if tot := s.ServerTotal; tot == nil || tot.Processes != 1 || tot.CPUSeconds != s.Server.CPUSeconds ||
		tot.RSSEndKiB != s.Server.RSSEndKiB || tot.CPUUsPerDelivered != s.Server.CPUUsPerDelivered {
		t.Errorf("server total %+v, want the one server's %+v", tot, s.Server)
	}
	if w.Frames <= 0 || w.MessagesPerFrame != float64(w.Received)/float64(w.Frames) {
		t.Errorf("messages per frame %.3f, want received %d / frames %d", w.MessagesPerFrame, w.Received, w.Frames)
	}
	if s.Hubload.CPUUsPerReceived <= 0 {
		t.Errorf("hubload CPU per received message %.2f µs, want > 0", s.Hubload.CPUUsPerReceived)
	}
	if !strings.Contains(progress, "measure") {
		t.Errorf("no progress line for the window in stderr:\n%s", progress)
	}
}

// TestRunMessagesPerFrame: under a write delay of 100 ms, where each
// client gets about 100 messages a second, the frames hubload reads carry
// several messages each, and the text summary says how many. (A busy
// machine only makes the frames fuller.)
func TestRunMessagesPerFrame(t *testing.T) {
	url := startHubWith(t, &hub.Options{WriteDelay: 100 * time.Millisecond, CursorRate: 1e6}) // as startHub
	out, progress, err := runLoad(t, "--url", url, "--sessions", "1", "--clients", "6",
		"--cursor-rate", "20", "--warmup", "300ms", "--duration", "1s", "--json")
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, progress)
	}
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, out)
	}
	if w := s.Window; w.MessagesPerFrame < 2 || w.DeliveryRatio < 0.99 {
		t.Errorf("%.2f messages per frame (%d in %d), delivery ratio %.4f; want at least 2 and every cursor",
			w.MessagesPerFrame, w.Received, w.Frames, w.DeliveryRatio)
	}
	var text bytes.Buffer
	if err := s.writeText(&text); err != nil || !strings.Contains(text.String(), "messages per frame)") {
		t.Errorf("text summary (%v) lacks the messages per frame:\n%s", err, text.String())
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
		{[]string{"--server-pid", "12,x"}, "server-pid"},
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
	// The kernel keeps the first 15 bytes of the executable's name.
	if want := filepath.Base(os.Args[0]); p.name != want[:min(len(want), 15)] {
		t.Errorf("readProc(self).name = %q, want %q", p.name, want[:min(len(want), 15)])
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

func TestParseServerPIDs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    []int
		wantErr string
	}{
		{"none", nil, nil, ""},
		{"zero means none, as before", []string{"--server-pid", "0"}, nil, ""},
		{"one", []string{"--server-pid", "12"}, []int{12}, ""},
		{"comma-separated", []string{"--server-pid", "12,13,14"}, []int{12, 13, 14}, ""},
		{"repeated", []string{"--server-pid", "12", "--server-pid=13"}, []int{12, 13}, ""},
		{"both, with spaces and empties", []string{"--server-pid", " 12, ,13,", "--server-pid", "14"}, []int{12, 13, 14}, ""},
		{"order kept", []string{"--server-pid", "30,10", "--server-pid", "20"}, []int{30, 10, 20}, ""},
		{"not a number", []string{"--server-pid", "12,hubd"}, nil, `"hubd" is not a PID`},
		{"negative", []string{"--server-pid", "12,-3"}, nil, "--server-pid must not be negative"},
		{"twice", []string{"--server-pid", "12,13", "--server-pid", "12"}, nil, "--server-pid 12 is given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.serverPIDs; !slices.Equal(got, tc.want) {
				t.Errorf("server PIDs %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSetServers(t *testing.T) {
	// A 4 s window with 1000 messages received over 4 connections: every
	// figure below is exact in floating point.
	ps := func(name string, rssKiB int64, cpu time.Duration) procStat {
		return procStat{name: name, rssKiB: rssKiB, cpu: cpu}
	}
	gone := procStat{err: errors.New("open /proc/99/status: no such file or directory")}
	type reading struct{ before, start, end procStat }
	for _, tc := range []struct {
		name      string
		pids      []int
		readings  []reading
		want      []*serverStats
		wantTotal *serverTotal
		wantText  []string
	}{{
		name:     "one process",
		pids:     []int{7},
		readings: []reading{{ps("hubd", 1000, time.Second), ps("hubd", 1400, 3*time.Second), ps("hubd", 1800, 5*time.Second)}},
		want: []*serverStats{{PID: 7, Name: "hubd", RSSBeforeKiB: 1000, RSSStartKiB: 1400, RSSEndKiB: 1800, RSSPerConnBytes: 204800,
			CPUSeconds: 2, CPUBeforeWindowSeconds: 2, CPUPercent: 50, CPUUsPerDelivered: 2000, CPUSecondsPerMillion: 2000}},
		wantTotal: &serverTotal{Processes: 1, RSSBeforeKiB: 1000, RSSStartKiB: 1400, RSSEndKiB: 1800, RSSPerConnBytes: 204800,
			CPUSeconds: 2, CPUPercent: 50, CPUUsPerDelivered: 2000, CPUSecondsPerMillion: 2000},
		wantText: []string{"server:    pid 7: RSS 1000 KiB before, 1400 KiB at start, 1800 KiB at end (204800 B per connection); CPU 2.00s, 2000.00 µs per delivered message, 2000.0 s per million\n"},
	}, {
		name: "three nodes and redis",
		pids: []int{11, 12, 13, 20},
		readings: []reading{
			{ps("hubd", 1000, 0), ps("hubd", 1100, 10*time.Second), ps("hubd", 1200, 11*time.Second)},
			{ps("hubd", 2000, 0), ps("hubd", 2100, 10*time.Second), ps("hubd", 2200, 10500*time.Millisecond)},
			{ps("hubd", 3000, 0), ps("hubd", 3100, 10*time.Second), ps("hubd", 3300, 10*time.Second)},
			{ps("redis-server", 4000, 0), ps("redis-server", 4000, 2*time.Second), ps("redis-server", 4004, 2500*time.Millisecond)},
		},
		want: []*serverStats{
			{PID: 11, Name: "hubd", RSSBeforeKiB: 1000, RSSStartKiB: 1100, RSSEndKiB: 1200, RSSPerConnBytes: 51200,
				CPUSeconds: 1, CPUBeforeWindowSeconds: 10, CPUPercent: 25, CPUUsPerDelivered: 1000, CPUSecondsPerMillion: 1000},
			{PID: 12, Name: "hubd", RSSBeforeKiB: 2000, RSSStartKiB: 2100, RSSEndKiB: 2200, RSSPerConnBytes: 51200,
				CPUSeconds: 0.5, CPUBeforeWindowSeconds: 10, CPUPercent: 12.5, CPUUsPerDelivered: 500, CPUSecondsPerMillion: 500},
			{PID: 13, Name: "hubd", RSSBeforeKiB: 3000, RSSStartKiB: 3100, RSSEndKiB: 3300, RSSPerConnBytes: 76800,
				CPUSeconds: 0, CPUBeforeWindowSeconds: 10, CPUPercent: 0, CPUUsPerDelivered: 0, CPUSecondsPerMillion: 0},
			{PID: 20, Name: "redis-server", RSSBeforeKiB: 4000, RSSStartKiB: 4000, RSSEndKiB: 4004, RSSPerConnBytes: 1024,
				CPUSeconds: 0.5, CPUBeforeWindowSeconds: 2, CPUPercent: 12.5, CPUUsPerDelivered: 500, CPUSecondsPerMillion: 500},
		},
		wantTotal: &serverTotal{Processes: 4, RSSBeforeKiB: 10000, RSSStartKiB: 10300, RSSEndKiB: 10704, RSSPerConnBytes: 180224,
			CPUSeconds: 2, CPUPercent: 50, CPUUsPerDelivered: 2000, CPUSecondsPerMillion: 2000},
		wantText: []string{
			"server:    pid 11 (hubd): RSS 1000 KiB before, 1100 KiB at start, 1200 KiB at end (51200 B per connection); CPU 1.00s (25.0 % of a core), 1000.00 µs per delivered message, 1000.0 s per million\n",
			"server:    pid 20 (redis-server): RSS 4000 KiB before, 4000 KiB at start, 4004 KiB at end (1024 B per connection); CPU 0.50s (12.5 % of a core), 500.00 µs per delivered message, 500.0 s per million\n",
			"servers:   total of 4 of 4 processes: RSS 10000 KiB before, 10300 KiB at start, 10704 KiB at end (180224 B per connection); CPU 2.00s (50.0 % of a core), 2000.00 µs per delivered message, 2000.0 s per million\n",
		},
	}, {
		name: "one process gone: left out of the total",
		pids: []int{11, 99},
		readings: []reading{
			{ps("hubd", 1000, 0), ps("hubd", 1100, time.Second), ps("hubd", 1200, 2*time.Second)},
			{ps("hubd", 1000, 0), ps("hubd", 1000, time.Second), gone},
		},
		want: []*serverStats{
			{PID: 11, Name: "hubd", RSSBeforeKiB: 1000, RSSStartKiB: 1100, RSSEndKiB: 1200, RSSPerConnBytes: 51200,
				CPUSeconds: 1, CPUBeforeWindowSeconds: 1, CPUPercent: 25, CPUUsPerDelivered: 1000, CPUSecondsPerMillion: 1000},
			{PID: 99, Name: "hubd", RSSBeforeKiB: 1000, RSSStartKiB: 1000, Error: gone.err.Error()},
		},
		wantTotal: &serverTotal{Processes: 1, RSSBeforeKiB: 1000, RSSStartKiB: 1100, RSSEndKiB: 1200, RSSPerConnBytes: 51200,
			CPUSeconds: 1, CPUPercent: 25, CPUUsPerDelivered: 1000, CPUSecondsPerMillion: 1000,
			Error: "left out: pid 99: " + gone.err.Error()},
		wantText: []string{
			"server:    pid 99 (hubd): open /proc/99/status: no such file or directory\n",
			"servers:   total of 1 of 2 processes: RSS 1000 KiB before",
			"servers:   left out: pid 99: open /proc/99/status",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var s summary
			s.Window.Seconds, s.Window.Received = 4, 1000
			var before, start, end []procStat
			for _, r := range tc.readings {
				before, start, end = append(before, r.before), append(start, r.start), append(end, r.end)
			}
			s.setServers(tc.pids, before, start, end, 4)
			if len(s.Servers) != len(tc.want) {
				t.Fatalf("%d servers, want %d", len(s.Servers), len(tc.want))
			}
			for i, got := range s.Servers {
				if !reflect.DeepEqual(got, tc.want[i]) {
					t.Errorf("server %d:\n got %+v\nwant %+v", i, got, tc.want[i])
				}
			}
			if s.Server != s.Servers[0] {
				t.Errorf("server %+v, want the first of servers", s.Server)
			}
			if !reflect.DeepEqual(s.ServerTotal, tc.wantTotal) {
				t.Errorf("total:\n got %+v\nwant %+v", s.ServerTotal, tc.wantTotal)
			}
			var b strings.Builder
			if err := s.writeText(&b); err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.wantText {
				if !strings.Contains(b.String(), want) {
					t.Errorf("text summary lacks %q:\n%s", want, b.String())
				}
			}
			if n := len(tc.pids); n == 1 && strings.Contains(b.String(), "servers:") {
				t.Errorf("text summary of one process has a total line:\n%s", b.String())
			}
		})
	}
}

// TestRunServerPIDs watches several processes for real: the test process,
// which runs the hub, and a child spinning on a core, named in the ways
// --server-pid allows.
func TestRunServerPIDs(t *testing.T) {
	url := startHub(t)
	self, child := os.Getpid(), startSpinner(t)
	const missing = 1 << 30 // above any pid_max
	for _, tc := range []struct {
		name    string
		flags   []string
		want    []int
		wantErr []bool // per process: its readings failed
	}{
		{"comma-separated", []string{"--server-pid", fmt.Sprintf("%d,%d", self, child)}, []int{self, child}, []bool{false, false}},
		{"repeated", []string{"--server-pid", strconv.Itoa(child), "--server-pid", strconv.Itoa(self)}, []int{child, self}, []bool{false, false}},
		{"one missing", []string{"--server-pid", fmt.Sprintf("%d,%d", self, missing)}, []int{self, missing}, []bool{false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--url", url, "--sessions", "1", "--clients", "3", "--cursor-rate", "10",
				"--warmup", "100ms", "--duration", "1s", "--json"}, tc.flags...)
			out, progress, err := runLoad(t, args...)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, progress)
			}
			var s summary
			if err := json.Unmarshal([]byte(out), &s); err != nil {
				t.Fatalf("summary is not JSON: %v\n%s", err, out)
			}
			var got []int
			for _, st := range s.Servers {
				got = append(got, st.PID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("server PIDs %v, want %v", got, tc.want)
			}
			if !reflect.DeepEqual(s.Server, s.Servers[0]) {
				t.Errorf("server %+v, want the first of servers %+v", s.Server, s.Servers[0])
			}
			var cpu, usPer float64
			var rss int64
			ok := 0
			for i, st := range s.Servers {
				if gotErr := st.Error != ""; gotErr != tc.wantErr[i] {
					t.Errorf("pid %d: error %q, want one: %t", st.PID, st.Error, tc.wantErr[i])
				}
				if st.Error != "" {
					continue
				}
				ok++
				if st.Name == "" || st.RSSEndKiB <= 0 {
					t.Errorf("pid %d: name %q, RSS %d KiB; want both", st.PID, st.Name, st.RSSEndKiB)
				}
				if st.PID == child && (st.CPUSeconds < 0.05 || st.CPUUsPerDelivered <= 0) {
					// It spins for the whole 1 s window: tens of 10 ms ticks
					// even when it shares a core.
					t.Errorf("spinning child: CPU %.2f s, %.1f µs per delivered message; want its own", st.CPUSeconds, st.CPUUsPerDelivered)
				}
				cpu += st.CPUSeconds
				usPer += st.CPUUsPerDelivered
				rss += st.RSSEndKiB
			}
			tot := s.ServerTotal
			if tot == nil {
				t.Fatal("no server total")
			}
			if tot.Processes != ok || !near(tot.CPUSeconds, cpu) || !near(tot.CPUUsPerDelivered, usPer) || tot.RSSEndKiB != rss {
				t.Errorf("total %+v; want %d processes, CPU %.3f s, %.3f µs per delivered message, RSS %d KiB",
					tot, ok, cpu, usPer, rss)
			}
			if wantErr := slices.Contains(tc.wantErr, true); (tot.Error != "") != wantErr {
				t.Errorf("total error %q, want one: %t", tot.Error, wantErr)
			}
			if s.Window.DeliveryRatio < 0.99 {
				t.Errorf("delivery ratio %.4f", s.Window.DeliveryRatio)
			}
		})
	}
	t.Run("text", func(t *testing.T) {
		out, _, err := runLoad(t, "--url", url, "--sessions", "1", "--clients", "2", "--warmup", "0s",
			"--duration", "300ms", "--server-pid", fmt.Sprintf("%d,%d", self, child))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			fmt.Sprintf("server:    pid %d (", self),
			fmt.Sprintf("server:    pid %d (", child),
			"servers:   total of 2 of 2 processes: RSS ",
			"% of a core",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("summary lacks %q:\n%s", want, out)
			}
		}
	})
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(a), math.Abs(b)) }
