package hub_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// A stream opens with the contract's headers and open event, and carries a
// session as a WebSocket does: presence, cursors both ways, broadcasts in
// order, pongs, acks.
func TestSSEStreamTakesPartLikeAWebSocket(t *testing.T) {
	s := startServer(t, &hub.Options{PingInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := sseGet(t, ctx, s.ts.URL, nil)
	resp.Body.Close()
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	ws := dial(t, s, nil)
	ws.join("class", "ws-user", "Ada", "")
	st := sseDial(t, s.ts.URL, "")
	raw, err := base64.RawURLEncoding.DecodeString(st.stream)
	if err != nil || len(raw)*8 < 128 {
		t.Fatalf("streamId %q: %d random bits (%v), want at least 128", st.stream, len(raw)*8, err)
	}
	sj := st.join("class", "sse-user", "Linus", nil)
	if len(sj.Participants) != 2 || sj.SelfID != "sse-user" {
		t.Fatalf("session-joined: %+v", sj)
	}
	var uj protocol.UserJoined
	ws.expect(protocol.TypeUserJoined, &uj)
	if uj.User.UserID != "sse-user" {
		t.Fatalf("the WebSocket saw %+v join", uj.User)
	}

	st.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 3, Column: 4}, "")
	var cm protocol.CursorMoved
	ws.expect(protocol.TypeCursorMoved, &cm)
	if cm.UserID != "sse-user" || cm.Cursor.Line != 3 || cm.Cursor.Column != 4 {
		t.Fatalf("cursor-moved on the WebSocket: %+v", cm)
	}
	ws.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 7, Column: 1}, "")
	st.expect(protocol.TypeCursorMoved, &cm)
	if cm.UserID != "ws-user" || cm.Cursor.Line != 7 {
		t.Fatalf("cursor-moved on the stream: %+v", cm)
	}

	// Broadcasts both ways, in order; several in one send are taken in
	// order too.
	const n = 50
	for i := range n {
		ws.send(protocol.TypeBroadcast, map[string]any{"event": "tick", "payload": i}, "")
	}
	envs := make([][]byte, 0, 10)
	for i := range 10 {
		b, _ := protocol.Encode(protocol.TypeBroadcast, fmt.Sprint("b", i), map[string]any{"event": "tock", "payload": i})
		envs = append(envs, b)
	}
	if code := st.post(s.ts.URL, sendBody(st.stream, envs...)); code != http.StatusAccepted {
		t.Fatalf("send of 10: %d", code)
	}
	// On the stream, the WebSocket's broadcasts and the acks of its own
	// come interleaved, each in order.
	var last int64
	got, acks := 0, 0
	for got < n || acks < 10 {
		m := st.next()
		switch m.Type {
		case protocol.TypeBroadcast:
			var bc protocol.BroadcastEvent
			json.Unmarshal(m.Data, &bc)
			if string(bc.Payload) != fmt.Sprint(got) || bc.Offset <= last {
				t.Fatalf("broadcast %d on the stream: %+v after offset %d", got, bc, last)
			}
			last = bc.Offset
			got++
		case protocol.TypeAck:
			if m.Ref != fmt.Sprint("b", acks) {
				t.Fatalf("ack %d has ref %q", acks, m.Ref)
			}
			acks++
		default:
			t.Fatalf("unexpected %s", m.Type)
		}
	}
	for i := range 10 {
		var bc protocol.BroadcastEvent
		ws.expect(protocol.TypeBroadcast, &bc)
		if string(bc.Payload) != fmt.Sprint(i) || bc.From != "sse-user" {
			t.Fatalf("broadcast %d on the WebSocket: %+v", i, bc)
		}
	}
	st.send(protocol.TypePing, map[string]int{"n": 1}, "p")
	if m := st.expect(protocol.TypePong, nil); m.Ref != "p" || string(m.Data) != `{"n":1}` {
		t.Fatalf("pong: %+v", m)
	}
	// The server's pings are comments.
	for deadline := time.Now().Add(wait); st.pings.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no ping comment within the deadline")
		}
	}
	if v := mustMetric(t, s, `sessionhub_transport_connections{transport="sse"}`); v != 1 {
		t.Errorf("sse connections = %v, want 1", v)
	}
}

// A send with close 1000 ends the stream cleanly: the user leaves at once,
// with no leave grace; a stream that just ends is a drop, which the grace
// covers, and a rejoin with recover gets exactly the missed broadcasts.
func TestSSECloseAndDrop(t *testing.T) {
	s := startServer(t, &hub.Options{LeaveGrace: time.Hour})
	ws := dial(t, s, nil)
	ws.join("c", "w", "W", "")

	st := sseDial(t, s.ts.URL, "")
	st.join("c", "leaver", "L", nil)
	ws.expect(protocol.TypeUserJoined, nil)
	b, _ := json.Marshal(map[string]any{"streamId": st.stream, "close": 1000})
	if code := st.post(s.ts.URL, b); code != http.StatusAccepted {
		t.Fatalf("close: %d", code)
	}
	var ul protocol.UserLeft
	ws.expect(protocol.TypeUserLeft, &ul) // at once, despite the hour of grace
	if ul.UserID != "leaver" {
		t.Fatalf("user-left %+v", ul)
	}
	st.closeEvent()
	if code := st.post(s.ts.URL, sendBody(st.stream, []byte(`{"type":"ping"}`))); code != http.StatusNotFound {
		t.Errorf("send to a closed stream: %d, want 404", code)
	}

	st = sseDial(t, s.ts.URL, "")
	sj := st.join("c", "dropper", "D", nil)
	ws.expect(protocol.TypeUserJoined, nil)
	ws.send(protocol.TypeBroadcast, map[string]any{"event": "e", "payload": 0}, "a0")
	st.expect(protocol.TypeBroadcast, nil)
	ws.expect(protocol.TypeAck, nil)
	st.drop()
	var ack protocol.Ack
	for i := 1; i <= 3; i++ {
		ws.send(protocol.TypeBroadcast, map[string]any{"event": "e", "payload": i}, "a")
		ws.expect(protocol.TypeAck, &ack)
	}
	st2 := sseDial(t, s.ts.URL, "")
	sj2 := st2.join("c", "dropper", "D", &protocol.Recover{Epoch: sj.Epoch, Offset: ack.Offset - 3})
	if !sj2.Recovered {
		t.Fatalf("rejoin: %+v", sj2)
	}
	for i := 1; i <= 3; i++ {
		var bc protocol.BroadcastEvent
		st2.expect(protocol.TypeBroadcast, &bc)
		if string(bc.Payload) != fmt.Sprint(i) {
			t.Fatalf("replay %d: %s", i, bc.Payload)
		}
	}
	// Nothing more was replayed, and the others saw no leave and no join.
	st2.send(protocol.TypePing, nil, "sync")
	st2.expect(protocol.TypePong, nil)
	ws.sync()
}

// The sends' answers (contract v1.2) and the contract's error for garbage.
func TestSSESendAnswers(t *testing.T) {
	s := startServer(t, &hub.Options{MaxMessageBytes: 512})
	st := sseDial(t, s.ts.URL, "")
	big := []byte(`{"type":"ping","data":{"x":"` + strings.Repeat("x", 600) + `"}}`)
	many := make([][]byte, 33)
	for i := range many {
		many[i] = []byte(`{"type":"ping"}`)
	}
	hugeBody := `{"streamId":"` + st.stream + `","messages":[` + strings.Repeat(" ", 40<<10) + `]}`
	for _, tt := range []struct {
		name, contentType, body string
		want                    int
	}{
		{"one ping", "application/json", string(sendBody(st.stream, []byte(`{"type":"ping"}`))), 202},
		{"text/plain spares a preflight", "text/plain;charset=UTF-8", string(sendBody(st.stream, []byte(`{"type":"ping"}`))), 202},
		{"unknown stream", "application/json", string(sendBody("nope", []byte(`{"type":"ping"}`))), 404},
		{"guessed stream", "application/json", string(sendBody(guess(st.stream), []byte(`{"type":"ping"}`))), 404},
		{"envelope over the limit", "application/json", string(sendBody(st.stream, big)), 413},
		{"body over the limit", "application/json", hugeBody, 413},
		{"not JSON", "application/json", `hello`, 400},
		{"no streamId", "application/json", `{"messages":[{"type":"ping"}]}`, 400},
		{"no messages", "application/json", string(sendBody(st.stream)), 400},
		{"33 messages", "application/json", string(sendBody(st.stream, many...)), 400},
		{"close with another code", "application/json", `{"streamId":"` + st.stream + `","close":4000}`, 400},
		{"not UTF-8", "application/json", "{\"streamId\":\"" + st.stream + "\",\"messages\":[{\"type\":\"\xff\"}]}", 400},
		{"form content type", "application/x-www-form-urlencoded", string(sendBody(st.stream, []byte(`{"type":"ping"}`))), 415},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := postSend(t, s.ts.URL, "", tt.contentType, []byte(tt.body)); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
	// The two pings that were taken got their pongs; nothing else came.
	st.expect(protocol.TypePong, nil)
	st.expect(protocol.TypePong, nil)

	// Garbage inside a well-formed send gets the contract's errors on the
	// stream, one per envelope, in order, and the stream stays open.
	garbage := [][]byte{[]byte(`"hello"`), []byte(`[1,2]`), []byte(`{"type":"nope","ref":"u"}`),
		[]byte(`{"type":"cursor-update","data":{"line":-1,"column":0},"ref":"c"}`), []byte(`{"type":"ping","ref":"ok"}`)}
	if code := st.post(s.ts.URL, sendBody(st.stream, garbage...)); code != 202 {
		t.Fatalf("garbage send: %d", code)
	}
	for _, want := range []string{"bad_request", "bad_request", "unknown_type"} {
		var e protocol.ErrorPayload
		st.expect(protocol.TypeError, &e)
		if string(e.Code) != want {
			t.Fatalf("error %q, want %q", e.Code, want)
		}
	}
	// The cursor update outside a session is not_in_session or bad_request
	// (it does not decode); either way it is an error, then the pong.
	st.expect(protocol.TypeError, nil)
	if m := st.expect(protocol.TypePong, nil); m.Ref != "ok" {
		t.Fatalf("pong ref %q", m.Ref)
	}
}

// Origins: a refused Origin gets 403 on the stream and on sends; an allowed
// one gets the CORS answers, and its preflight.
func TestSSEOrigins(t *testing.T) {
	s := startServer(t, &hub.Options{AllowedOrigins: []string{"app.example.com"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := sseGet(t, ctx, s.ts.URL, http.Header{"Origin": {"https://evil.example.net"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("stream from a refused origin: %d, want 403", resp.StatusCode)
	}
	resp = sseGet(t, ctx, s.ts.URL, http.Header{"Origin": {"https://app.example.com"}})
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("stream from an allowed origin: %d, ACAO %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	st := sseDial(t, s.ts.URL, "")
	for _, tt := range []struct {
		method, origin string
		want           int
	}{
		{http.MethodPost, "https://evil.example.net", 403},
		{http.MethodPost, "https://app.example.com", 202},
		{http.MethodOptions, "https://app.example.com", 204},
		{http.MethodOptions, "https://evil.example.net", 403},
	} {
		req, _ := http.NewRequest(tt.method, s.ts.URL+"/sse/send", strings.NewReader(string(sendBody(st.stream, []byte(`{"type":"ping"}`)))))
		req.Header.Set("Origin", tt.origin)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s from %s: %d, want %d", tt.method, tt.origin, resp.StatusCode, tt.want)
		}
		if tt.want != 403 && resp.Header.Get("Access-Control-Allow-Origin") != tt.origin {
			t.Errorf("%s from %s: no CORS answer", tt.method, tt.origin)
		}
	}
	st.expect(protocol.TypePong, nil) // the allowed send only
}

// Token mode: a stream needs a valid token (401), and every send the
// token of the stream's user (403).
func TestSSETokenMode(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	s := startServer(t, &hub.Options{JWTSecret: secret})
	tok := func(sub string) string {
		tk, err := hub.NewToken(secret, hub.Claims{Name: sub, RegisteredClaims: jwtClaims(sub, time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, hdr := range []http.Header{nil, {"Authorization": {"Bearer nope"}}} {
		resp := sseGet(t, ctx, s.ts.URL, hdr)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("stream with %v: %d, want 401", hdr, resp.StatusCode)
		}
	}
	// ?token= (EventSource cannot set headers).
	resp := sseGet(t, ctx, s.ts.URL+"/sse?token="+tok("bob")+"#", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("stream with ?token=: %d, want 200", resp.StatusCode)
	}

	alice := sseDial(t, s.ts.URL, tok("alice"))
	ping := sendBody(alice.stream, []byte(`{"type":"ping","ref":"mine"}`))
	for _, tt := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", 403},
		{"bad token", "x.y.z", 403},
		{"another user's", tok("mallory"), 403},
		{"the stream's user", tok("alice"), 202},
	} {
		if got := postSend(t, s.ts.URL, tt.token, "application/json", ping); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	if m := alice.expect(protocol.TypePong, nil); m.Ref != "mine" {
		t.Fatalf("pong %+v", m)
	}
	sj := alice.join("s", "ignored", "", nil)
	if sj.SelfID != "alice" {
		t.Errorf("selfId %q, want the token's sub", sj.SelfID)
	}
}

// A flood of sends gets rate_limited, and then the stream is closed with
// the policy code; a stream that stops reading is closed as a slow
// consumer, and the others go on.
func TestSSEAbuse(t *testing.T) {
	t.Run("flood", func(t *testing.T) {
		s := startServer(t, &hub.Options{MessageRate: 1, MessageBurst: 1, AbuseWindow: 200 * time.Millisecond})
		st := sseDial(t, s.ts.URL, "")
		envs := make([][]byte, 32)
		for i := range envs {
			envs[i] = []byte(`{"type":"ping","ref":"f"}`)
		}
		limited := 0
		for done := false; !done; {
			select {
			case c := <-st.closed:
				if c.Code != int(protocol.ClosePolicy) {
					t.Fatalf("closed with %+v, want 1008", c)
				}
				done = true
			default:
				if code := st.post(s.ts.URL, sendBody(st.stream, envs...)); code != 202 && code != 404 {
					t.Fatalf("send: %d", code)
				}
			}
			for drained := false; !drained; {
				select {
				case m, ok := <-st.msgs:
					if ok && m.Type == protocol.TypeError {
						limited++
					}
					drained = !ok
				default:
					drained = true
				}
			}
		}
		if limited == 0 {
			t.Error("no rate_limited before the close")
		}
	})

	t.Run("slow consumer", func(t *testing.T) {
		s := startServer(t, &hub.Options{SendQueue: 16, LeaveGrace: time.Millisecond, MessageRate: 1e6, MessageBurst: 1e6})
		sender := dial(t, s, nil)
		sender.join("slow", "sender", "S", "")
		other := dial(t, s, nil)
		other.join("slow", "other", "O", "")
		sender.expect(protocol.TypeUserJoined, nil)

		d := &net.Dialer{Control: setRcvBuf}
		client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		defer client.CloseIdleConnections()
		st := sseDialWith(t, client, s.ts.URL, "")
		st.join("slow", "sleeper", "Z", nil)
		sender.expect(protocol.TypeUserJoined, nil)
		other.expect(protocol.TypeUserJoined, nil)
		// From now on nobody reads the stream's body: its TCP buffers fill,
		// then its send queue, and the hub closes it as a slow consumer.
		st.hold.Store(true)
		payload := strings.Repeat("p", 8<<10)
		left := false
		for i := 0; i%64 != 0 || metricValue(t, s, `sessionhub_server_closes_total{reason="slow_consumer"}`) == 0; i++ {
			sender.send(protocol.TypeBroadcast, map[string]any{"event": "big", "payload": payload}, "")
			for m := other.next(); m.Type != protocol.TypeBroadcast; m = other.next() { // the others keep up
				left = left || m.Type == protocol.TypeUserLeft
			}
			if i > 100000 {
				t.Fatal("the stream was never closed")
			}
		}
		if !left {
			var ul protocol.UserLeft
			other.skipUntil(protocol.TypeUserLeft, &ul)
			if ul.UserID != "sleeper" {
				t.Fatalf("user-left %+v", ul)
			}
		}
		sender.send(protocol.TypeBroadcast, map[string]any{"event": "after", "payload": 1}, "")
		var bc protocol.BroadcastEvent
		other.skipUntil(protocol.TypeBroadcast, &bc)
		for bc.Event != "after" {
			other.skipUntil(protocol.TypeBroadcast, &bc)
		}
		// A writer stuck on the stream is dropped within closeWait.
		for deadline := time.Now().Add(wait + 10*time.Second); metricValue(t, s, `sessionhub_transport_connections{transport="sse"}`) != 0; {
			if time.Now().After(deadline) {
				t.Fatal("the slow stream is still served")
			}
			time.Sleep(10 * time.Millisecond) // polling a gauge
		}
	})
}

// jwtClaims are the registered claims of a test token for sub.
func jwtClaims(sub string, ttl time.Duration) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))}
}

// guess is id with its last character changed.
func guess(id string) string {
	if strings.HasSuffix(id, "A") {
		return id[:len(id)-1] + "B"
	}
	return id[:len(id)-1] + "A"
}

// The connection machinery of /ws holds for streams: the per-IP limit
// counts them (429), the token's exp closes them with 4001, a stream that
// never joins is closed with 1008, a shutdown closes them with 1001, and a
// stream whose writes stall is dropped at the ping timeout.
func TestSSELifetimes(t *testing.T) {
	t.Run("per-IP limit", func(t *testing.T) {
		s := startServer(t, &hub.Options{MaxConnectionsPerIP: 1})
		sseDial(t, s.ts.URL, "")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp := sseGet(t, ctx, s.ts.URL, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("second stream from one address: %d, want 429", resp.StatusCode)
		}
	})
	t.Run("token expiry", func(t *testing.T) {
		secret := []byte("0123456789abcdef0123456789abcdef")
		s := startServer(t, &hub.Options{JWTSecret: secret})
		tk, err := hub.NewToken(secret, hub.Claims{Name: "n", RegisteredClaims: jwtClaims("u", 1500*time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		st := sseDial(t, s.ts.URL, tk)
		st.join("s", "", "", nil)
		if c := st.closeEvent(); c.Code != int(protocol.CloseTokenExpired) {
			t.Fatalf("closed with %+v, want 4001", c)
		}
	})
	t.Run("handshake timeout", func(t *testing.T) {
		s := startServer(t, &hub.Options{HandshakeTimeout: 100 * time.Millisecond})
		st := sseDial(t, s.ts.URL, "")
		if c := st.closeEvent(); c.Code != int(protocol.ClosePolicy) {
			t.Fatalf("closed with %+v, want 1008", c)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		s := startServer(t, nil)
		st := sseDial(t, s.ts.URL, "")
		st.join("s", "u", "U", nil)
		go s.Shutdown(context.Background())
		if c := st.closeEvent(); c.Code != int(protocol.CloseGoingAway) {
			t.Fatalf("closed with %+v, want 1001", c)
		}
	})
	t.Run("stalled writes", func(t *testing.T) {
		s := startServer(t, &hub.Options{PingInterval: 500 * time.Millisecond, PingTimeout: 2 * time.Second,
			SendQueue: 100000, MessageRate: 1e6, MessageBurst: 1e6})
		sender := dial(t, s, nil)
		sender.join("stall", "sender", "S", "")
		d := &net.Dialer{Control: setRcvBuf}
		client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		defer client.CloseIdleConnections()
		st := sseDialWith(t, client, s.ts.URL, "")
		st.join("stall", "sleeper", "Z", nil)
		sender.expect(protocol.TypeUserJoined, nil)
		st.hold.Store(true)
		// The queue is large: the stream is not a slow consumer, its writes
		// just stall, and the pings that cannot go out drop it.
		payload := strings.Repeat("p", 8<<10)
		// One broadcast at a time (each acked): a sender that floods would
		// have its own pongs stuck behind its frames.
		for i := 0; i%32 != 0 || metricValue(t, s, `sessionhub_transport_connections{transport="sse"}`) != 0; i++ {
			sender.send(protocol.TypeBroadcast, map[string]any{"event": "big", "payload": payload}, "b")
			sender.skipUntil(protocol.TypeAck, nil)
			if i > 100000 {
				t.Fatal("the stalled stream was never dropped")
			}
		}
		if v := metricValue(t, s, `sessionhub_server_closes_total{reason="ping_timeout"}`); v < 1 {
			t.Errorf("ping_timeout closes = %v, want the stream's", v)
		}
		sender.sync() // the WebSocket is still served
		if v := metricValue(t, s, `sessionhub_server_closes_total{reason="slow_consumer"}`); v != 0 {
			t.Errorf("slow_consumer closes = %v, want the ping timeout only", v)
		}
	})
}
