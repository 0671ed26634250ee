package hub_test

// Tests of the contract's v1.1 "Every message gets its answer": a message
// over the message rate gets exactly one rate_limited with its ref, no
// reply is dropped, a flood still ends in 1008, and every cursor-update,
// activity-status and broadcast outside a session gets its own
// not_in_session. The bursts go out in one TCP write of raw frames, so
// that the hub reads them back to back.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// anConn is a WebSocket spoken by hand over TCP: the test writes many
// frames in one write and reads the server's frames one by one.
type anConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// anDial upgrades a TCP connection to s by hand.
func anDial(t *testing.T, s *server) *anConn {
	t.Helper()
	addr := s.ts.Listener.Addr().String()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return &anConn{t: t, nc: nc, br: br}
}

// anFrame is a client text frame holding msg, masked with the key 0.
func anFrame(msg string) []byte {
	f := []byte{0x81}
	switch n := len(msg); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	default:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	}
	f = append(f, 0, 0, 0, 0)
	return append(f, msg...)
}

// write sends msgs, each in a frame of its own, in one write.
func (c *anConn) write(msgs ...string) {
	c.t.Helper()
	var b []byte
	for _, m := range msgs {
		b = append(b, anFrame(m)...)
	}
	c.nc.SetWriteDeadline(time.Now().Add(wait))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads the server's next frame: a message, or the close code of a
// close frame (ok false), failing the test after the deadline.
func (c *anConn) read() (env protocol.Envelope, code int, ok bool) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(wait))
	var hdr [2]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		c.t.Fatalf("read: %v", err)
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		io.ReadFull(c.br, ext[:])
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		io.ReadFull(c.br, ext[:])
		n = binary.BigEndian.Uint64(ext[:])
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		c.t.Fatalf("read: %v", err)
	}
	switch hdr[0] & 0x0f {
	case 0x8: // close
		if len(payload) < 2 {
			return env, 1005, false
		}
		return env, int(binary.BigEndian.Uint16(payload)), false
	case 0x9: // ping: answer it, read on
		c.nc.Write(append([]byte{0x8a, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...))
		return c.read()
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		c.t.Fatalf("server sent %q: %v", payload, err)
	}
	return env, 0, true
}

// answers reads n messages.
func (c *anConn) answers(n int) []protocol.Envelope {
	c.t.Helper()
	out := make([]protocol.Envelope, 0, n)
	for len(out) < n {
		env, code, ok := c.read()
		if !ok {
			c.t.Fatalf("closed with %d after %d of %d answers", code, len(out), n)
		}
		out = append(out, env)
	}
	return out
}

// errCode is the code of an error message ("" for another type).
func errCode(t *testing.T, m protocol.Envelope) string {
	t.Helper()
	if m.Type != protocol.TypeError {
		return ""
	}
	var e protocol.ErrorPayload
	decode(t, m, &e)
	return string(e.Code)
}

// byRef indexes answers by ref, failing on a ref answered twice; the
// answers without a ref are counted under "".
func byRef(t *testing.T, answers []protocol.Envelope) (map[string]protocol.Envelope, int) {
	t.Helper()
	refs := map[string]protocol.Envelope{}
	none := 0
	for _, m := range answers {
		if m.Ref == "" {
			none++
			continue
		}
		if prev, dup := refs[m.Ref]; dup {
			t.Errorf("ref %q answered twice: %s %s and %s %s", m.Ref, prev.Type, prev.Data, m.Type, m.Data)
		}
		refs[m.Ref] = m
	}
	return refs, none
}

// A burst of 100 pings and 100 garbage frames at the default limits gets
// 200 answers, each with its ref where one was sent; over the burst each
// message gets exactly one rate_limited.
func TestEveryMessageAnswered(t *testing.T) {
	s := startServer(t, nil)
	c := anDial(t, s)
	garbage := []struct{ raw, code string }{
		{`not json`, string(protocol.CodeBadRequest)},
		{`{"type":"dance","ref":"%s"}`, string(protocol.CodeUnknownType)},
		{`{"type":"ping","data":[1],"ref":"%s"}`, string(protocol.CodeBadRequest)},
		{`{"type":"cursor-update","data":{"line":1,"column":2},"ref":"%s"}`, string(protocol.CodeNotInSession)},
		{`{"type":"activity-status","data":{"isActive":false},"ref":"%s"}`, string(protocol.CodeNotInSession)},
		{`{"type":"broadcast","data":{"event":"e"},"ref":"%s"}`, string(protocol.CodeNotInSession)},
		{`{"type":"join-session","data":{"sessionId":"a b","userInfo":{"name":"n"}},"ref":"%s"}`, string(protocol.CodeInvalidSessionID)},
		{`[]`, string(protocol.CodeBadRequest)},
	}
	var msgs []string
	want := map[string]string{} // ref -> the answer's type, or error code, under the rate
	noRef := 0
	for i := range 100 {
		ref := fmt.Sprintf("p%d", i)
		msgs = append(msgs, fmt.Sprintf(`{"type":"ping","ref":%q}`, ref))
		want[ref] = protocol.TypePong
		g := garbage[i%len(garbage)]
		if !strings.Contains(g.raw, "%s") {
			msgs = append(msgs, g.raw)
			noRef++
			continue
		}
		ref = fmt.Sprintf("g%d", i)
		msgs = append(msgs, fmt.Sprintf(g.raw, ref))
		want[ref] = g.code
	}
	c.write(msgs...)
	answers := c.answers(len(msgs))
	refs, none := byRef(t, answers)
	if none != noRef {
		t.Errorf("%d answers without a ref, want %d (the frames that had none)", none, noRef)
	}
	limited := 0
	for ref, w := range want {
		m, ok := refs[ref]
		switch got := errCode(t, m); {
		case !ok:
			t.Errorf("%s: no answer", ref)
		case got == string(protocol.CodeRateLimited):
			limited++
		case m.Type == protocol.TypePong && w == protocol.TypePong, got != "" && got == w:
		default:
			t.Errorf("%s: got %s %s, want %s or rate_limited", ref, m.Type, m.Data, w)
		}
	}
	t.Logf("%d answers, %d of them rate_limited", len(answers), limited)
	// The connection is still served (under its rate again soon).
	if limited == 0 {
		t.Log("no message was over the rate: the burst was read slowly")
	}
}

// Over the burst, each message gets exactly one rate_limited with its
// ref. With a rate of ~0 the split is exact; with the rate of 5 per
// second, the refills during the burst are bounded by the time the client
// saw it take (which a busy machine only lengthens), so that the check
// holds by construction.
func TestRateLimitedAnswersEach(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
	}{
		{"rate ~0, burst 5", 1e-9, 5},
		{"--message-rate 5 --message-burst 5", 5, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, &hub.Options{MessageRate: tc.rate, MessageBurst: tc.burst})
			c := anDial(t, s)
			var msgs []string
			for i := range 30 {
				msgs = append(msgs, fmt.Sprintf(`{"type":"ping","ref":"r%d","data":{"i":%d}}`, i, i))
			}
			start := time.Now()
			c.write(msgs...)
			answers := c.answers(30)
			span := time.Since(start)
			refs, none := byRef(t, answers)
			pongs, limited := 0, 0
			for i := range 30 {
				m, ok := refs[fmt.Sprintf("r%d", i)]
				switch {
				case !ok:
					t.Errorf("r%d: no answer", i)
				case m.Type == protocol.TypePong:
					pongs++
				case errCode(t, m) == string(protocol.CodeRateLimited):
					limited++
				default:
					t.Errorf("r%d: got %s %s", i, m.Type, m.Data)
				}
			}
			// Refills during the burst, at most: the hub read it within span.
			refills := int(math.Floor(tc.rate * span.Seconds()))
			if none != 0 || pongs+limited != 30 || pongs < tc.burst || pongs > tc.burst+refills {
				t.Errorf("%d pong + %d rate_limited (+%d without ref) in %v, want %d pong (+ at most %d refills) and the rest rate_limited",
					pongs, limited, none, span, tc.burst, refills)
			}
			if refills == 0 && (pongs != 5 || limited != 25) {
				t.Errorf("%d pong + %d rate_limited, want 5 + 25", pongs, limited)
			}
		})
	}
}

// A flood ends in 1008, never 1013: when the client reads its answers,
// after the abuse window; when it does not read, as soon as its own
// rate_limited answers fill its send queue.
func TestFloodEndsIn1008(t *testing.T) {
	tests := []struct {
		name   string
		opts   hub.Options
		read   bool
		closes string // the sessionhub_server_closes_total reason
	}{
		{"reading its answers", hub.Options{MessageRate: 100, MessageBurst: 10, AbuseWindow: 200 * time.Millisecond}, true, "rate_abuse"},
		{"not reading", hub.Options{MessageRate: 100, MessageBurst: 10, AbuseWindow: time.Hour, SendQueue: 32}, false, "rate_abuse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			s, ln := startServerSmallBuf(t, &opts, serverLimits{})
			ln.small.Store(!tc.read) // its socket fills fast: the queue fills next
			c := anDial(t, s)
			ping := anFrame(`{"type":"ping","ref":"flood"}`)
			chunk := []byte{}
			for range 64 {
				chunk = append(chunk, ping...)
			}
			// The flood: until the server closes the connection.
			flooded := make(chan struct{})
			go func() {
				defer close(flooded)
				for {
					c.nc.SetWriteDeadline(time.Now().Add(wait))
					if _, err := c.nc.Write(chunk); err != nil {
						return
					}
				}
			}()
			metric := `sessionhub_server_closes_total{reason="` + tc.closes + `"}`
			if tc.read {
				for {
					m, code, ok := c.read()
					if !ok {
						if code != 1008 {
							t.Errorf("closed with %d, want 1008", code)
						}
						break
					}
					if m.Ref != "flood" {
						t.Fatalf("got %s %s ref %q", m.Type, m.Data, m.Ref)
					}
				}
			}
			metricUntil(t, s, metric, func(v float64) bool { return v == 1 })
			if v := metricValue(t, s, `sessionhub_server_closes_total{reason="slow_consumer"}`); v != 0 {
				t.Errorf("%v slow-consumer closes, want 0", v)
			}
			c.nc.Close()
			<-flooded
		})
	}
}

// Outside a session each cursor-update, activity-status and broadcast
// gets its own not_in_session: before any join and after a leave, none
// coalesced. In a session, cursor updates are coalesced and answered by
// nothing.
func TestNotInSessionEach(t *testing.T) {
	s := startServer(t, &hub.Options{MessageRate: 1000, MessageBurst: 1000, CursorRate: 1})
	c := anDial(t, s)
	outside := func(tag string) {
		t.Helper()
		var msgs []string
		for i := range 40 {
			switch i % 4 {
			case 0, 1:
				msgs = append(msgs, fmt.Sprintf(`{"type":"cursor-update","data":{"line":%d,"column":0},"ref":"%s%d"}`, i, tag, i))
			case 2:
				msgs = append(msgs, fmt.Sprintf(`{"type":"activity-status","data":{"isActive":false},"ref":"%s%d"}`, tag, i))
			case 3:
				msgs = append(msgs, fmt.Sprintf(`{"type":"broadcast","data":{"event":"e"},"ref":"%s%d"}`, tag, i))
			}
		}
		msgs = append(msgs, `{"type":"cursor-update","data":{"line":1,"column":0}}`, `{"type":"cursor-update","data":{"line":2,"column":0}}`)
		c.write(msgs...)
		refs, none := byRef(t, c.answers(len(msgs)))
		if none != 2 {
			t.Errorf("%s: %d answers without a ref, want 2", tag, none)
		}
		for i := range 40 {
			ref := fmt.Sprintf("%s%d", tag, i)
			if m, ok := refs[ref]; !ok || errCode(t, m) != string(protocol.CodeNotInSession) {
				t.Errorf("%s: got %s %s, want not_in_session", ref, m.Type, m.Data)
			}
		}
	}
	outside("before-join-")

	// In a session: a burst over the cursor rate is coalesced, silently.
	c.write(`{"type":"join-session","ref":"j","data":{"sessionId":"s","userInfo":{"userId":"u","name":"U"}}}`)
	if m := c.answers(1)[0]; m.Type != protocol.TypeSessionJoined {
		t.Fatalf("got %s %s, want session-joined", m.Type, m.Data)
	}
	var cursors []string
	for i := range 20 {
		cursors = append(cursors, fmt.Sprintf(`{"type":"cursor-update","data":{"line":%d,"column":0},"ref":"in%d"}`, i, i))
	}
	c.write(append(cursors, `{"type":"ping","ref":"after-cursors"}`)...)
	if m := c.answers(1)[0]; m.Type != protocol.TypePong || m.Ref != "after-cursors" {
		t.Fatalf("got %s %s ref %q, want only the pong", m.Type, m.Data, m.Ref)
	}
	if v := metricValue(t, s, "sessionhub_cursor_updates_coalesced_total"); v == 0 {
		t.Error("no cursor update was coalesced in the session")
	}

	c.write(`{"type":"leave-session","ref":"l"}`)
	if m := c.answers(1)[0]; m.Type != protocol.TypeSessionLeft {
		t.Fatalf("got %s %s, want session-left", m.Type, m.Data)
	}
	outside("after-leave-")
}
