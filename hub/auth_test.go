package hub_test

// Token mode over real WebSockets (contract: Identity and authentication,
// Close codes 4001): which upgrades are refused with 401 and why, what the
// token decides about a participant, the sessions claim, and the close when
// the token expires during a connection.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/internal/jwttest"
	"github.com/sessionhub/sessionhub/protocol"
)

// auSecret is the HS256 secret of the token-mode tests.
var auSecret = []byte("auth-test-secret-0123456789abcdef")

// auClaims are the claims of a token for sub that expires after ttl.
func auClaims(sub, name, role string, sessions []string, ttl time.Duration) hub.Claims {
	now := time.Now()
	return hub.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl))},
		Name: name, Role: role, Sessions: sessions,
	}
}

// auToken signs c with auSecret.
func auToken(t testing.TB, c hub.Claims) string {
	t.Helper()
	tok, err := hub.NewToken(auSecret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// auSign signs claims with any method and key.
func auSign(t testing.TB, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	return jwttest.Sign(t, m, key, "", c)
}

// auAlgNone builds an unsigned token (alg none) by hand.
func auAlgNone(t testing.TB, c any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	body, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(body) + "."
}

// auOpts are the dial options that carry tok as a Bearer token.
func auOpts(tok string) *websocket.DialOptions {
	return &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}}
}

// auDial dials s with tok in the Authorization header.
func auDial(t testing.TB, s *server, tok string) *peer {
	t.Helper()
	return dialURL(t, s.url, auOpts(tok))
}

// auRefused dials u with opts and checks that the upgrade is refused with
// want, and that the body is one line that does not quote secret (a
// token). It returns the body.
func auRefused(t testing.TB, u string, opts *websocket.DialOptions, want int, secret string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, opts)
	if err == nil {
		ws.CloseNow()
		t.Fatalf("upgrade accepted, want HTTP %d", want)
	}
	if resp == nil {
		t.Fatalf("no HTTP response: %v", err)
	}
	if resp.StatusCode != want {
		t.Fatalf("HTTP %d, want %d", resp.StatusCode, want)
	}
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	if line := strings.TrimSuffix(body, "\n"); line == "" || strings.Contains(line, "\n") {
		t.Errorf("body %q is not one line of reason", body)
	}
	if secret != "" && strings.Contains(body, secret) {
		t.Errorf("body %q quotes the token", body)
	}
	return body
}

// auLog is a logger whose output the test can read.
type auLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *auLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *auLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Every bad or missing token is refused before the upgrade with 401, a
// one-line reason in the body, and never the token itself in the body or
// the log. The log has at most a line a second of refusals (finding 9: a
// flood of bad tokens flooded the log), with their count.
func TestAuthRefused(t *testing.T) {
	start := time.Now()
	logs := &auLog{}
	s := startServer(t, &hub.Options{JWTSecret: auSecret, Logger: slog.New(slog.NewTextHandler(logs, nil))})

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := auClaims("alice", "Alice", "learner", nil, time.Hour)
	expired := auClaims("alice", "Alice", "learner", nil, -time.Minute)
	notYet := auClaims("alice", "Alice", "learner", nil, time.Hour)
	notYet.NotBefore = jwt.NewNumericDate(time.Now().Add(30 * time.Minute))
	noSub := auClaims("", "Alice", "learner", nil, time.Hour)
	badRole := auClaims("alice", "Alice", "admin", nil, time.Hour)
	wrongSecret, err := hub.NewToken([]byte("another-secret-0123456789abcdef"), good)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		header string // the Authorization header, if any
		query  string // the token query parameter, if any
		token  string // what must never show in the body or the log
		reason string // a word of the expected reason
	}{
		{name: "no token", reason: "no token"},
		{name: "basic auth", header: "Basic YWxpY2U6cGFzc3dvcmQ=", token: "YWxpY2U6cGFzc3dvcmQ=", reason: "Bearer"},
		{name: "bearer without token", header: "Bearer", reason: "Bearer"},
		{name: "malformed", header: "Bearer not-a-jwt-at-all", token: "not-a-jwt-at-all", reason: "malformed"},
		{name: "malformed three parts", header: "Bearer aaaa.bbbb.cccc", token: "aaaa.bbbb.cccc", reason: "malformed"},
		{name: "malformed in query", query: "garbage.garbage", token: "garbage.garbage", reason: "malformed"},
		{name: "wrong secret", header: "Bearer " + wrongSecret, token: wrongSecret, reason: "signature"},
		{name: "wrong secret in query", query: wrongSecret, token: wrongSecret, reason: "signature"},
		{name: "expired", header: "Bearer " + auToken(t, expired), token: auToken(t, expired), reason: "expired"},
		{name: "not yet valid", header: "Bearer " + auToken(t, notYet), token: auToken(t, notYet), reason: "not valid yet"},
		{name: "alg none", header: "Bearer " + auAlgNone(t, good), token: auAlgNone(t, good), reason: "token"},
		{name: "alg none in query", query: auAlgNone(t, good), token: auAlgNone(t, good), reason: "token"},
		{name: "RS256", header: "Bearer " + auSign(t, jwt.SigningMethodRS256, rsaKey, good),
			token: auSign(t, jwt.SigningMethodRS256, rsaKey, good), reason: "token"},
		{name: "HS512 with the right secret", header: "Bearer " + auSign(t, jwt.SigningMethodHS512, auSecret, good),
			token: auSign(t, jwt.SigningMethodHS512, auSecret, good), reason: "token"},
		{name: "HS384 with the right secret", header: "Bearer " + auSign(t, jwt.SigningMethodHS384, auSecret, good),
			token: auSign(t, jwt.SigningMethodHS384, auSecret, good), reason: "token"},
		{name: "missing sub", header: "Bearer " + auToken(t, noSub), token: auToken(t, noSub), reason: "sub"},
		{name: "bad role", header: "Bearer " + auToken(t, badRole), token: auToken(t, badRole), reason: "role"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, opts := s.url, &websocket.DialOptions{}
			if tc.header != "" {
				opts.HTTPHeader = http.Header{"Authorization": {tc.header}}
			}
			if tc.query != "" {
				u += "?token=" + url.QueryEscape(tc.query)
			}
			body := auRefused(t, u, opts, http.StatusUnauthorized, tc.token)
			if !strings.Contains(strings.ToLower(body), strings.ToLower(tc.reason)) {
				t.Errorf("reason %q does not say %q", body, tc.reason)
			}
		})
	}

	// Nothing was admitted, and the log has at most a line a second, the
	// first at once, with no token.
	elapsed := time.Since(start)
	if v := mustMetric(t, s, "sessionhub_connections"); v != 0 {
		t.Errorf("sessionhub_connections = %v after refused upgrades", v)
	}
	log := logs.String()
	if n := strings.Count(log, "upgrade refused"); n < 1 || n > 1+int(elapsed/time.Second) {
		t.Errorf("%d refusal lines for %d cases in %v:\n%s", n, len(cases), elapsed, log)
	}
	if !strings.Contains(log, "count=1") {
		t.Errorf("the first line does not count its refusal:\n%s", log)
	}
	for _, tc := range cases {
		if tc.token != "" && strings.Contains(log, tc.token) {
			t.Errorf("%s: the log quotes the token:\n%s", tc.name, log)
		}
	}
	// The hub still takes a good token.
	p := auDial(t, s, auToken(t, good))
	if sj := p.join("s", "", "", ""); sj.SelfID != "alice" {
		t.Errorf("selfId = %q, want alice", sj.SelfID)
	}
}

// A good token is taken from the Authorization header (any case of
// "Bearer") and from the token query parameter.
func TestAuthAccepted(t *testing.T) {
	s := startServer(t, &hub.Options{JWTSecret: auSecret})
	tok := auToken(t, auClaims("u-header", "Header", "", nil, time.Hour))
	qtok := auToken(t, auClaims("u-query", "Query", "", nil, time.Hour))
	for _, tc := range []struct {
		name string
		url  string
		opts *websocket.DialOptions
		want string
	}{
		{"header", s.url, auOpts(tok), "u-header"},
		{"header lower-case scheme", s.url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"bearer " + tok}}}, "u-header"},
		{"query", s.url + "?token=" + url.QueryEscape(qtok), nil, "u-query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dialURL(t, tc.url, tc.opts)
			sj := p.join("acc", "", "", "")
			if sj.SelfID != tc.want {
				t.Errorf("selfId = %q, want %q", sj.SelfID, tc.want)
			}
			for _, pp := range sj.Participants {
				if pp.UserID == tc.want && pp.Role != protocol.RoleLearner {
					t.Errorf("role = %q, want the default learner", pp.Role)
				}
			}
		})
	}
}

// auFind returns the participant with userID in ps.
func auFind(t testing.TB, ps []protocol.Participant, userID string) protocol.Participant {
	t.Helper()
	for _, p := range ps {
		if p.UserID == userID {
			return p
		}
	}
	t.Fatalf("no %s in %v", userID, ids(ps))
	return protocol.Participant{}
}

// In token mode the token decides who a participant is: the client's
// userId and role are ignored, the name claim wins over userInfo.name, and
// without a name claim userInfo.name is needed.
func TestAuthTokenDecides(t *testing.T) {
	s := startServer(t, &hub.Options{JWTSecret: auSecret})
	obs := auDial(t, s, auToken(t, auClaims("obs", "Observer", "instructor", nil, time.Hour)))
	obs.join("td", "", "", "")

	joinAs := func(t *testing.T, tok string, info map[string]any) (*peer, protocol.SessionJoined) {
		t.Helper()
		p := auDial(t, s, tok)
		data := map[string]any{"sessionId": "td"}
		if info != nil {
			data["userInfo"] = info
		}
		sj, _ := e2eJoin(p, data, "j")
		return p, sj
	}

	t.Run("learner claiming instructor", func(t *testing.T) {
		tok := auToken(t, auClaims("lea", "Lea", "learner", nil, time.Hour))
		lea, sj := joinAs(t, tok, map[string]any{"userId": "mallory", "name": "Mallory", "role": "instructor"})
		if sj.SelfID != "lea" {
			t.Errorf("selfId = %q, want the token's sub lea", sj.SelfID)
		}
		me := auFind(t, sj.Participants, "lea")
		if me.Role != protocol.RoleLearner || me.Name != "Lea" {
			t.Errorf("participant %+v, want learner named Lea", me)
		}
		for _, p := range sj.Participants {
			if p.UserID == "mallory" {
				t.Errorf("the client's userId made it into the list: %+v", p)
			}
		}
		var uj protocol.UserJoined
		obs.skipUntil(protocol.TypeUserJoined, &uj)
		if uj.User.UserID != "lea" || uj.User.Role != protocol.RoleLearner {
			t.Errorf("others see %+v, want learner lea", uj.User)
		}
		// Instructor-only broadcasts do not reach it.
		obs.send(protocol.TypeBroadcast, map[string]any{"event": "secret", "to": "instructors"}, "b")
		obs.skipUntil(protocol.TypeAck, nil)
		lea.quiet("a learner got an instructors' broadcast", protocol.TypeBroadcast)
	})
	t.Run("instructor token, client says learner", func(t *testing.T) {
		tok := auToken(t, auClaims("ivy", "Ivy", "instructor", nil, time.Hour))
		_, sj := joinAs(t, tok, map[string]any{"userId": "x", "name": "X", "role": "learner"})
		if me := auFind(t, sj.Participants, "ivy"); me.Role != protocol.RoleInstructor || me.Name != "Ivy" {
			t.Errorf("participant %+v, want instructor named Ivy", me)
		}
	})
	t.Run("name claim and no userInfo", func(t *testing.T) {
		tok := auToken(t, auClaims("nat", "Nat", "", nil, time.Hour))
		_, sj := joinAs(t, tok, nil)
		if me := auFind(t, sj.Participants, "nat"); me.Name != "Nat" {
			t.Errorf("name %q, want Nat", me.Name)
		}
	})
	t.Run("no name claim, no userInfo.name", func(t *testing.T) {
		tok := auToken(t, auClaims("nameless", "", "", nil, time.Hour))
		p := auDial(t, s, tok)
		p.send(protocol.TypeJoinSession, map[string]any{"sessionId": "td", "userInfo": map[string]any{"userId": "x"}}, "j1")
		p.expectError(protocol.CodeBadRequest, "j1")
		p.send(protocol.TypeJoinSession, map[string]any{"sessionId": "td"}, "j2")
		p.expectError(protocol.CodeBadRequest, "j2")
	})
	t.Run("no name claim, userInfo.name", func(t *testing.T) {
		tok := auToken(t, auClaims("nina", "", "", nil, time.Hour))
		_, sj := joinAs(t, tok, map[string]any{"name": "Nina From Client", "role": "instructor"})
		if me := auFind(t, sj.Participants, "nina"); me.Name != "Nina From Client" || me.Role != protocol.RoleLearner {
			t.Errorf("participant %+v, want learner named Nina From Client", me)
		}
	})
	obs.sync()
}

// The sessions claim limits which sessions a token may join.
func TestAuthSessionsClaim(t *testing.T) {
	s := startServer(t, &hub.Options{JWTSecret: auSecret})
	p := auDial(t, s, auToken(t, auClaims("sam", "Sam", "", []string{"sa", "sb"}, time.Hour)))
	if sj := p.join("sa", "", "", ""); sj.SessionID != "sa" || sj.SelfID != "sam" {
		t.Fatalf("joined %+v", sj)
	}
	p.send(protocol.TypeJoinSession, map[string]any{"sessionId": "other"}, "f")
	p.expectError(protocol.CodeForbidden, "f")
	// Still in sa, and may move to sb.
	p.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 1}, "")
	if sj := p.join("sb", "", "", ""); sj.SessionID != "sb" {
		t.Fatalf("joined %+v", sj)
	}
	// The forbidden session was not created.
	other := auDial(t, s, auToken(t, auClaims("olga", "Olga", "", nil, time.Hour)))
	if sj := other.join("other", "", "", ""); len(sj.Participants) != 1 {
		t.Errorf("session other has %v", ids(sj.Participants))
	}
}

// When the token expires during a connection the hub closes it with 4001;
// the others see the user leave after the grace (not a clean close).
func TestAuthTokenExpiry(t *testing.T) {
	const grace = 300 * time.Millisecond
	s := startServer(t, &hub.Options{JWTSecret: auSecret, LeaveGrace: grace})
	obs := auDial(t, s, auToken(t, auClaims("obs", "Obs", "", nil, time.Hour)))
	obs.join("ex", "", "", "")
	// exp is in whole seconds: 1 to 2 s from now.
	briefClaims := auClaims("brief", "Brief", "", nil, 2*time.Second)
	exp := briefClaims.ExpiresAt.Time // the server closes at exp, not before
	short := auDial(t, s, auToken(t, briefClaims))
	short.join("ex", "", "", "")
	obs.expect(protocol.TypeUserJoined, nil)

	if code := short.closed(); code != websocket.StatusCode(protocol.CloseTokenExpired) {
		t.Fatalf("connection ended with %v, want 4001", code)
	}
	if now := time.Now(); now.Before(exp) {
		t.Errorf("closed %v before the token's exp", exp.Sub(now))
	}
	// The grace starts after the close, itself at exp or later: user-left
	// comes grace after exp at the earliest (this test seeing it late only
	// adds to that).
	m := obs.skipUntilMatch("user-left of brief", isUserLeft("brief"))
	if left := time.Since(exp); left < grace {
		t.Errorf("user-left %v after exp, before the %v grace", left, grace)
	}
	var ul protocol.UserLeft
	decode(t, m, &ul)
	if ul.Participants == nil || !sameIDs(*ul.Participants, "obs") {
		t.Errorf("user-left participants = %+v, want obs alone", ul.Participants)
	}
	obs.sync()
}

// A refused join does not meet the handshake timeout: a client whose only
// join was forbidden is closed with 1008 like one that never joined, while a
// client that joined stays past the timeout.
func TestHandshakeNeedsASuccessfulJoin(t *testing.T) {
	s := startServer(t, &hub.Options{JWTSecret: auSecret, HandshakeTimeout: 300 * time.Millisecond})
	q := auDial(t, s, auToken(t, auClaims("u2", "U2", "learner", []string{"allowed"}, time.Hour)))
	q.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: "allowed"}, "j")
	q.expect(protocol.TypeSessionJoined, nil)

	p := auDial(t, s, auToken(t, auClaims("u1", "U1", "learner", []string{"allowed"}, time.Hour)))
	p.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: "other"}, "j")
	var e protocol.ErrorPayload
	p.expect(protocol.TypeError, &e)
	if e.Code != protocol.CodeForbidden {
		t.Fatalf("join: %s, want forbidden", e.Code)
	}
	if got := p.closed(); got != websocket.StatusPolicyViolation {
		t.Errorf("close = %v, want 1008 after the handshake timeout", got)
	}
	// q joined before p and its timeout has passed too: it is still served.
	q.sync()
	other := auDial(t, s, auToken(t, auClaims("u3", "U3", "learner", nil, time.Hour)))
	other.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: "allowed"}, "j")
	other.expect(protocol.TypeSessionJoined, nil)
	q.expect(protocol.TypeUserJoined, nil)
}

// auRawToken signs payload, a claims object written by hand, with auSecret
// (HS256), so that a test can give a claim twice or in another case.
func auRawToken(t testing.TB, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(signing, auSecret)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

// The token traps of the v1.1 hardening: exp is required, claim names are
// matched exactly, a claim given twice makes the token invalid, and a sub
// or name with a control character is refused, all with 401; a token whose
// sessions claim is an empty list joins no session, whether minted by
// NewToken or by hand.
func TestAuthTokenTraps(t *testing.T) {
	s := startServer(t, &hub.Options{JWTSecret: auSecret})
	exp := time.Now().Add(time.Hour).Unix()
	refused := []struct{ name, payload, reason string }{
		{"no exp", `{"sub":"alice","name":"A"}`, "missing"},
		{"exp in upper case", fmt.Sprintf(`{"sub":"alice","EXP":%d}`, exp), "missing"},
		{"sub in another case", fmt.Sprintf(`{"Sub":"alice","exp":%d}`, exp), "sub"},
		{"sessions twice, null last", fmt.Sprintf(`{"sub":"alice","exp":%d,"sessions":["a"],"sessions":null}`, exp), "twice"},
		{"sessions twice, list last", fmt.Sprintf(`{"sub":"alice","exp":%d,"sessions":null,"sessions":["a"]}`, exp), "twice"},
		{"sub twice", fmt.Sprintf(`{"sub":"alice","sub":"bob","exp":%d}`, exp), "twice"},
		{"exp twice", fmt.Sprintf(`{"sub":"alice","exp":%d,"exp":%d}`, exp, exp+3600), "twice"},
		{"sub twice, one escaped", fmt.Sprintf(`{"sub":"alice","s\u0075b":"bob","exp":%d}`, exp), "twice"},
		{"sessions null", fmt.Sprintf(`{"sub":"alice","exp":%d,"sessions":null}`, exp), "sessions"},
		{"sessions not a list", fmt.Sprintf(`{"sub":"alice","exp":%d,"sessions":"a"}`, exp), "sessions"},
		{"sub not a string", fmt.Sprintf(`{"sub":42,"exp":%d}`, exp), "sub"},
		{"sub with NUL", fmt.Sprintf(`{"sub":"x\u0000y","exp":%d}`, exp), "control"},
		{"sub with a newline", fmt.Sprintf(`{"sub":"x\ny","exp":%d}`, exp), "control"},
		{"sub with DEL", fmt.Sprintf(`{"sub":"x\u007fy","exp":%d}`, exp), "control"},
		{"name with ESC", fmt.Sprintf(`{"sub":"x","name":"\u001b[31mA","exp":%d}`, exp), "control"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			tok := auRawToken(t, tc.payload)
			body := auRefused(t, s.url, auOpts(tok), http.StatusUnauthorized, tok)
			if !strings.Contains(strings.ToLower(body), tc.reason) {
				t.Errorf("reason %q does not say %q", body, tc.reason)
			}
		})
	}

	t.Run("NewToken keeps an empty sessions list", func(t *testing.T) {
		tok := auToken(t, auClaims("nobody", "N", "", []string{}, time.Hour))
		claims := jwt.MapClaims{}
		if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
			t.Fatal(err)
		}
		if l, ok := claims["sessions"].([]any); !ok || len(l) != 0 {
			t.Fatalf("sessions claim = %#v, want []", claims["sessions"])
		}
		p := auDial(t, s, tok)
		p.send(protocol.TypeJoinSession, map[string]any{"sessionId": "any"}, "e")
		p.expectError(protocol.CodeForbidden, "e")
	})
	t.Run("an empty sessions list by hand", func(t *testing.T) {
		p := auDial(t, s, auRawToken(t, fmt.Sprintf(`{"sub":"none","name":"N","exp":%d,"sessions":[]}`, exp)))
		p.send(protocol.TypeJoinSession, map[string]any{"sessionId": "any"}, "e")
		p.expectError(protocol.CodeForbidden, "e")
	})
	t.Run("Sessions in another case is not the claim", func(t *testing.T) {
		// Not the sessions claim, so it limits nothing; and exact names
		// mean the hub and the platform read the same token the same way.
		p := auDial(t, s, auRawToken(t, fmt.Sprintf(`{"sub":"cased","name":"C","exp":%d,"Sessions":[]}`, exp)))
		if sj := p.join("cased-s", "", "", ""); sj.SelfID != "cased" {
			t.Errorf("selfId %q", sj.SelfID)
		}
	})
}
