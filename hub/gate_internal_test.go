package hub

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/sessionhub/sessionhub/protocol"
)

// gateRecorder is a cursorGate's forward that records what it forwards and
// when, on the bubble's fake clock.
type gateRecorder struct {
	mu    sync.Mutex
	lines []int
	at    []time.Time
}

func (r *gateRecorder) forward(m protocol.Message, _ time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, m.Payload.(*protocol.Cursor).Line)
	r.at = append(r.at, time.Now())
	return true
}

func (r *gateRecorder) snapshot() ([]int, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.lines...), append([]time.Time(nil), r.at...)
}

// cursorAt is a cursor-update to line.
func cursorAt(line int) protocol.Message {
	return protocol.Message{Type: protocol.TypeCursorUpdate, Payload: &protocol.Cursor{Line: line}}
}

func newTestGate(perSecond float64) (*cursorGate, *gateRecorder) {
	rec := &gateRecorder{}
	return &cursorGate{limiter: rate.NewLimiter(rate.Limit(perSecond), 1), forward: rec.forward}, rec
}

// Offers at 100 per second through a gate of 20 per second: at most ~20 are
// forwarded in any second, they never go back, and the last offered one is
// always forwarded once the window opens.
func TestCursorGateRateAndLast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, rec := newTestGate(20)
		defer g.stop()
		start := time.Now()
		const n = 200 // two seconds at 100 per second
		coalesced := 0
		for i := 1; i <= n; i++ {
			if g.offer(cursorAt(i), time.Now()) {
				coalesced++
			}
			time.Sleep(10 * time.Millisecond)
		}
		offeredLast := time.Now().Add(-10 * time.Millisecond)
		time.Sleep(time.Second) // the window opens again
		synctest.Wait()
		lines, at := rec.snapshot()
		if len(lines) == 0 || lines[len(lines)-1] != n {
			t.Fatalf("forwarded %v, want the last offered line %d last", lines, n)
		}
		if d := at[len(at)-1].Sub(offeredLast); d > 50*time.Millisecond+time.Millisecond {
			t.Errorf("the last update was forwarded %v after it was offered, want within one window (50ms)", d)
		}
		for i := 1; i < len(lines); i++ {
			if lines[i] <= lines[i-1] {
				t.Fatalf("forwarded out of order: %v", lines)
			}
		}
		// In every one-second window: the burst of 1 plus 20.
		for i := range at {
			k := 0
			for j := i; j < len(at) && at[j].Sub(at[i]) < time.Second; j++ {
				k++
			}
			if k > 21 {
				t.Fatalf("%d forwarded within a second from %v", k, at[i].Sub(start))
			}
		}
		if got := len(lines); got < 38 || got > 42 {
			t.Errorf("forwarded %d of %d offered over 2s at 20/s, want ~40", got, n)
		}
		if coalesced == 0 || coalesced+len(lines) != n {
			t.Errorf("coalesced %d + forwarded %d, want %d offered", coalesced, len(lines), n)
		}
	})
}

// After stop, neither a waiting update nor a new offer is forwarded.
func TestCursorGateStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, rec := newTestGate(20)
		g.offer(cursorAt(1), time.Now()) // forwarded at once
		g.offer(cursorAt(2), time.Now()) // waits ~50ms
		g.offer(cursorAt(3), time.Now()) // replaces it
		g.stop()                         // forwards 3 at once
		time.Sleep(time.Second)
		synctest.Wait()
		g.offer(cursorAt(4), time.Now())
		time.Sleep(time.Second)
		synctest.Wait()
		if lines, _ := rec.snapshot(); len(lines) != 2 || lines[0] != 1 || lines[1] != 3 {
			t.Errorf("forwarded %v, want [1 3]: stop delivers the waiting update, nothing comes after it", lines)
		}
	})
}

// stop racing the timer's flush: whichever wins, nothing is forwarded after
// stop returns.
func TestCursorGateStopRacesFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, rec := newTestGate(20)
		g.offer(cursorAt(1), time.Now())
		g.offer(cursorAt(2), time.Now())  // its timer fires at +50ms
		time.Sleep(50 * time.Millisecond) // the timer is due now
		g.stop()
		n, _ := rec.snapshot()
		time.Sleep(time.Second)
		synctest.Wait()
		if after, _ := rec.snapshot(); len(after) != len(n) {
			t.Errorf("forwarded %v after stop returned (had %v)", after, n)
		}
	})
}
