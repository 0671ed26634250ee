package hub

// The seam between a connection (conn.go) and how its bytes come and go.
// Each method of transport says which of the connection's goroutines runs
// it: read on the reader, write, ping and close on the writer, drop on
// any.

import (
	"context"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/hub/internal/wsfast"
)

// transport is what differs between the kinds of connection (a WebSocket,
// an SSE stream with its sends over POST): how the client's messages come
// in, and how the server's messages, pings and closes go out. Everything
// else (the send queue and its writer, the ping timer, rate limits, the
// handshake timeout, token expiry, departures) is conn's and the same for
// every kind, so that a stream behaves as a WebSocket does.
type transport interface {
	// name is the transport's name in metrics and logs: "websocket" or
	// "sse".
	name() string
	// read runs on the connection's serving goroutine from its start: it
	// hands the client's messages to c.handle until the connection ends,
	// and reports how it ended (clean: the client closed it, and its user
	// leaves at once).
	read(ctx context.Context, c *conn) readEnd
	// write runs on the writer: it writes first and, if the transport
	// takes several at once, what else is queued on c.send, and returns
	// once they are on their way.
	write(c *conn, first []byte) error
	// ping runs on the writer: it writes a ping. A transport whose peer
	// cannot answer calls c.pong itself once the ping went out.
	ping(c *conn) error
	// close runs on the writer: it tells the client why the server closes
	// the connection (at most closeWait) and ends it.
	close(c *conn, why closeReason)
	// drop ends the connection at once with no close, unblocking a writer
	// stuck on a peer that does not read. Any goroutine may call it, more
	// than once.
	drop(c *conn)
}

// wsTransport is a WebSocket: the hub's own data frames and pings (the
// fast path, hub/internal/wsfast) on the hijacked connection, the
// library's reader and close handshake. Its state is the conn's WebSocket
// fields.
type wsTransport struct{}

func (wsTransport) name() string { return "websocket" }

func (wsTransport) read(ctx context.Context, c *conn) readEnd { return c.readPump(ctx) }

func (wsTransport) write(c *conn, first []byte) error { return c.write(first) }

func (wsTransport) ping(c *conn) error {
	return wsfast.WritePing(c.out)
}

func (wsTransport) close(c *conn, why closeReason) {
	// The close handshake reads the peer's reply from the read buffer the
	// reader peeks at between messages.
	c.wire.Lock()
	c.ws.Close(websocket.StatusCode(why.code), why.text)
	c.wire.Unlock()
}

func (wsTransport) drop(c *conn) {
	if c.out != nil {
		c.out.Close()
	}
	if c.ws != nil {
		c.ws.CloseNow()
	}
}
