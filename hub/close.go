package hub

// Why and how the server closes a connection. kill and drop may be called
// on any goroutine (the reader, run, the pinger, timers, Shutdown); the
// close itself (the close frame and handshake, or the drop) is written by
// the writer (writePump), which kill starts.

import (
	"time"

	"github.com/sessionhub/sessionhub/protocol"
)

// closeWait is how long a close the server starts may take (writing the
// close frame to a peer that does not read, then waiting for its reply)
// before the TCP connection is dropped.
const closeWait = 5 * time.Second

// closeReason is why the server closes a connection: the close code and
// text the peer gets, and the label under which
// sessionhub_server_closes_total counts it.
type closeReason struct {
	code  protocol.StatusCode // 0: drop the TCP connection without a close frame
	text  string
	label string
}

// Every close the server starts. A frame over the size limit is closed by
// the WebSocket library itself with 1009 and counted as "too_big".
var (
	closePingTimeout  = closeReason{0, "ping timeout", "ping_timeout"}
	closeShutdown     = closeReason{protocol.CloseGoingAway, "server shutting down", "shutdown"}
	closeBinary       = closeReason{protocol.CloseUnsupported, "binary frames are not supported", "binary_frame"}
	closeRateAbuse    = closeReason{protocol.ClosePolicy, "rate limit exceeded", "rate_abuse"}
	closeInvalidUTF8  = closeReason{protocol.CloseInvalidData, "text frame is not valid UTF-8", "invalid_utf8"}
	closeHandshake    = closeReason{protocol.ClosePolicy, "no join-session within the handshake timeout", "handshake_timeout"}
	closeSlowConsumer = closeReason{protocol.CloseSlowConsumer, "slow consumer", "slow_consumer"}
	closeTokenExpired = closeReason{protocol.CloseTokenExpired, "token expired", "token_expired"}
	closeRemoved      = closeReason{protocol.CloseRemovedByAPI, "removed by the server", "removed"}
)

// closeTooBig is the label of the library's 1009 close.
const closeTooBig = "too_big"

// closeLabels are the labels of sessionhub_server_closes_total: every close
// above, and the library's 1009.
var closeLabels = []string{closePingTimeout.label, closeShutdown.label, closeBinary.label, closeRateAbuse.label,
	closeHandshake.label, closeTooBig, closeSlowConsumer.label, closeTokenExpired.label, closeRemoved.label,
	closeInvalidUTF8.label}

// kill asks the connection to close for why. It never blocks, and only the
// first call counts. A code of 0 drops the TCP connection without a close
// frame (a peer that stopped answering pings).
func (c *conn) kill(why closeReason) {
	c.closeOnce.Do(func() {
		c.closeWhy = why
		// Counted, and the timer set, before the writer can write the close
		// (a peer that sees it may look at the metrics; serve reads the timer).
		c.hub.metrics.closes.WithLabelValues(why.label).Inc()
		if why.code != 0 {
			// A writer stuck on a peer that does not read cannot write the
			// close frame: drop the connection after closeWait whatever
			// happens.
			c.closeTimer = time.AfterFunc(closeWait+time.Second, c.drop)
		}
		close(c.closing)
		c.startWriter() // the writer writes the close frame
		if why.code == 0 {
			c.drop() // unblocks a writer stuck on the dead peer
		}
	})
}

// drop ends the connection at once, without a close: for a WebSocket it
// closes the TCP connection even while a close handshake is in flight (the
// library's CloseNow would wait for that to time out).
func (c *conn) drop() {
	if c.tr != nil {
		c.tr.drop(c)
	}
}

// killed reports whether kill was called, and with which code.
func (c *conn) killed() (protocol.StatusCode, string, bool) {
	select {
	case <-c.closing:
		return c.closeWhy.code, c.closeWhy.text, true
	default:
		return 0, "", false
	}
}

// isClosing reports whether the connection is closing: kill was called, or
// serve ended reading (and closed closing, to stop the writer).
func (c *conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}
