package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
)

// BenchmarkBroadcastFanout measures what the broadcast history costs on the
// fan-out path: one member of a room of 100 sends b.N broadcasts to all
// straight into the hub's inbox (as BenchmarkFanout does for cursors: no
// socket, no decode, no rate limit), and the 99 others' send queues are
// drained by one goroutine per CPU. history=1000 keeps the default history
// (each event is appended, the oldest dropped once 1000 are kept, the
// array compacted now and then, and 1000 encoded events stay live);
// history=1 is the least the hub can keep, which is as close to "no
// history" as its options go. Each broadcast is encoded once and its bytes
// shared by the history and every recipient's queue either way.
func BenchmarkBroadcastFanout(b *testing.B) {
	for _, size := range []int{1, 1000} {
		b.Run(fmt.Sprintf("room=100/history=%d", size), func(b *testing.B) { benchBroadcastFanout(b, 100, size) })
	}
}

func benchBroadcastFanout(b *testing.B, n, historySize int) {
	h := New(&Options{
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		SendQueue:       benchQueue,
		MaxParticipants: n,
		HistorySize:     historySize,
	})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			b.Errorf("shutdown: %v", err)
		}
	}()

	conns := make([]*conn, n)
	for i := range conns {
		conns[i] = &conn{
			id:      h.nextID.Add(1),
			hub:     h,
			start:   time.Now(),
			send:    make(chan []byte, benchQueue),
			closing: make(chan struct{}),
		}
	}
	benchJoin(b, h, conns)

	sender, recipients := conns[0], conns[1:]
	// A fixed ring of broadcasts with a ~100-byte payload (a chat line),
	// never written once built.
	msgs := make([]protocol.Broadcast, 1024)
	for i := range msgs {
		p, _ := json.Marshal(map[string]any{"text": fmt.Sprintf("message %04d: the quick brown fox jumps over the lazy dog", i), "seq": i})
		msgs[i] = protocol.Broadcast{Event: "chat", Payload: p, To: protocol.ToAll}
	}

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
		wg.Add(1)
		go func() {
			defer wg.Done()
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
		}()
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()

	for r := range rounds {
		if r >= 2 {
			for _, p := range progress {
				<-p
			}
		}
		for i := r * benchChunk; i < min((r+1)*benchChunk, b.N); i++ {
			h.submit(inbound{c: sender, at: time.Now(), msg: protocol.Message{
				Type: protocol.TypeBroadcast, Payload: &msgs[i%len(msgs)]}})
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
	var kept, bytes int
	h.call(func() {
		r := h.rooms["bench"]
		kept, bytes = r.s.History.Len(), r.s.History.Bytes()
		if r.s.Offset != int64(b.N) {
			b.Errorf("session offset %d, want %d", r.s.Offset, b.N)
		}
	})
	if want := min(b.N, historySize); kept != want {
		b.Fatalf("history keeps %d events, want %d", kept, want)
	}
	for _, c := range conns {
		if c.gone || len(c.send) != 0 {
			b.Fatalf("conn %d: gone=%v, %d left in its queue", c.id, c.gone, len(c.send))
		}
	}
	elapsed := b.Elapsed()
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(deliveries), "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(deliveries), "allocs/delivery")
	if kept > 0 {
		b.ReportMetric(float64(bytes)/float64(kept), "B/event-kept")
	}
}
