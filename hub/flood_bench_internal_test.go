package hub

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sessionhub/sessionhub/hub/internal/wsfast"
	"github.com/sessionhub/sessionhub/internal/wstest"
	"github.com/sessionhub/sessionhub/protocol"
)

// floodUpgrade opens a TCP connection to ts and upgrades it to a WebSocket
// by hand, so that a test can write raw frames.
func floodUpgrade(tb testing.TB, ts *httptest.Server) (net.Conn, *bufio.Reader) {
	tb.Helper()
	addr := strings.TrimPrefix(ts.URL, "http://")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(nc, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("upgrade: %s", resp.Status)
	}
	return nc, br
}

// counterValue is a counter's value.
func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFlood measures what a flood over the message rate costs the
// hub: one client on loopback writes b.N pings, every one of them over the
// rate (rate ~0, burst 0 after the first), in writes of 256 frames, and
// reads whatever comes back without decoding it. The timer stops when the
// hub loop has handled the last refusal. cpu-ns/msg is the process's CPU
// time (user + system: the hub's reader, loop and writer, and the client's
// raw writes and reads, which cost little) per message.
func BenchmarkFlood(b *testing.B) {
	h := New(&Options{
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		MessageRate:  1e-9,
		MessageBurst: 1,
		AbuseWindow:  time.Hour,
		SendQueue:    1 << 24,
	})
	ts := httptest.NewServer(h.Handler())
	defer func() {
		h.Shutdown(context.Background())
		ts.Close()
	}()
	nc, br := floodUpgrade(b, ts)
	defer nc.Close()
	read := make(chan struct{})
	go func() {
		defer close(read)
		io.Copy(io.Discard, br)
	}()
	// The burst's one message, then the flood.
	if _, err := nc.Write(wstest.MaskedFrame(0x81, []byte(`{"type":"ping","ref":"first"}`))); err != nil {
		b.Fatal(err)
	}
	const perWrite = 256
	var chunk []byte
	for range perWrite {
		chunk = append(chunk, wstest.MaskedFrame(0x81, []byte(`{"type":"ping","ref":"r-12345"}`))...)
	}
	frameLen := len(chunk) / perWrite
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(perWrite, b.N-sent)
		if _, err := nc.Write(chunk[:n*frameLen]); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	for counterValue(h.metrics.rateLimited) < float64(b.N) {
		time.Sleep(100 * time.Microsecond) // polling the hub's counter
	}
	h.call(func() {}) // the loop has handled every refusal before it
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
	nc.Close()
	<-read
}

// rateLimitedReply splices the ref into the error encoded once: the same
// JSON as protocol.EncodeError would make, for any ref.
func TestRateLimitedReply(t *testing.T) {
	h := &Hub{rateLimited: protocol.EncodeError("", protocol.Errorf(protocol.CodeRateLimited, "over %g messages per second", 50.0))}
	for _, ref := range []string{"", "r1", `a"b\c`, "<&>", "é\u2028", "\x01"} {
		want := protocol.EncodeError(ref, protocol.Errorf(protocol.CodeRateLimited, "over %g messages per second", 50.0))
		var got, exp any
		if err := json.Unmarshal(h.rateLimitedReply(ref), &got); err != nil {
			t.Fatalf("ref %q: %s: %v", ref, h.rateLimitedReply(ref), err)
		}
		json.Unmarshal(want, &exp)
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("ref %q: %s, want %s", ref, h.rateLimitedReply(ref), want)
		}
	}
}

// A connection without sessionhub.batch gets the frames queued behind the
// first in the same write: each a whole frame of one message, in order.
func TestWriteQueuedFramesInOneWrite(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	c := &conn{hub: &Hub{metrics: newMetrics()}, out: wsfast.NewOut(server), send: make(chan []byte, sendChanSize)}
	c.send <- []byte(`{"n":2}`)
	c.send <- []byte(`{"n":3}`)
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 1024)
		n, _ := client.Read(buf) // net.Pipe: one Write is one Read here
		got <- buf[:n]
	}()
	if err := c.write([]byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	want := append(append(wsfast.AppendFrame(nil, []byte(`{"n":1}`)), wsfast.AppendFrame(nil, []byte(`{"n":2}`))...), wsfast.AppendFrame(nil, []byte(`{"n":3}`))...)
	if b := <-got; string(b) != string(want) {
		t.Fatalf("wrote % x, want % x", b, want)
	}
	if len(c.send) != 0 {
		t.Fatalf("%d left queued", len(c.send))
	}
}
