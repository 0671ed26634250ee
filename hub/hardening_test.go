package hub_test

// The v1.1 hardening (contract: "v1.1 hardening"), one regression test per
// finding of the security review (issue 13) over real WebSockets: a frame
// that is not UTF-8 ends its sender with 1007 and reaches nobody; control
// characters in identifiers are bad_request; payloads keep their size; the
// history has byte budgets; joins have a rate; sessions have a maximum.
// (Pings: pingflood_internal_test.go; HTTP: hardening_http_test.go; the
// cluster: hardening_cluster_test.go.)

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/protocol"
)

// A broadcast whose payload is not UTF-8 (finding 1: browsers fail their
// connection on it, and got it again in every replay) closes its sender
// with 1007; the others stay connected and receive nothing, now or in a
// recovery. The same for a ping, and for a bad byte outside the payload.
func TestHardeningInvalidUTF8(t *testing.T) {
	s := startServer(t, recoveryOpts())
	other := dial(t, s, nil)
	sj := other.joinRecover("u8", "other", "", nil)
	frames := []struct{ name, frame string }{
		{"broadcast payload", `{"type":"broadcast","data":{"event":"x","payload":"` + "\xff\xfe" + `"}}`},
		{"broadcast payload in an object", `{"type":"broadcast","data":{"event":"x","payload":{"k":"a` + "\xc3" + `"}},"ref":"r"}`},
		{"event", `{"type":"broadcast","data":{"event":"` + "\xed\xa0\x80" + `"}}`},
		{"ping data", `{"type":"ping","data":{"k":"` + "\xff" + `"}}`},
		{"cursor file", `{"type":"cursor-update","data":{"line":1,"column":2,"file":"` + "\xff" + `"}}`},
		{"join name", `{"type":"join-session","data":{"sessionId":"u8","userInfo":{"name":"` + "\xfe" + `"}}}`},
	}
	for _, tc := range frames {
		t.Run(tc.name, func(t *testing.T) {
			p := dial(t, s, nil)
			p.joinRecover("u8", "mallory", "", nil)
			p.sendRaw([]byte(tc.frame))
			if code := p.closed(); code != websocket.StatusCode(protocol.CloseInvalidData) {
				t.Errorf("close %v, want 1007", code)
			}
			// The other participant is connected and got nothing but the
			// join and leave of mallory.
			for _, m := range other.collect() {
				if m.Type != protocol.TypeUserJoined && m.Type != protocol.TypeUserLeft {
					t.Errorf("the other participant got %s %s", m.Type, m.Data)
				}
			}
		})
	}
	// Nothing was stored: a recovery from the start replays nothing.
	late := dial(t, s, nil)
	rj := late.joinRecover("u8", "late", "", &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
	if !rj.Recovered || rj.Offset != 0 {
		t.Errorf("recovery after the bad frames: recovered %v, offset %d; want true, 0", rj.Recovered, rj.Offset)
	}
	if evs := late.queuedBroadcasts(); len(evs) != 0 {
		t.Errorf("replayed %v", evs)
	}
}

// Identifiers with a control character (finding 2: a NUL userId made a
// cluster node act as if Redis were down) are bad_request, at decode.
func TestHardeningControlCharacters(t *testing.T) {
	s := startServer(t, recoveryOpts())
	p := dial(t, s, nil)
	p.joinRecover("cc", "alice", "", nil)
	cases := []struct {
		name string
		typ  string
		data string
	}{
		{"NUL in userId", protocol.TypeJoinSession, `{"sessionId":"cc2","userInfo":{"userId":"x\u0000y","name":"N"}}`},
		{"newline in userId", protocol.TypeJoinSession, `{"sessionId":"cc2","userInfo":{"userId":"x\ny","name":"N"}}`},
		{"DEL in userId", protocol.TypeJoinSession, `{"sessionId":"cc2","userInfo":{"userId":"x\u007fy","name":"N"}}`},
		{"ESC in name", protocol.TypeJoinSession, `{"sessionId":"cc2","userInfo":{"name":"\u001b[2J"}}`},
		{"tab in color", protocol.TypeJoinSession, `{"sessionId":"cc2","userInfo":{"name":"N","color":"red\t"}}`},
		{"NUL in recover epoch", protocol.TypeJoinSession, `{"sessionId":"cc2","userInfo":{"name":"N"},"recover":{"epoch":"\u0000","offset":0}}`},
		{"NUL in event", protocol.TypeBroadcast, `{"event":"a\u0000"}`},
		{"CR in to", protocol.TypeBroadcast, `{"event":"a","to":"bob\r"}`},
		{"NUL in file", protocol.TypeCursorUpdate, `{"line":1,"column":1,"file":"a\u0000.go"}`},
		{"DEL in file, fast shape", protocol.TypeCursorUpdate, "{\"line\":1,\"column\":1,\"file\":\"a\x7f.go\"}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p.sendRaw([]byte(`{"type":"` + tc.typ + `","data":` + tc.data + `,"ref":"cc"}`))
			p.expectError(protocol.CodeBadRequest, "cc")
		})
	}
	// Still alice in cc, alone.
	if sj := p.joinRecover("cc", "alice", "", nil); !sameIDs(sj.Participants, "alice") {
		t.Errorf("participants %v", ids(sj.Participants))
	}
}

// A payload reaches the others at the size it was sent (finding 3: a
// 16 KB frame of '<' reached others as 98 KB, and was stored so).
func TestHardeningPayloadSize(t *testing.T) {
	s := startServer(t, recoveryOpts())
	a, b := dial(t, s, nil), dial(t, s, nil)
	a.joinRecover("sz", "a", "", nil)
	b.joinRecover("sz", "b", "", nil)
	a.collect()
	payload := strings.Repeat("<>&", 4000)
	frame := `{"type":"broadcast","data":{"event":"e","payload":"` + payload + `"},"ref":"r"}`
	a.sendRaw([]byte(frame))
	a.skipUntil(protocol.TypeAck, nil)
	m := b.skipUntil(protocol.TypeBroadcast, nil)
	if strings.Contains(string(m.Data), `\u003c`) || len(m.Data) > len(frame)+100 {
		t.Errorf("the broadcast reached b as %d bytes of data (sent a frame of %d)", len(m.Data), len(frame))
	}
	var ev protocol.BroadcastEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil || string(ev.Payload) != `"`+payload+`"` {
		t.Errorf("payload changed: %v", err)
	}
	// A recovery replays it at that size too: it is stored so.
	sj := dial(t, s, nil).joinRecover("sz", "late", "", nil)
	rec := dial(t, s, nil)
	rec.joinRecover("sz", "rec", "", &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
	r := rec.next()
	if r.Type != protocol.TypeBroadcast || len(r.Data) > len(frame)+100 {
		t.Errorf("replayed %s of %d bytes (sent a frame of %d)", r.Type, len(r.Data), len(frame))
	}
}

// The history has byte budgets (finding 3): per session and for the
// process, the oldest events first, and a recovery that needs a trimmed
// event gets recovered: false.
func TestHardeningHistoryBytes(t *testing.T) {
	// Each event below is about 1 100 bytes encoded.
	payload := map[string]any{"p": strings.Repeat("x", 1000)}
	send := func(p *peer, ref string) int64 {
		p.t.Helper()
		p.send(protocol.TypeBroadcast, map[string]any{"event": "e", "payload": payload}, ref)
		var ack protocol.Ack
		p.skipUntil(protocol.TypeAck, &ack)
		return ack.Offset
	}
	recoverFrom := func(t *testing.T, s *server, session, epoch string, off int64) (bool, []int64) {
		t.Helper()
		p := dial(t, s, nil)
		sj := p.joinRecover(session, "late-"+session, "", &protocol.Recover{Epoch: epoch, Offset: off})
		var got []int64
		for _, ev := range p.queuedBroadcasts() {
			got = append(got, ev.Offset)
		}
		p.ws.Close(websocket.StatusNormalClosure, "")
		return sj.Recovered, got
	}

	t.Run("per session", func(t *testing.T) {
		o := recoveryOpts()
		o.HistoryBytes = 2500 // two events
		s := startServer(t, o)
		a := dial(t, s, nil)
		sj := a.joinRecover("hb", "a", "", nil)
		for i := range 5 {
			send(a, "r"+string(rune('0'+i)))
		}
		if ok, got := recoverFrom(t, s, "hb", sj.Epoch, 3); !ok || len(got) != 2 || got[0] != 4 || got[1] != 5 {
			t.Errorf("recover from 3: recovered %v, replay %v; want true, [4 5]", ok, got)
		}
		if ok, got := recoverFrom(t, s, "hb", sj.Epoch, 2); ok || len(got) != 0 {
			t.Errorf("recover from 2: recovered %v, replay %v; want false, none", ok, got)
		}
	})
	t.Run("total", func(t *testing.T) {
		o := recoveryOpts()
		o.HistoryTotalBytes = 2500 // two events in all sessions
		s := startServer(t, o)
		a, b := dial(t, s, nil), dial(t, s, nil)
		sa := a.joinRecover("ta", "a", "", nil)
		sb := b.joinRecover("tb", "b", "", nil)
		send(a, "a1")
		send(a, "a2")
		send(b, "b1") // the oldest of all, a's first, goes
		if ok, got := recoverFrom(t, s, "ta", sa.Epoch, 0); ok || len(got) != 0 {
			t.Errorf("ta from 0: recovered %v, replay %v; want false", ok, got)
		}
		if ok, got := recoverFrom(t, s, "ta", sa.Epoch, 1); !ok || len(got) != 1 || got[0] != 2 {
			t.Errorf("ta from 1: recovered %v, replay %v; want true, [2]", ok, got)
		}
		if ok, got := recoverFrom(t, s, "tb", sb.Epoch, 0); !ok || len(got) != 1 {
			t.Errorf("tb from 0: recovered %v, replay %v; want true, [1]", ok, got)
		}
	})
}

// join-session and leave-session have a rate of their own (finding 4:
// 40 joins alternating two userIds sent 447 MB to a session of 200).
func TestHardeningJoinRate(t *testing.T) {
	o := recoveryOpts()
	o.JoinRate, o.JoinBurst = 0.001, 3 // no token comes back during the test
	s := startServer(t, o)
	p := dial(t, s, nil)
	p.joinRecover("jr", "a", "", nil)
	p.joinRecover("jr", "b", "", nil)
	p.send(protocol.TypeLeaveSession, nil, "l")
	p.skipUntil(protocol.TypeSessionLeft, nil)
	p.send(protocol.TypeJoinSession, map[string]any{"sessionId": "jr", "userInfo": map[string]any{"userId": "c", "name": "C"}}, "j4")
	p.expectError(protocol.CodeRateLimited, "j4")
	p.send(protocol.TypeLeaveSession, nil, "l2")
	p.expectError(protocol.CodeRateLimited, "l2")
	// Other messages still go: a ping is answered.
	p.send(protocol.TypePing, nil, "p")
	if m := p.next(); m.Type != protocol.TypePong || m.Ref != "p" {
		t.Errorf("got %s %s, want the pong", m.Type, m.Data)
	}
}

// The process holds at most MaxSessions sessions (finding 3: one
// connection created 933 in 17 s); joining an existing one still works.
func TestHardeningMaxSessions(t *testing.T) {
	o := recoveryOpts()
	o.MaxSessions = 2
	s := startServer(t, o)
	a, b, c := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	a.joinRecover("m1", "a", "", nil)
	b.joinRecover("m2", "b", "", nil)
	c.send(protocol.TypeJoinSession, map[string]any{"sessionId": "m3", "userInfo": map[string]any{"name": "C"}}, "m3")
	c.expectError(protocol.CodeSessionFull, "m3")
	if sj := c.joinRecover("m1", "c", "", nil); !sameIDs(sj.Participants, "a", "c") {
		t.Errorf("m1 has %v", ids(sj.Participants))
	}
	// a moving from m1 to a new session is refused too, and stays in m1.
	a.send(protocol.TypeJoinSession, map[string]any{"sessionId": "m4", "userInfo": map[string]any{"name": "A"}}, "m4")
	a.skipUntil(protocol.TypeError, nil)
	if sj := a.joinRecover("m1", "a", "", nil); !sameIDs(sj.Participants, "a", "c") {
		t.Errorf("m1 has %v", ids(sj.Participants))
	}
}

// A stream's send whose body is not UTF-8 is refused with 400, as the
// server API's is; the other participants get nothing of it, and the
// stream goes on.
func TestHardeningInvalidUTF8OverSSE(t *testing.T) {
	s := startServer(t, recoveryOpts())
	other := dial(t, s, nil)
	other.joinRecover("u8s", "other", "", nil)
	st := sseDial(t, s.ts.URL, "")
	st.join("u8s", "mallory", "M", nil)
	other.skipUntil(protocol.TypeUserJoined, nil)
	bad := sendBody(st.stream, []byte(`{"type":"broadcast","data":{"event":"x","payload":"`+"\xff\xfe"+`"}}`))
	if code := st.post(s.ts.URL, bad); code != 400 {
		t.Errorf("send that is not UTF-8: %d, want 400", code)
	}
	st.send(protocol.TypePing, nil, "after")
	st.skipUntil(protocol.TypePong, nil)
	for _, m := range other.collect() {
		t.Errorf("the other participant got %s %s", m.Type, m.Data)
	}
}
