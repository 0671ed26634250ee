package hub

import (
	"testing"
	"time"
)

// BenchmarkDeliverySample measures what sessionhub_delivery_seconds adds
// per frame: deliver's stamp (a load and a store on the connection) and the
// writer's take and observation (a swap, a clock reading and a histogram
// observation). allocs/op must be 0.
func BenchmarkDeliverySample(b *testing.B) {
	h := &Hub{metrics: newMetrics(), started: time.Now()}
	c := &conn{hub: h}
	b.ReportAllocs()
	for b.Loop() {
		h.eventMark = h.markOf(time.Now())
		if c.mark.Load() == 0 {
			c.mark.Store(h.eventMark)
		}
		h.delivered(c)
	}
}

// TestDeliverySampleAllocs fails if taking a delivery sample allocates.
func TestDeliverySampleAllocs(t *testing.T) {
	h := &Hub{metrics: newMetrics(), started: time.Now()}
	c := &conn{hub: h}
	h.eventMark = h.markOf(time.Now())
	if n := testing.AllocsPerRun(1000, func() {
		c.mark.Store(h.eventMark)
		h.delivered(c)
	}); n != 0 {
		t.Errorf("a delivery sample allocates %v times", n)
	}
	if c.mark.Load() != 0 {
		t.Error("delivered left the mark")
	}
}
