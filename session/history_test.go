package session_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/session"
)

// ev is the event of offset off published at t0+at, with a body of size
// bytes.
func ev(off int64, at time.Duration, size int) session.Event {
	return session.Event{Offset: off, At: t0.Add(at), To: "all", Data: make([]byte, size)}
}

// offsets lists the offsets of es.
func offsets(es []session.Event) []int64 {
	out := make([]int64, 0, len(es))
	for _, e := range es {
		out = append(out, e.Offset)
	}
	return out
}

// span is the offsets lo..hi, empty when hi < lo.
func span(lo, hi int64) []int64 {
	out := []int64{}
	for o := lo; o <= hi; o++ {
		out = append(out, o)
	}
	return out
}

// TestHistoryRetention appends events one second apart (offset i at i s,
// each of i bytes) and checks what is kept after a final trim.
func TestHistoryRetention(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		ttl       time.Duration
		n         int64         // events 1..n appended, offset i at i seconds
		trimAt    time.Duration // a Trim at t0+trimAt after the appends (0: none)
		wantKept  []int64
		wantBytes int
	}{
		{name: "under both bounds", size: 10, ttl: time.Hour, n: 5, wantKept: span(1, 5), wantBytes: 1 + 2 + 3 + 4 + 5},
		{name: "size bound", size: 3, ttl: time.Hour, n: 10, wantKept: span(8, 10), wantBytes: 8 + 9 + 10},
		{name: "size one", size: 1, ttl: time.Hour, n: 4, wantKept: span(4, 4), wantBytes: 4},
		// At the last append (10 s) events older than 4 s (At <= 6 s) are gone.
		{name: "ttl bound at append", size: 100, ttl: 4 * time.Second, n: 10, wantKept: span(7, 10), wantBytes: 7 + 8 + 9 + 10},
		// A later trim (sweep) drops what has aged since.
		{name: "ttl bound by trim", size: 100, ttl: 4 * time.Second, n: 10, trimAt: 12 * time.Second, wantKept: span(9, 10), wantBytes: 9 + 10},
		{name: "ttl trims everything", size: 100, ttl: 4 * time.Second, n: 10, trimAt: time.Minute, wantKept: span(1, 0), wantBytes: 0},
		{name: "both bounds, size tighter", size: 2, ttl: 4 * time.Second, n: 10, wantKept: span(9, 10), wantBytes: 9 + 10},
		{name: "exactly ttl old is dropped", size: 100, ttl: 3 * time.Second, n: 3, trimAt: 4 * time.Second, wantKept: span(2, 3), wantBytes: 2 + 3},
		{name: "zero size keeps nothing", size: 0, ttl: time.Hour, n: 5, wantKept: span(1, 0), wantBytes: 0},
		{name: "zero value keeps nothing", size: 0, ttl: 0, n: 5, wantKept: span(1, 0), wantBytes: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := session.History{Size: tc.size, TTL: tc.ttl}
			for i := int64(1); i <= tc.n; i++ {
				at := time.Duration(i) * time.Second
				h.Append(ev(i, at, int(i)), t0.Add(at))
				if h.Len() > max(tc.size, 0) {
					t.Fatalf("after append %d: Len %d > Size %d", i, h.Len(), tc.size)
				}
			}
			if tc.trimAt != 0 {
				h.Trim(t0.Add(tc.trimAt))
			}
			kept, ok := h.Since(0)
			if len(tc.wantKept) > 0 && tc.wantKept[0] > 1 {
				if ok {
					t.Errorf("Since(0) ok = true although offset 1 was dropped")
				}
				kept, ok = h.Since(tc.wantKept[0] - 1)
			}
			if len(tc.wantKept) == 0 {
				kept, ok = h.Since(tc.n)
			}
			if !ok || !slices.Equal(offsets(kept), tc.wantKept) {
				t.Errorf("kept %v (ok %v), want %v", offsets(kept), ok, tc.wantKept)
			}
			if h.Len() != len(tc.wantKept) || h.Bytes() != tc.wantBytes {
				t.Errorf("Len %d Bytes %d, want %d %d", h.Len(), h.Bytes(), len(tc.wantKept), tc.wantBytes)
			}
		})
	}
}

// TestHistorySince: a history of size 5 holding offsets 6..10 (1..5
// dropped) answers each offset.
func TestHistorySince(t *testing.T) {
	h := session.History{Size: 5, TTL: time.Hour}
	for i := int64(1); i <= 10; i++ {
		h.Append(ev(i, time.Duration(i)*time.Second, 1), t0.Add(time.Duration(i)*time.Second))
	}
	tests := []struct {
		offset int64
		want   []int64
		ok     bool
	}{
		{offset: 0, ok: false},                   // 1..5 are gone
		{offset: 3, ok: false},                   // 4 and 5 are gone
		{offset: 4, ok: false},                   // 5 is gone
		{offset: 5, want: span(6, 10), ok: true}, // exactly reaches back
		{offset: 6, want: span(7, 10), ok: true},
		{offset: 9, want: span(10, 10), ok: true},
		{offset: 10, want: span(1, 0), ok: true}, // nothing newer
		{offset: 11, want: span(1, 0), ok: true}, // History does not know the session's offset: the hub checks it
	}
	for _, tc := range tests {
		got, ok := h.Since(tc.offset)
		if ok != tc.ok {
			t.Errorf("Since(%d) ok = %v, want %v", tc.offset, ok, tc.ok)
			continue
		}
		if !ok {
			if len(got) != 0 {
				t.Errorf("Since(%d) not ok but returned %v", tc.offset, offsets(got))
			}
			continue
		}
		if !slices.Equal(offsets(got), tc.want) {
			t.Errorf("Since(%d) = %v, want %v", tc.offset, offsets(got), tc.want)
		}
	}

	// An empty history that never dropped anything reaches back to 0.
	var empty session.History
	empty.Size, empty.TTL = 10, time.Minute
	if got, ok := empty.Since(0); !ok || len(got) != 0 {
		t.Errorf("empty history: Since(0) = %v, %v; want [], true", offsets(got), ok)
	}
}

// TestHistoryGaps: offsets need not be consecutive (another session's
// events never share a history, but a history must not assume +1 steps).
func TestHistoryGaps(t *testing.T) {
	h := session.History{Size: 3, TTL: time.Hour}
	for _, o := range []int64{2, 5, 9, 14} {
		h.Append(ev(o, 0, 1), t0)
	}
	// 2 was dropped: recovery from below 2 fails, from 2 on succeeds.
	if _, ok := h.Since(1); ok {
		t.Error("Since(1) ok although 2 was dropped")
	}
	for off, want := range map[int64][]int64{2: {5, 9, 14}, 4: {5, 9, 14}, 5: {9, 14}, 10: {14}, 14: {}} {
		got, ok := h.Since(off)
		if !ok || !slices.Equal(offsets(got), want) {
			t.Errorf("Since(%d) = %v, %v; want %v, true", off, offsets(got), ok, want)
		}
	}
}

// TestHistoryAccounting follows Len and Bytes through a long run of
// appends and trims (which also compacts the backing array many times) and
// checks after every step that the kept events are the newest, in order,
// and that Bytes is their total size.
func TestHistoryAccounting(t *testing.T) {
	for _, size := range []int{1, 2, 7, 64} {
		t.Run(fmt.Sprint("size=", size), func(t *testing.T) {
			h := session.History{Size: size, TTL: 50 * time.Second}
			var data []session.Event // every event appended
			now := t0
			for i := int64(1); i <= 500; i++ {
				// Bursts and pauses: a pause of 60 s every 37 events lets TTL
				// empty the history.
				step := time.Second / 4
				if i%37 == 0 {
					step = 60 * time.Second
				}
				now = now.Add(step)
				e := session.Event{Offset: i, At: now, To: "all", Data: make([]byte, int(i%13)+1)}
				data = append(data, e)
				if i%37 == 0 {
					h.Trim(now) // the sweep runs during the pause
					if h.Len() != 0 || h.Bytes() != 0 {
						t.Fatalf("%d: after a pause over TTL: Len %d Bytes %d, want 0 0", i, h.Len(), h.Bytes())
					}
					if got, ok := h.Since(i - 1); !ok || len(got) != 0 {
						t.Fatalf("%d: empty history: Since(%d) = %v, %v; want [], true", i, i-1, offsets(got), ok)
					}
				}
				h.Append(e, now)

				// Expected: the newest events within size and TTL.
				var want []session.Event
				for j := len(data) - 1; j >= 0 && len(want) < size && now.Sub(data[j].At) < h.TTL; j-- {
					want = append([]session.Event{data[j]}, want...)
				}
				wantBytes := 0
				for _, w := range want {
					wantBytes += len(w.Data)
				}
				if h.Len() != len(want) || h.Bytes() != wantBytes {
					t.Fatalf("%d: Len %d Bytes %d, want %d %d", i, h.Len(), h.Bytes(), len(want), wantBytes)
				}
				from := want[0].Offset - 1
				got, ok := h.Since(from)
				if !ok || !slices.Equal(offsets(got), offsets(want)) {
					t.Fatalf("%d: Since(%d) = %v, %v; want %v", i, from, offsets(got), ok, offsets(want))
				}
				for k := range got {
					if len(got[k].Data) != len(want[k].Data) || !got[k].At.Equal(want[k].At) {
						t.Fatalf("%d: event %d changed after compaction", i, got[k].Offset)
					}
				}
				if from > 0 {
					if _, ok := h.Since(from - 1); ok {
						t.Fatalf("%d: Since(%d) ok although %d was dropped", i, from-1, from)
					}
				}
			}
		})
	}
}

// BenchmarkHistoryAppend is the steady state of a full history of the
// default size: each append drops the oldest event (and now and then
// compacts the array).
func BenchmarkHistoryAppend(b *testing.B) {
	h := session.History{Size: 1000, TTL: time.Hour}
	data := make([]byte, 200)
	for i := range int64(1000) {
		h.Append(session.Event{Offset: i + 1, At: t0, To: "all", Data: data}, t0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		off := int64(1001 + i)
		h.Append(session.Event{Offset: off, At: t0, To: "all", Data: data}, t0)
	}
	if h.Len() != 1000 {
		b.Fatalf("Len %d", h.Len())
	}
}

// BenchmarkHistorySince finds the events a recovery replays in a full
// history of 1000: the last few missed, or all of them.
func BenchmarkHistorySince(b *testing.B) {
	h := session.History{Size: 1000, TTL: time.Hour}
	for i := range int64(1500) {
		h.Append(session.Event{Offset: i + 1, At: t0, To: "all", Data: make([]byte, 8)}, t0)
	}
	for _, missed := range []int64{10, 1000} {
		b.Run(fmt.Sprint("missed=", missed), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				evs, ok := h.Since(1500 - missed)
				if !ok || int64(len(evs)) != missed {
					b.Fatalf("Since: %d, %v", len(evs), ok)
				}
			}
		})
	}
}

// The byte budgets: MaxBytes per history, and a Budget shared by several,
// whose oldest events (in the order they were appended, whichever history
// holds them) go first; a recovery from before a dropped event is
// incomplete, and a history's Clear gives its bytes back.
func TestHistoryByteBudgets(t *testing.T) {
	hist := func(b *session.Budget, maxBytes int) *session.History {
		return &session.History{Size: 100, TTL: time.Hour, MaxBytes: maxBytes, Budget: b}
	}
	t.Run("per history", func(t *testing.T) {
		h := hist(nil, 250)
		for i := int64(1); i <= 5; i++ {
			h.Append(ev(i, 0, 100), t0)
		}
		if got := offsets(mustSince(t, h, 3)); !slices.Equal(got, span(4, 5)) || h.Bytes() != 200 {
			t.Errorf("kept %v (%d bytes), want [4 5] (200)", got, h.Bytes())
		}
		if _, ok := h.Since(2); ok {
			t.Error("a recovery from 2 is complete, but 3 was dropped")
		}
	})
	t.Run("shared", func(t *testing.T) {
		b := &session.Budget{Max: 300}
		a, c := hist(b, 0), hist(b, 0)
		a.Append(ev(1, 0, 100), t0)
		c.Append(ev(1, 0, 100), t0)
		a.Append(ev(2, 0, 100), t0)
		c.Append(ev(2, 0, 100), t0) // 400 bytes: a's 1, the oldest, goes
		if got := offsets(mustSince(t, a, 1)); !slices.Equal(got, span(2, 2)) {
			t.Errorf("a keeps %v, want [2]", got)
		}
		if got := offsets(mustSince(t, c, 0)); !slices.Equal(got, span(1, 2)) {
			t.Errorf("c keeps %v, want [1 2]", got)
		}
		if _, ok := a.Since(0); ok {
			t.Error("a's recovery from 0 is complete")
		}
		if b.Used() != 300 {
			t.Errorf("used %d, want 300", b.Used())
		}
		// A history that trims by itself, and one that is cleared, give
		// their bytes back; what their entries pointed to is skipped.
		a.Clear()
		if b.Used() != 200 || a.Bytes() != 0 {
			t.Errorf("after Clear: used %d, a %d", b.Used(), a.Bytes())
		}
		c.Append(ev(3, 0, 100), t0)
		c.Append(ev(4, 0, 50), t0) // 350: c's 1 goes, not a's gone ones
		if got := offsets(mustSince(t, c, 1)); !slices.Equal(got, span(2, 4)) || b.Used() != 250 {
			t.Errorf("c keeps %v, used %d; want [2 3 4], 250", got, b.Used())
		}
	})
	t.Run("an event over the whole budget", func(t *testing.T) {
		b := &session.Budget{Max: 50}
		h := hist(b, 0)
		h.Append(ev(1, 0, 100), t0)
		if h.Len() != 0 || b.Used() != 0 {
			t.Errorf("kept %d events, %d bytes", h.Len(), b.Used())
		}
		if _, ok := h.Since(0); ok {
			t.Error("a recovery from 0 is complete")
		}
	})
}

// mustSince is h.Since(off), which must be complete.
func mustSince(t *testing.T, h *session.History, off int64) []session.Event {
	t.Helper()
	es, ok := h.Since(off)
	if !ok {
		t.Fatalf("recovery from %d incomplete", off)
	}
	return es
}
