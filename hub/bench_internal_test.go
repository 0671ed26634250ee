package hub

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/hub/internal/wsfast"
	"github.com/sessionhub/sessionhub/protocol"
)

// Fan-out benchmark parameters. The benchmark submits cursor updates in
// rounds of benchChunk and lets at most two rounds be outstanding, so no
// send queue ever holds more than 2*benchChunk events and none overflows
// (an overflow would drop the connection as a slow consumer).
const (
	benchChunk = 256
	benchQueue = 4 * benchChunk
)

// BenchmarkFanout measures the run loop's fan-out of cursor-moved: one
// member of a room of N sends b.N cursor updates straight into the hub's
// inbox (no socket, no decode, no rate limit: the cursor gate sits in the
// reader), and the N-1 other members' send queues are drained by one
// goroutine per CPU, standing in for the connections' writers. The timer
// stops only once every delivery of the last update has been received.
//
// deliveries/s and ns/delivery are per recipient queued and received;
// allocs/delivery counts every malloc of the process during the timed loop
// (run loop, drainers, runtime) divided by the deliveries.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("room=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	// A fixed ring of cursors, never written once built, so that the run
	// loop may keep pointers to them and the benchmark allocates nothing.
	cursors := make([]protocol.Cursor, 1024)
	for i := range cursors {
		cursors[i] = protocol.Cursor{Line: i, Column: i % 80, File: "main.go"}
	}
	benchRoom(b, &Options{CursorRate: 1e9}, n, func(i int) protocol.Message {
		return protocol.Message{Type: protocol.TypeCursorUpdate, Payload: &cursors[i%len(cursors)]}
	}, nil)
}

// benchRoom is the fan-out benchmarks' harness: a hub with opts (logger,
// send queue and room size set here), n socketless members joined to one
// session, and b.N messages msg(i) submitted for member 0 straight into the
// inbox, while one goroutine per CPU drains the other members' queues in
// rounds, standing in for the writers. The timer stops once every delivery
// has been received; the count is checked, then check (if not nil) runs
// while the hub is still up. It reports deliveries/s, ns/delivery and
// allocs/delivery (every malloc of the process in the timed loop divided by
// the deliveries).
func benchRoom(b *testing.B, opts *Options, n int, msg func(i int) protocol.Message, check func(h *Hub)) {
	o := *opts
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	o.SendQueue, o.MaxParticipants = benchQueue, n
	h := New(&o)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			b.Errorf("shutdown: %v", err)
		}
	}()

	conns := make([]*conn, n)
	for i := range conns {
		conns[i] = testReadsSend(&conn{
			id:      h.nextID.Add(1),
			hub:     h,
			start:   time.Now(),
			send:    make(chan []byte, benchQueue),
			closing: make(chan struct{}),
		})
	}
	benchJoin(b, h, conns)
	sender, recipients := conns[0], conns[1:]

	// Drainers: each owns a shard of the recipients and, round by round,
	// receives that round's events from each of its queues.
	drainers := runtime.GOMAXPROCS(0)
	rounds := (b.N + benchChunk - 1) / benchChunk
	progress := make([]chan struct{}, drainers)
	counts := make([]int, drainers)
	var wg sync.WaitGroup
	for d := range drainers {
		progress[d] = make(chan struct{}, 4)
		var shard []*conn
		for i := d; i < len(recipients); i += drainers {
			shard = append(shard, recipients[i])
		}
		wg.Go(func() {
			got := 0
			for r := range rounds {
				k := min(benchChunk, b.N-r*benchChunk)
				for _, c := range shard {
					for range k {
						<-c.send
					}
					got += k
				}
				progress[d] <- struct{}{}
			}
			counts[d] = got
		})
	}

	// The drainers wait on empty queues: start the clock now.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for r := range rounds {
		if r >= 2 { // every drainer is done with round r-2
			for _, p := range progress {
				<-p
			}
		}
		for i := r * benchChunk; i < min((r+1)*benchChunk, b.N); i++ {
			h.submit(inbound{c: sender, at: time.Now(), msg: msg(i)})
		}
	}
	wg.Wait()
	b.StopTimer()
	runtime.ReadMemStats(&after)

	deliveries := 0
	for _, c := range counts {
		deliveries += c
	}
	if want := b.N * (n - 1); deliveries != want {
		b.Fatalf("%d deliveries, want %d", deliveries, want)
	}
	for _, c := range conns {
		if c.ended || len(c.send) != 0 {
			b.Fatalf("conn %d: gone=%v, %d left in its queue", c.id, c.ended, len(c.send))
		}
	}
	if check != nil {
		check(h)
	}
	elapsed := b.Elapsed()
	b.ReportMetric(float64(deliveries)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(deliveries), "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(deliveries), "allocs/delivery")
}

// benchJoin joins conns, in order, to one session in diff presence and
// empties their queues: conn i gets its session-joined, then one
// user-joined for each conn after it.
func benchJoin(b *testing.B, h *Hub, conns []*conn) {
	b.Helper()
	next := func(c *conn) []byte {
		select {
		case m := <-c.send:
			if bytes.Contains(m, []byte(`"type":"error"`)) {
				b.Fatalf("conn %d: %s", c.id, m)
			}
			return m
		case <-time.After(10 * time.Second):
			b.Fatalf("conn %d: nothing queued", c.id)
			return nil
		}
	}
	for i, c := range conns {
		user := fmt.Sprintf("user-%d", i)
		h.submit(inbound{c: c, at: time.Now(), msg: protocol.Message{Type: protocol.TypeJoinSession,
			Payload: &protocol.JoinSession{SessionID: "bench", Presence: protocol.PresenceDiff,
				UserInfo: protocol.UserInfo{UserID: user, Name: user, Role: protocol.RoleLearner}}}})
		if m := next(c); !bytes.Contains(m, []byte(`"type":"session-joined"`)) {
			b.Fatalf("%s: got %s, want session-joined", user, m)
		}
		for _, o := range conns[:i] {
			if m := next(o); !bytes.Contains(m, []byte(`"type":"user-joined"`)) {
				b.Fatalf("conn %d: got %s, want user-joined", o.id, m)
			}
		}
	}
}

// BenchmarkWrite measures the writer's path for one message, from the send
// queue to the TCP connection: the frame built in a pooled buffer and one
// write(2) on loopback, a goroutine draining the other end. With batch, the
// message goes out with 3 more queued behind it (4 per frame). allocs/op
// should be 0: nothing per message.
func BenchmarkWrite(b *testing.B) {
	msg := []byte(`{"type":"cursor-moved","data":{"userId":"u-0042","cursor":{"line":120,"column":17,"file":"1764123456789012345"}}}`)
	// perFrame 1 is a connection without batching; more is what a
	// sessionhub.batch connection's frame carries (under --write-delay,
	// what came within the delay).
	for _, perFrame := range []int{1, 2, 4, 8, delayedChanSize} {
		b.Run(fmt.Sprintf("messages=%d", perFrame), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				peer, err := ln.Accept()
				if err != nil {
					return
				}
				defer peer.Close()
				io.Copy(io.Discard, peer)
			}()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			h := &Hub{metrics: newMetrics()}
			c := &conn{hub: h, out: wsfast.NewOut(nc), batch: perFrame > 1, send: make(chan []byte, delayedChanSize)}
			b.ReportAllocs()
			b.SetBytes(int64(perFrame * len(msg)))
			for b.Loop() {
				for range perFrame - 1 {
					c.send <- msg
				}
				if err := c.write(msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perFrame), "ns/msg")
			nc.Close()
			<-drained
		})
	}
}
