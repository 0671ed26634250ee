package hub_test

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// lgRecords is a slog.Handler that keeps every record's message and
// attributes, for the tests to look at.
type lgRecords struct {
	mu      sync.Mutex
	records []lgRecord
	added   chan struct{} // signalled (without blocking) on every record
}

type lgRecord struct {
	msg   string
	attrs map[string]any
}

func newLgRecords() *lgRecords { return &lgRecords{added: make(chan struct{}, 1)} }

func (l *lgRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *lgRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *lgRecords) WithGroup(string) slog.Handler            { return l }

func (l *lgRecords) Handle(_ context.Context, r slog.Record) error {
	rec := lgRecord{msg: r.Message, attrs: map[string]any{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Resolve().Any()
		return true
	})
	l.mu.Lock()
	l.records = append(l.records, rec)
	l.mu.Unlock()
	select {
	case l.added <- struct{}{}:
	default:
	}
	return nil
}

// await returns the first record with msg for which ok holds, waiting for
// it (on the handler's signal) until the deadline.
func (l *lgRecords) await(t *testing.T, msg string, ok func(lgRecord) bool) lgRecord {
	t.Helper()
	deadline := time.After(wait)
	for {
		l.mu.Lock()
		for _, r := range l.records {
			if r.msg == msg && ok(r) {
				l.mu.Unlock()
				return r
			}
		}
		l.mu.Unlock()
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("no %q log record as wanted within the deadline", msg)
		}
	}
}

// Every connect and disconnect log line carries the session and user when
// they are known, and the disconnect line the close code and reason: "why
// did this learner drop?" is one grep.
func TestConnectDisconnectLogLines(t *testing.T) {
	logs := newLgRecords()
	s := startServer(t, &hub.Options{
		JWTSecret:        auSecret,
		APIKey:           apiKey,
		HandshakeTimeout: 300 * time.Millisecond,
		Logger:           slog.New(logs),
	})
	tok := func(sub string) string { return auToken(t, auClaims(sub, "N "+sub, "", nil, time.Hour)) }
	conn := func(r lgRecord) int64 { return int64(r.attrs["conn"].(uint64)) }

	tests := []struct {
		name          string
		user          string
		run           func(p *peer)
		session       string // "" for none in the log line
		code          protocol.StatusCode
		reason        string
		clean, joined bool
	}{
		{"closes cleanly after a join", "u-clean", func(p *peer) {
			p.ws.Close(websocket.StatusNormalClosure, "bye")
		}, "s-clean", protocol.CloseNormal, "client closed", true, true},
		{"drops its TCP connection", "u-drop", func(p *peer) {
			p.ws.CloseNow()
		}, "s-drop", protocol.CloseAbnormal, "connection lost", false, true},
		{"is removed by the API", "u-removed", func(p *peer) {
			if status, _, b := apiDo(t, s, "DELETE", "/api/sessions/s-removed/participants/u-removed", apiKey, nil); status != http.StatusNoContent {
				t.Fatalf("DELETE: %d %s", status, b)
			}
			p.closed()
		}, "s-removed", protocol.CloseRemovedByAPI, "removed by the server", false, true},
		{"never joins", "u-mute", func(p *peer) {
			p.closed()
		}, "", protocol.ClosePolicy, "no join-session within the handshake timeout", false, false},
		{"sends a binary frame", "u-binary", func(p *peer) {
			p.ws.Write(context.Background(), websocket.MessageBinary, []byte{1})
			p.closed()
		}, "s-binary", protocol.CloseUnsupported, "binary frames are not supported", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := auDial(t, s, tok(tc.user))
			connect := logs.await(t, "connect", func(r lgRecord) bool { return r.attrs["user"] == tc.user })
			if _, ok := connect.attrs["session"]; ok {
				t.Errorf("connect line %v has a session before any join", connect.attrs)
			}
			if tc.joined {
				p.join(tc.session, "", "", "")
			}
			tc.run(p)
			r := logs.await(t, "disconnect", func(r lgRecord) bool { return conn(r) == conn(connect) })
			want := map[string]any{"user": tc.user, "code": int64(tc.code), "reason": tc.reason, "clean": tc.clean}
			if tc.session != "" {
				want["session"] = tc.session
			}
			for k, v := range want {
				if r.attrs[k] != v {
					t.Errorf("disconnect %s = %v (%T), want %v; line %v", k, r.attrs[k], r.attrs[k], v, r.attrs)
				}
			}
			if _, ok := r.attrs["session"]; ok && tc.session == "" {
				t.Errorf("disconnect line %v has a session", r.attrs)
			}
		})
	}

	// Open mode: the user is known from the join only, and a leave-session
	// before the end takes the session out of the line.
	open := newLgRecords()
	so := startServer(t, &hub.Options{Logger: slog.New(open)})
	p := dial(t, so, nil)
	connect := open.await(t, "connect", func(lgRecord) bool { return true })
	if _, ok := connect.attrs["user"]; ok {
		t.Errorf("open mode's connect line %v has a user", connect.attrs)
	}
	p.join("s-open", "u-open", "U", "")
	p.send(protocol.TypeLeaveSession, nil, "l")
	p.expect(protocol.TypeSessionLeft, nil)
	p.ws.Close(websocket.StatusGoingAway, "tab closed")
	r := open.await(t, "disconnect", func(r lgRecord) bool { return conn(r) == conn(connect) })
	if _, ok := r.attrs["session"]; ok || r.attrs["code"] != int64(protocol.CloseGoingAway) {
		t.Errorf("disconnect after a leave: %v, want no session and code 1001", r.attrs)
	}
}
