package hub

// The writer runs on a goroutine of its own, which startWriter starts
// when something is queued (or a ping or the close is due) and none runs,
// and which ends when there is nothing left to write: an idle connection
// holds no writer goroutine. At most one runs at a time. startWriter
// itself may be called on any goroutine (run, the pinger, the closer).
// Under Options.WriteDelay the hub's flusher (flusher.go) is a delay
// connection's writer for the frame that is due when its delay ends, and
// starts this goroutine only for what it cannot write at once; frame and
// putFrame run on both.

import (
	"sync"

	"github.com/sessionhub/sessionhub/hub/internal/wsfast"
)

const (
	// sendChanSize is the capacity of a connection's send channel: what the
	// writer can take without the hub keeping a backlog for it. The rest of
	// the send queue (Options.SendQueue) is a backlog the hub allocates only
	// while a connection falls behind, so that an idle connection holds
	// sendChanSize slots, not SendQueue.
	sendChanSize = 8

	// delayedChanSize is the send channel of a connection under
	// Options.WriteDelay: what one frame can carry before the writer writes
	// without waiting for the delay to end.
	delayedChanSize = 32

	// maxPooledFrame is the largest batch buffer returned to the pool
	// (framePool, and the readers' readPool).
	maxPooledFrame = 16 << 10
)

// framePool holds the buffers in which writers join a batch into one frame:
// a writer holds one only while it writes.
var framePool = sync.Pool{New: func() any { return new([]byte) }}

// The writer's states (conn.writer).
const (
	writerIdle    = iota // no writer goroutine: nothing to write
	writerRunning        // a writePump is running
	writerDone           // the connection is closed (or written by a test)
)

// startWriter makes sure a writePump runs for what was just queued on send
// or for the close that was just asked: an idle connection holds no writer
// goroutine. Any goroutine may call it.
func (c *conn) startWriter() {
	// Load first: on the hot path a writer usually runs already, and a
	// failed CompareAndSwap still takes the cache line.
	if c.writer.Load() == writerIdle && c.writer.CompareAndSwap(writerIdle, writerRunning) {
		go c.writePump()
	}
}

// writePump writes what the hub queued and returns when send is empty (a
// delay connection: once it has written what was due), after finishing a
// frame the flusher began; it closes the
// connection when asked to, after writing what is queued when the server
// shuts down. At most one runs at a time (startWriter), so that messages go
// out in order.
//
// It writes through the transport with no deadline: a write stuck on a
// peer that does not read is ended by dropping the connection (ping
// timeout, or the timer of kill).
func (c *conn) writePump() {
	// A frame the flusher began (flusher.go) is finished first.
	if c.out != nil && c.out.Unfinished() {
		if err := c.out.Finish(); err != nil {
			c.writeFailed()
			return
		}
		c.wrote()
	}
	for {
		select {
		case <-c.closing:
			if c.closeWhy.code == 0 {
				c.drop()
			} else {
				if c.closeWhy == closeShutdown {
					c.flushQueued()
				}
				c.tr.close(c, c.closeWhy)
			}
			c.writerEnded()
			return
		default:
		}
		if c.pingDue.Swap(false) {
			if err := c.tr.ping(c); err != nil {
				c.writeFailed()
				return
			}
		}
		if !c.delay || c.flushDue.Swap(false) {
			select {
			case b := <-c.send:
				if err := c.tr.write(c, b); err != nil {
					c.writeFailed()
					return
				}
				c.wrote()
				continue
			default:
			}
		}
		if !c.park() {
			return
		}
	}
}

// wrote records, on the writer, that a frame went out (Hub.delivered), and
// tells run when the frame emptied the channel while run holds a backlog
// (Hub.wake).
func (c *conn) wrote() {
	c.hub.delivered(c)
	if len(c.send) == 0 && c.backlogged.Load() {
		c.hub.wake(c)
	}
}

// writeFailed ends the writer after a failed write: the connection is
// dropped, and no writer runs again.
func (c *conn) writeFailed() {
	c.drop()
	c.writerEnded()
}

// park ends the writer's turn when it has nothing (due) to write. Whatever
// is queued or asked after the writer's checks starts a writer again; park
// reports whether that raced with it and this writer must go on instead.
func (c *conn) park() (goOn bool) {
	c.writer.Store(writerIdle)
	return (c.hasWork() || c.isClosing() || c.pingDue.Load()) && c.writer.CompareAndSwap(writerIdle, writerRunning)
}

// hasWork reports whether the writer has messages to write now: any queued
// ones, or, on a delay connection, those whose delay run ended.
func (c *conn) hasWork() bool {
	if c.delay {
		return c.flushDue.Load()
	}
	return len(c.send) > 0
}

// flushQueued writes what waits on send, before the close of a shutdown.
// The backlog run may hold is not written.
func (c *conn) flushQueued() {
	for {
		select {
		case b := <-c.send:
			if c.tr.write(c, b) != nil {
				return
			}
		default:
			return
		}
	}
}

// writerEnded records that no writer will run again, and tells serve.
func (c *conn) writerEnded() {
	c.writer.Store(writerDone)
	close(c.writersDone)
}

// write writes first as one text frame, with what else is queued when the
// peer takes batches (see frame), in one Write.
func (c *conn) write(first []byte) error {
	bp, out := c.frame(first)
	_, err := c.out.Write(out)
	putFrame(bp)
	return err
}

// frame builds first as one text frame, with what else is queued when the
// peer takes batches (protocol.BatchSubprotocol: the messages separated by
// '\n'), in a buffer from framePool: out is what to write, bp the buffer
// to give back (putFrame) once it is written. The writer runs it.
func (c *conn) frame(first []byte) (bp *[]byte, out []byte) {
	bp = framePool.Get().(*[]byte)
	var frame []byte
	if c.batch {
		frame = append(wsfast.ReserveHeader(*bp), first...)
		if len(c.send) > 0 {
			for n := len(c.send); n > 0; n-- {
				frame = append(frame, '\n')
				frame = append(frame, <-c.send...)
			}
			c.hub.metrics.batchedFrames.Inc()
		}
		out = wsfast.FinishFrame(frame)
	} else {
		// One message per frame, but the frames already queued behind
		// first leave in the same Write: a burst of replies (a flood's
		// rate_limited answers) costs one system call, not one each.
		frame = wsfast.AppendFrame((*bp)[:0], first)
		for n := len(c.send); n > 0 && len(frame) < maxPooledFrame; n-- {
			frame = wsfast.AppendFrame(frame, <-c.send)
		}
		out = frame
	}
	*bp = frame
	return bp, out
}

// putFrame gives a frame's buffer back to framePool, unless it grew past
// maxPooledFrame.
func putFrame(bp *[]byte) {
	if cap(*bp) <= maxPooledFrame {
		framePool.Put(bp)
	}
}
