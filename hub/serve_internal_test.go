package hub

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/protocol"
)

// serveInternal starts a hub with o (a discarding logger if none) behind an
// httptest server, over TLS if asked, and returns it with its WebSocket URL
// and the client that trusts it. Both stop when the test ends.
func serveInternal(t *testing.T, o *Options, tls bool) (*Hub, *httptest.Server, string) {
	t.Helper()
	if o == nil {
		o = &Options{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := New(o)
	var ts *httptest.Server
	if tls {
		ts = httptest.NewTLSServer(h.Handler())
	} else {
		ts = httptest.NewServer(h.Handler())
	}
	t.Cleanup(func() {
		h.Shutdown(context.Background())
		ts.Close()
	})
	return h, ts, "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

// dialJoined dials url and joins session, returning once session-joined
// came. The connection is closed when the test ends.
func dialJoined(ctx context.Context, t *testing.T, url string, opts *websocket.DialOptions, session string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	b, _ := protocol.Encode(protocol.TypeJoinSession, "j", protocol.JoinSession{SessionID: session, UserInfo: protocol.UserInfo{Name: "U"}})
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ws.Read(ctx); err != nil {
		t.Fatal(err)
	}
	return ws
}
