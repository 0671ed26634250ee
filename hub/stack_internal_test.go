//go:build !race

package hub

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// An idle connection's goroutine waits on the smallest stack (2 KiB): what
// serve keeps below the wait fits it. When serve's frame held its whole
// teardown, the wait took more than a 2 KiB stack holds, and every idle
// connection's stack grew to 4 KiB (2 KiB per connection of hubload's row
// (c)). It needs a build without the race detector, whose larger stack
// guard gives every goroutine 4 KiB: under -race, stack_race_internal_test.go
// runs it in such a build.
func TestIdleConnectionStackFits2KiB(t *testing.T) {
	const n = 200
	_, _, url := serveInternal(t, nil, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	stacks := func() (inuse uint64, goroutines int) {
		runtime.GC() // shrinks the stacks that can shrink, frees the stacks of ended goroutines
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.StackInuse, runtime.NumGoroutine()
	}
	inuse0, g0 := stacks()
	for i := range n {
		dialJoined(ctx, t, url, nil, fmt.Sprint("s", i)) // one session each: no presence events
	}
	// Every reader waits in readPump, none in readFrames, no writer runs.
	for deadline := time.Now().Add(10 * time.Second); ; {
		buf := make([]byte, 4<<20)
		all := string(buf[:runtime.Stack(buf, true)])
		waiting := strings.Count(all, "hub.(*conn).readPump(")
		busy := strings.Count(all, "hub.(*conn).readFrames(") + strings.Count(all, "hub.(*conn).writePump(")
		if waiting == n && busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d readers waiting, %d reading or writing; want %d and 0", waiting, busy, n)
		}
		time.Sleep(time.Millisecond) // polling the goroutines: no event says a reader waits
	}
	inuse, g := stacks()
	if g-g0 < n {
		t.Fatalf("%d goroutines more for %d connections, want at least one each", g-g0, n)
	}
	if per := (inuse - inuse0) / n; per > 3<<10 {
		t.Errorf("%d bytes of stack per idle connection (%d goroutines more), want 2 KiB (at most 3 KiB)", per, g-g0)
	}
}
