package hub

// The flusher runs on a goroutine of its own, one per hub and only under
// Options.WriteDelay: New starts it, it ends when run has ended. run hands
// it work (flushDelayed); Shutdown waits for its end.

import (
	"sync"
	"sync/atomic"

	"github.com/sessionhub/sessionhub/hub/internal/wsfast"
)

// flusher writes the frames of the delay connections whose delay ended,
// one after another on one goroutine, without waiting on any peer: where
// a connection's own writer goroutine would be started for each (hundreds
// at once when their delays end together, each to write one frame, which
// then wait in the scheduler's queue ahead of the readers), one goroutine
// writes them in the order they were due. What it cannot write at once,
// it leaves to the connection's writer goroutine: a frame a full socket
// buffer took only the start of (wsfast.Out keeps the rest, and the
// writer finishes it first; likewise a frame of a connection without a
// socket to write to without waiting, a TLS one), a ping or a close that
// is due.
//
// While the flusher holds a connection it is the connection's writer: run
// set its writer state to writerRunning when it handed it over, so that no
// other writer starts, and the flusher sets it back or hands it on.
type flusher struct {
	// ready is signalled (capacity 1) when run has handed connections.
	ready chan struct{}
	done  chan struct{} // closed when the flusher has ended

	// Guarded by mu: run appends, the flusher takes.
	mu     sync.Mutex
	handed []*conn

	// The flusher goroutine's.
	taking []*conn // what it took from handed, being written
	try    *wsfast.TryWriter

	// written counts the frames the flusher wrote, handedOn those it left
	// to a writer goroutine to finish; for tests.
	written, handedOn atomic.Uint64
}

func newFlusher() *flusher {
	return &flusher{ready: make(chan struct{}, 1), done: make(chan struct{}), try: wsfast.NewTryWriter()}
}

// hand gives c, whose writer run has just taken (writerIdle to
// writerRunning), to the flusher. run calls it, under f.mu, for each
// connection of a flushDelayed, then wake once.
func (f *flusher) hand(c *conn) { f.handed = append(f.handed, c) }

// wake tells the flusher that connections were handed. run calls it; it
// never blocks.
func (f *flusher) wake() {
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// run is the flusher goroutine: it writes what it is handed until the
// hub's run loop has ended (h.done), and then hands what is left to the
// connections' writer goroutines.
func (f *flusher) run(h *Hub) {
	defer close(f.done)
	for {
		select {
		case <-f.ready:
		case <-h.done:
			// Nothing is handed after run's end: what was goes to the
			// writers, which a shutdown's close needs anyway.
			f.mu.Lock()
			left := f.handed
			f.handed = nil
			f.mu.Unlock()
			for _, c := range left {
				go c.writePump()
			}
			return
		}
		f.mu.Lock()
		f.taking, f.handed = f.handed, f.taking[:0]
		f.mu.Unlock()
		for i, c := range f.taking {
			f.write(c)
			f.taking[i] = nil
		}
	}
}

// write does for c what one turn of its writePump would: it writes the
// frame that is due without waiting on the peer, or hands c to a writer
// goroutine for what it cannot do that way.
func (f *flusher) write(c *conn) {
	if c.isClosing() || c.pingDue.Load() {
		go c.writePump()
		return
	}
	if c.flushDue.Swap(false) {
		select {
		case first := <-c.send:
			bp, out := c.frame(first)
			done, err := c.out.TryWrite(f.try, out)
			putFrame(bp) // what TryWrite left of out, it copied
			switch {
			case err != nil:
				c.writeFailed()
				return
			case !done:
				f.handedOn.Add(1)
				go c.writePump() // which finishes the frame first
				return
			}
			f.written.Add(1)
			c.wrote()
		default:
		}
	}
	if c.park() {
		go c.writePump() // what came meanwhile
	}
}
