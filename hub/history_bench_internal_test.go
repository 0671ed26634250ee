package hub

import (
	"encoding/json"
	"fmt"
	"testing"

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
	// A fixed ring of broadcasts with a ~100-byte payload (a chat line),
	// never written once built.
	msgs := make([]protocol.Broadcast, 1024)
	for i := range msgs {
		p, _ := json.Marshal(map[string]any{"text": fmt.Sprintf("message %04d: the quick brown fox jumps over the lazy dog", i), "seq": i})
		msgs[i] = protocol.Broadcast{Event: "chat", Payload: p, To: protocol.ToAll}
	}
	var kept, bytes int
	benchRoom(b, &Options{HistorySize: historySize}, n, func(i int) protocol.Message {
		return protocol.Message{Type: protocol.TypeBroadcast, Payload: &msgs[i%len(msgs)]}
	}, func(h *Hub) {
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
	})
	if kept > 0 {
		b.ReportMetric(float64(bytes)/float64(kept), "B/event-kept")
	}
}
