package hub

// The pinger runs on the ping timer's goroutine (ping), which asks the
// writer to send each ping (pingDue); pong runs where the pong is seen: on
// the reader (a pong wsfast's TakePong took, or the library's
// OnPongReceived) or, for an SSE stream, on the writer once its ping went
// out. startPings and stopPings run on serve. pingMu makes them take
// turns.

import "time"

// startPings arms the ping timer, on serve before reading: the first ping
// goes Options.PingInterval after the upgrade.
func (c *conn) startPings() {
	c.pingMu.Lock()
	c.pingTimer = time.AfterFunc(c.hub.opts.PingInterval, c.ping)
	c.pingMu.Unlock()
}

// ping runs on pingTimer: it has the writer send a ping every
// Options.PingInterval, and closes a connection whose pong does not come
// within Options.PingTimeout (an SSE stream's pong is its ping's write
// going through). No goroutine waits for the pong: pong re-arms the timer.
func (c *conn) ping() {
	opts := &c.hub.opts
	c.pingMu.Lock()
	if c.pingOff {
		c.pingMu.Unlock()
		return
	}
	if c.pingOut {
		c.pingMu.Unlock()
		c.kill(closePingTimeout)
		return
	}
	c.pingOut = true
	c.pingTimer.Reset(opts.PingTimeout)
	c.pingMu.Unlock()
	c.pingDue.Store(true)
	c.startWriter()
}

// pong records the peer's pong: the next ping goes Options.PingInterval
// after it.
func (c *conn) pong() {
	c.pongs.Add(1)
	c.pingMu.Lock()
	if c.pingOut && !c.pingOff {
		c.pingOut = false
		c.pingTimer.Reset(c.hub.opts.PingInterval)
	}
	c.pingMu.Unlock()
}

// stopPings stops the pings for good, even one that is in flight.
func (c *conn) stopPings() {
	c.pingMu.Lock()
	c.pingOff = true
	c.pingTimer.Stop()
	c.pingMu.Unlock()
}
