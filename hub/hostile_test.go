package hub_test

// The hostile table of the hardening issue, against one live hub in token
// mode with the server API on and small limits: each row is one hostile
// action and its expected answer, followed by a check that two well-behaved
// clients joined before the table still get a pong and each other's cursor.
// After the table the session of the well-behaved clients holds exactly
// them, every other session has emptied, and (TestMain) no goroutine leaked.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

func TestHostile(t *testing.T) {
	const (
		perIP      = 20
		handshake  = 500 * time.Millisecond
		readHeader = 300 * time.Millisecond
		grace      = 150 * time.Millisecond
		maxBytes   = 16384
	)
	logs := &auLog{}
	s, ln := startServerSmallBuf(t, &hub.Options{
		JWTSecret:           auSecret,
		APIKey:              apiKey,
		MaxConnectionsPerIP: perIP,
		HandshakeTimeout:    handshake,
		AbuseWindow:         200 * time.Millisecond,
		MessageRate:         100,
		MessageBurst:        50,
		LeaveGrace:          grace,
		SendQueue:           64,
		MaxMessageBytes:     maxBytes,
		Logger:              slog.New(slog.NewTextHandler(logs, nil)),
	}, serverLimits{readHeaderTimeout: readHeader})
	tok := func(sub string, sessions ...string) string {
		return auToken(t, auClaims(sub, "N "+sub, "", sessions, time.Hour))
	}
	var secrets []string // every token or key the log must never show

	// The well-behaved clients.
	good1Tok, good2Tok := tok("good1", "good"), tok("good2", "good")
	secrets = append(secrets, good1Tok, good2Tok, apiKey)
	good1, good2 := auDial(t, s, good1Tok), auDial(t, s, good2Tok)
	good1.join("good", "", "", "")
	good2.join("good", "", "", "")
	good1.expect(protocol.TypeUserJoined, nil)
	const goodConns = 2

	row := 0
	check := func(t *testing.T) {
		t.Helper()
		row++
		ref := "row-" + strconv.Itoa(row)
		good1.send(protocol.TypePing, map[string]any{"row": row}, ref)
		good2.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: row, Column: 1}, "")
		pong, cursor := false, false
		deadline := time.After(wait)
		for !pong || !cursor {
			select {
			case m, ok := <-good1.msgs:
				if !ok {
					t.Fatalf("good1's connection ended: %v", <-good1.end)
				}
				switch m.Type {
				case protocol.TypePong:
					pong = pong || m.Ref == ref
				case protocol.TypeCursorMoved:
					var cm protocol.CursorMoved
					decode(t, m, &cm)
					cursor = cursor || (cm.UserID == "good2" && cm.Cursor.Line == row)
				default:
					t.Errorf("good1 got %s %s", m.Type, m.Data)
				}
			case <-deadline:
				t.Fatalf("good1: pong %v, cursor-moved %v within the deadline", pong, cursor)
			}
		}
		good2.strictSync()
	}
	check(t) // the baseline

	// connsFromHere waits until only want WebSockets are open.
	connsAre := func(t *testing.T, want float64) {
		t.Helper()
		metricUntil(t, s, "sessionhub_connections", func(v float64) bool { return v == want })
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	goodClaims := auClaims("mallory", "Mallory", "instructor", nil, time.Hour)
	notYet := auClaims("mallory", "Mallory", "", nil, time.Hour)
	notYet.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
	wrongSecret, _ := hub.NewToken([]byte("not-the-hub-secret-0123456789"), goodClaims)
	badTokens := []struct{ name, header string }{
		{"no token", ""},
		{"basic", "Basic bWFsbG9yeTpwdw=="},
		{"malformed", "Bearer x.y.z"},
		{"wrong secret", "Bearer " + wrongSecret},
		{"expired", "Bearer " + auToken(t, auClaims("mallory", "M", "", nil, -time.Second))},
		{"not yet valid", "Bearer " + auToken(t, notYet)},
		{"alg none", "Bearer " + auAlgNone(t, goodClaims)},
		{"RS256", "Bearer " + auSign(t, jwt.SigningMethodRS256, rsaKey, goodClaims)},
		{"HS512", "Bearer " + auSign(t, jwt.SigningMethodHS512, auSecret, goodClaims)},
		{"no sub", "Bearer " + auToken(t, auClaims("", "M", "", nil, time.Hour))},
		{"bad role", "Bearer " + auToken(t, auClaims("mallory", "M", "root", nil, time.Hour))},
	}

	rows := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"bad tokens get 401", func(t *testing.T) {
			for _, bt := range badTokens {
				opts := &websocket.DialOptions{}
				if bt.header != "" {
					opts.HTTPHeader = http.Header{"Authorization": {bt.header}}
					secrets = append(secrets, strings.TrimPrefix(strings.TrimPrefix(bt.header, "Bearer "), "Basic "))
				}
				t.Run(bt.name, func(t *testing.T) {
					auRefused(t, s.url, opts, http.StatusUnauthorized, strings.TrimPrefix(bt.header, "Bearer "))
				})
			}
			connsAre(t, goodConns)
		}},
		{"a token for session A joins B", func(t *testing.T) {
			p := auDial(t, s, tok("alex", "h-a"))
			p.join("h-a", "", "", "")
			p.send(protocol.TypeJoinSession, map[string]any{"sessionId": "h-b", "userInfo": map[string]any{"name": "A"}}, "b")
			p.expectError(protocol.CodeForbidden, "b")
			p.send(protocol.TypeJoinSession, map[string]any{"sessionId": "good"}, "g")
			p.expectError(protocol.CodeForbidden, "g")
			p.ws.Close(websocket.StatusNormalClosure, "")
		}},
		{"a learner token claims instructor", func(t *testing.T) {
			p := auDial(t, s, tok("lenny", "h-learner"))
			sj, _ := e2eJoin(p, map[string]any{"sessionId": "h-learner",
				"userInfo": map[string]any{"userId": "good1", "name": "Boss", "role": "instructor"}}, "j")
			if me := auFind(t, sj.Participants, "lenny"); sj.SelfID != "lenny" || me.Role != protocol.RoleLearner || me.Name != "N lenny" {
				t.Errorf("joined as %q %+v, want learner lenny", sj.SelfID, me)
			}
			p.ws.Close(websocket.StatusNormalClosure, "")
		}},
		{"the API without a key or with a wrong one", func(t *testing.T) {
			for _, key := range []string{"", "wrong", apiKey + "0"} {
				apiExpectError(t, s, "GET", "/api/sessions", key, nil, http.StatusUnauthorized)
				apiExpectError(t, s, "GET", "/api/sessions/good", key, nil, http.StatusUnauthorized)
				apiExpectError(t, s, "POST", "/api/sessions/good/broadcast", key, []byte(`{"event":"pwned"}`), http.StatusUnauthorized)
				apiExpectError(t, s, "DELETE", "/api/sessions/good/participants/good1", key, nil, http.StatusUnauthorized)
			}
		}},
		{"a broadcast that is not UTF-8 (v1.1 hardening)", func(t *testing.T) {
			p := auDial(t, s, tok("utf8"))
			p.join("h-utf8", "", "", "")
			p.sendRaw([]byte(`{"type":"broadcast","data":{"event":"x","payload":"` + "\xff\xfe" + `"}}`))
			if code := p.closed(); code != websocket.StatusCode(protocol.CloseInvalidData) {
				t.Errorf("closed with %v, want 1007", code)
			}
		}},
		{"control characters in identifiers (v1.1 hardening)", func(t *testing.T) {
			p := auDial(t, s, tok("ctl"))
			p.sendRaw([]byte(`{"type":"join-session","data":{"sessionId":"h-ctl","userInfo":{"userId":"x\u0000y","name":"N"}},"ref":"n"}`))
			p.expectError(protocol.CodeBadRequest, "n")
			p.join("h-ctl", "", "", "")
			p.sendRaw([]byte(`{"type":"broadcast","data":{"event":"\u001b[2J"},"ref":"e"}`))
			p.expectError(protocol.CodeBadRequest, "e")
			p.ws.Close(websocket.StatusNormalClosure, "")
		}},
		{"the API with a body that is not UTF-8 (v1.1 hardening)", func(t *testing.T) {
			apiExpectError(t, s, "POST", "/api/sessions/good/broadcast", apiKey, []byte(`{"event":"x","payload":"`+"\xff"+`"}`), http.StatusBadRequest)
		}},
		{"the API with a huge body", func(t *testing.T) {
			huge := []byte(`{"event":"big","payload":"` + strings.Repeat("x", 1<<20) + `"}`)
			apiExpectError(t, s, "POST", "/api/sessions/good/broadcast", apiKey, huge, http.StatusRequestEntityTooLarge)
		}},
		{"5000 garbage frames", func(t *testing.T) {
			p := auDial(t, s, tok("garbage"))
			p.join("h-garbage", "", "", "")
			garbage := [][]byte{[]byte("not json"), []byte("[]"), []byte(`{"type":`), []byte(`{"type":"nope"}`),
				[]byte(`{"type":"cursor-update","data":{"line":-1}}`), []byte("\x00\x01\x02"), []byte(`"str"`), []byte("{}")}
			var flood sync.WaitGroup
			sent := 0
			flood.Go(func() {
				for i := range 5000 {
					if i%100 == 0 {
						time.Sleep(5 * time.Millisecond) // 5000 frames take at least 250 ms: over the abuse window
					}
					ctx, cancel := context.WithTimeout(context.Background(), wait)
					err := p.ws.Write(ctx, websocket.MessageText, garbage[i%len(garbage)])
					cancel()
					if err != nil {
						return
					}
					sent++
				}
			})
			codes := map[string]int{}
			deadline := time.After(wait + 10*time.Second)
		read:
			for {
				select {
				case m, ok := <-p.msgs:
					if !ok {
						break read
					}
					if m.Type != protocol.TypeError {
						t.Errorf("got %s %s", m.Type, m.Data)
						continue
					}
					var e protocol.ErrorPayload
					decode(t, m, &e)
					codes[string(e.Code)]++
				case <-deadline:
					t.Fatal("the garbage client is still open")
				}
			}
			flood.Wait()
			code := websocket.CloseStatus(<-p.end)
			t.Logf("%d garbage frames sent; errors %v; closed with %v", sent, codes, code)
			if code != websocket.StatusPolicyViolation {
				t.Errorf("closed with %v, want 1008", code)
			}
			for code := range codes {
				switch protocol.Code(code) {
				case protocol.CodeBadRequest, protocol.CodeUnknownType, protocol.CodeRateLimited:
				default:
					t.Errorf("errors %v, want only bad_request, unknown_type and rate_limited", codes)
				}
			}
			// The flood was refused (what it got before the close depends on
			// how fast it read: a queue full of its own errors ends it too).
			if v := metricValue(t, s, "sessionhub_rate_limited_total"); v == 0 {
				t.Error("no message of the flood was refused with rate_limited")
			}
		}},
		{"an oversized frame", func(t *testing.T) {
			p := auDial(t, s, tok("bigframe"))
			p.join("h-big", "", "", "")
			p.sendRaw([]byte(`{"type":"ping","data":{"x":"` + strings.Repeat("x", maxBytes) + `"}}`))
			if code := p.closed(); code != websocket.StatusMessageTooBig {
				t.Errorf("closed with %v, want 1009", code)
			}
		}},
		{"a connection flood over the per-IP limit", func(t *testing.T) {
			connsAre(t, goodConns)
			ftok := tok("flood")
			var open []*websocket.Conn
			defer func() {
				for _, ws := range open {
					ws.CloseNow()
				}
			}()
			refused := 0
			for range perIP - goodConns + 5 {
				ws, resp, err := dialHTTP(t, s, auOpts(ftok))
				if err == nil {
					open = append(open, ws)
					continue
				}
				if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
					t.Fatalf("dial %d: %v, %+v; want success or 429", len(open)+refused+1, err, resp)
				}
				refused++
			}
			if len(open) != perIP-goodConns || refused != 5 {
				t.Errorf("%d accepted, %d refused; want %d and 5", len(open), refused, perIP-goodConns)
			}
			for _, ws := range open {
				ws.CloseNow()
			}
			open = nil
			connsAre(t, goodConns)
			// The limit is free again.
			ws, _, err := dialHTTP(t, s, auOpts(ftok))
			if err != nil {
				t.Fatalf("dial after the flood: %v", err)
			}
			ws.CloseNow()
			connsAre(t, goodConns)
		}},
		{"half-open TCP connections that never finish the upgrade", func(t *testing.T) {
			addr := s.ts.Listener.Addr().String()
			var stalled []net.Conn
			for range 2 * perIP { // more than the per-IP limit: they do not count against it
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				c.Write([]byte("GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"))
				stalled = append(stalled, c)
			}
			// A slowloris: one header byte every 20 ms.
			slow, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { slow.Close() })
			var loris sync.WaitGroup
			loris.Go(func() {
				slow.Write([]byte("GET /ws HTTP/1.1\r\n"))
				for range 500 {
					if _, err := slow.Write([]byte("X")); err != nil {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			})
			// Meanwhile the hub serves: a fresh client upgrades, joins and
			// leaves, and only upgraded connections count.
			p := auDial(t, s, tok("fresh"))
			p.join("h-fresh", "", "", "")
			if v := metricValue(t, s, "sessionhub_connections"); v != goodConns+1 {
				t.Errorf("sessionhub_connections = %v with %d stalled requests, want %d", v, len(stalled), goodConns+1)
			}
			check(t)
			p.ws.Close(websocket.StatusNormalClosure, "")
			// The HTTP server's ReadHeaderTimeout cuts them all.
			for i, c := range append(stalled, slow) {
				c.SetReadDeadline(time.Now().Add(wait))
				_, err := io.ReadAll(c)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("stalled connection %d still open after %v", i, wait)
				}
			}
			loris.Wait()
			connsAre(t, goodConns)
		}},
		{"a client that never joins", func(t *testing.T) {
			p := auDial(t, s, tok("mute"))
			if code := p.closed(); code != websocket.StatusPolicyViolation {
				t.Errorf("closed with %v, want 1008", code)
			}
			// How long it lived, as the server measured it (from the
			// upgrade): a busy machine only delays the client's view.
			var line string
			waitFor(t, "mute's disconnect line", func() bool {
				for _, l := range strings.Split(logs.String(), "\n") {
					if strings.Contains(l, "msg=disconnect") && strings.Contains(l, "user=mute") {
						line = l
						return true
					}
				}
				return false
			})
			_, after, _ := strings.Cut(line, " duration=")
			d, err := time.ParseDuration(strings.Fields(after + " ")[0])
			if err != nil {
				t.Fatalf("disconnect line %q: %v", line, err)
			}
			if d < handshake {
				t.Errorf("closed after %v, before the %v handshake timeout (%s)", d, handshake, line)
			}
		}},
		{"a client that joins and never reads", func(t *testing.T) {
			before := metricValue(t, s, "sessionhub_slow_consumer_closes_total")
			ln.small.Store(true)
			ws := rawDial(t, s, rawOptions{smallRcvBuf: true, token: tok("stuck")})
			ln.small.Store(false)
			rawJoin(t, ws, "h-slow", "stuck", true) // and read nothing more
			body := []byte(`{"event":"fill","payload":"` + strings.Repeat("y", 8000) + `"}`)
			var res struct {
				Offset int64 `json:"offset"`
			}
			for i := 0; ; i++ {
				apiJSON(t, s, "POST", "/api/sessions/h-slow/broadcast", body, http.StatusAccepted, &res)
				if i%8 == 7 && metricValue(t, s, "sessionhub_slow_consumer_closes_total") > before {
					t.Logf("closed as a slow consumer after %d broadcasts", i+1)
					break
				}
				if i == 5000 {
					t.Fatal("5000 broadcasts of 8 KB and the client that reads nothing is still served")
				}
			}
			if code := asPeer(t, ws).closed(); code != websocket.StatusCode(protocol.CloseSlowConsumer) {
				t.Errorf("closed with %v, want 1013", code)
			}
		}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			r.run(t)
			check(t)
		})
	}

	// After the table: good holds exactly the well-behaved clients, and
	// every hostile participant has left (its grace included).
	var one apiSessionInfo
	apiJSON(t, s, "GET", "/api/sessions/good", nil, http.StatusOK, &one)
	if !sameIDs(one.Participants, "good1", "good2") {
		t.Errorf("good = %v, want good1 and good2", ids(one.Participants))
	}
	waitFor(t, "every other session empty", func() bool {
		var list apiSessionsList
		apiJSON(t, s, "GET", "/api/sessions", nil, http.StatusOK, &list)
		for _, e := range list.Sessions {
			if want := map[bool]int{true: 2, false: 0}[e.SessionID == "good"]; e.Participants != want {
				return false
			}
		}
		return true
	})
	connsAre(t, goodConns)
	metricUntil(t, s, "sessionhub_participants", func(v float64) bool { return v == 2 })
	check(t)
	// The log has the refusals and the disconnects, and no token or key.
	log := logs.String()
	for _, want := range []string{"upgrade refused", "disconnect", "remote="} {
		if !strings.Contains(log, want) {
			t.Errorf("the log has no %q", want)
		}
	}
	for _, sec := range secrets {
		if len(sec) >= 8 && strings.Contains(log, sec) {
			t.Errorf("the log contains a token or key: %.20s…", sec)
		}
	}
}

// Past Options.MaxConnections the upgrade is refused with 503, and the
// slots free again when connections close.
func TestMaxConnections(t *testing.T) {
	s := startServer(t, &hub.Options{MaxConnections: 3})
	var open []*websocket.Conn
	for range 3 {
		ws, _, err := dialHTTP(t, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, ws)
	}
	body := auRefused(t, s.url, nil, http.StatusServiceUnavailable, "")
	if !strings.Contains(body, "too many connections") {
		t.Errorf("503 body %q", body)
	}
	open[0].Close(websocket.StatusNormalClosure, "")
	waitFor(t, "a slot frees", func() bool {
		ws, _, err := dialHTTP(t, s, nil)
		if err != nil {
			return false
		}
		open[0] = ws
		return true
	})
	auRefused(t, s.url, nil, http.StatusServiceUnavailable, "")
	for _, ws := range open {
		ws.CloseNow()
	}
}
