package hub_test

// refresh-token on a live connection (contract: v1.1 "Token refresh and
// keys"), over real WebSockets: the answer to each token, what a refused
// refresh leaves in force, and a connection kept past its first token's
// exp by refreshes.

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// rfClaims are auClaims whose exp is at least ttl from now: jwt's
// NumericDate keeps whole seconds, so the time is rounded up, not down.
func rfClaims(sub, name, role string, sessions []string, ttl time.Duration) hub.Claims {
	c := auClaims(sub, name, role, sessions, ttl)
	exp := time.Now().Add(ttl).Truncate(time.Second).Add(time.Second)
	c.ExpiresAt = jwt.NewNumericDate(exp)
	return c
}

// rfRefresh sends refresh-token with tok and ref, and returns the answer
// (token-refreshed or error), skipping nothing else: the connection is
// expected to be quiet otherwise.
func rfRefresh(p *peer, tok, ref string) protocol.Envelope {
	p.t.Helper()
	p.send(protocol.TypeRefreshToken, protocol.RefreshToken{Token: tok}, ref)
	m := p.skipUntilAny(protocol.TypeTokenRefreshed, protocol.TypeError)
	if m.Ref != ref {
		p.t.Fatalf("%s carries ref %q, want %q", m.Type, m.Ref, ref)
	}
	return m
}

// rfExpiresAt is the exp of c as the wire carries it.
func rfExpiresAt(c hub.Claims) time.Time { return c.ExpiresAt.Time }

// session-joined carries the token's exp; token-refreshed the new one;
// the refreshed name and role apply at the next join.
func TestRefreshTokenAccepted(t *testing.T) {
	s := startServer(t, &hub.Options{JWTSecret: auSecret})
	first := rfClaims("ada", "Ada", "learner", []string{"r1", "r2"}, time.Hour)
	p := auDial(t, s, auToken(t, first))
	sj := p.join("r1", "", "", "")
	if sj.ExpiresAt == nil || !sj.ExpiresAt.Equal(rfExpiresAt(first)) {
		t.Fatalf("session-joined expiresAt = %v, want %v", sj.ExpiresAt, rfExpiresAt(first))
	}

	second := rfClaims("ada", "Ada Lovelace", "instructor", []string{"r1", "r2"}, 2*time.Hour)
	m := rfRefresh(p, auToken(t, second), "rf1")
	if m.Type != protocol.TypeTokenRefreshed {
		t.Fatalf("refresh answered %s %s, want token-refreshed", m.Type, m.Data)
	}
	var tr protocol.TokenRefreshed
	decode(t, m, &tr)
	if !tr.ExpiresAt.Equal(rfExpiresAt(second)) {
		t.Errorf("token-refreshed expiresAt = %v, want %v", tr.ExpiresAt, rfExpiresAt(second))
	}
	var raw map[string]any
	if err := json.Unmarshal(m.Data, &raw); err != nil {
		t.Fatal(err)
	}
	if s, _ := raw["expiresAt"].(string); s == "" {
		t.Errorf("expiresAt on the wire = %v, want an RFC 3339 string", raw["expiresAt"])
	} else if _, err := time.Parse(time.RFC3339, s); err != nil {
		t.Errorf("expiresAt %q is not RFC 3339: %v", s, err)
	}

	// The participant keeps its name and role until it joins again.
	var ps []protocol.Participant
	p.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: "r2"}, "j2")
	var sj2 protocol.SessionJoined
	p.expect(protocol.TypeSessionJoined, &sj2)
	ps = sj2.Participants
	got := auFind(t, ps, "ada")
	if got.Name != "Ada Lovelace" || got.Role != protocol.RoleInstructor {
		t.Errorf("after the refresh and a join: %+v, want Ada Lovelace, instructor", got)
	}
	if sj2.ExpiresAt == nil || !sj2.ExpiresAt.Equal(rfExpiresAt(second)) {
		t.Errorf("second session-joined expiresAt = %v, want %v", sj2.ExpiresAt, rfExpiresAt(second))
	}
}

// Every refresh the contract refuses gets its code with the ref, quotes no
// token, and leaves the old token in force: the connection is served, and
// closed with 4001 at the old exp, not before and not later.
func TestRefreshTokenRefused(t *testing.T) {
	s := startServer(t, &hub.Options{JWTSecret: auSecret, LeaveGrace: -1})
	// The connection's token lives 3 to 4 s: enough for the refusals
	// below on a busy machine, short enough to see it expire.
	old := rfClaims("bob", "Bob", "learner", []string{"room", "other"}, 3*time.Second)
	p := auDial(t, s, auToken(t, old))
	p.join("room", "", "", "")

	otherKey := []byte("another-secret-0123456789abcdef!")
	tests := []struct {
		name string
		tok  string
		code protocol.Code
	}{
		{"garbage", "not a token at all", protocol.CodeInvalidToken},
		{"three garbage segments", "a.b.c", protocol.CodeInvalidToken},
		{"another secret", auSign(t, jwt.SigningMethodHS256, otherKey, rfClaims("bob", "", "", nil, time.Hour)), protocol.CodeInvalidToken},
		{"alg none", auAlgNone(t, rfClaims("bob", "", "", nil, time.Hour)), protocol.CodeInvalidToken},
		{"expired", auToken(t, auClaims("bob", "", "", nil, -time.Minute)), protocol.CodeInvalidToken},
		{"another sub", auToken(t, rfClaims("eve", "", "", nil, time.Hour)), protocol.CodeForbidden},
		{"sessions without the current one", auToken(t, rfClaims("bob", "", "", []string{"other"}, time.Hour)), protocol.CodeForbidden},
		{"sessions empty", auSign(t, jwt.SigningMethodHS256, auSecret, jwt.MapClaims{"sub": "bob",
			"exp": time.Now().Add(time.Hour).Unix(), "sessions": []string{}}), protocol.CodeForbidden},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := "bad" + string(rune('a'+i))
			m := rfRefresh(p, tt.tok, ref)
			if m.Type != protocol.TypeError {
				t.Fatalf("answered %s %s, want error %s", m.Type, m.Data, tt.code)
			}
			var e protocol.ErrorPayload
			decode(t, m, &e)
			if e.Code != tt.code {
				t.Errorf("code = %s (%s), want %s", e.Code, e.Message, tt.code)
			}
			if len(tt.tok) > 8 && strings.Contains(string(m.Data), tt.tok[len(tt.tok)-8:]) {
				t.Errorf("the error quotes the token: %s", m.Data)
			}
		})
	}
	// A malformed refresh-token is a bad_request like any malformed message.
	p.send(protocol.TypeRefreshToken, map[string]any{"token": 42}, "shape")
	var e protocol.ErrorPayload
	if m := p.expect(protocol.TypeError, &e); e.Code != protocol.CodeBadRequest || m.Ref != "shape" {
		t.Errorf("token of a number: %s %q, want bad_request with ref shape", e.Code, m.Ref)
	}

	// Still served under the old token, in its session.
	p.sync()
	if v := metricValue(t, s, `sessionhub_server_closes_total{reason="token_expired"}`); v != 0 {
		t.Fatalf("token_expired closes = %v before the old exp", v)
	}
	// The old token ends the connection at its exp.
	if code := p.closed(); code != websocket.StatusCode(protocol.CloseTokenExpired) {
		t.Fatalf("closed with %v, want 4001 at the old token's exp", code)
	}
	if now := time.Now(); now.Before(rfExpiresAt(old)) {
		t.Errorf("closed %v before the old token's exp", rfExpiresAt(old).Sub(now))
	}
	if v := metricValue(t, s, `sessionhub_server_closes_total{reason="token_expired"}`); v != 1 {
		t.Errorf("token_expired closes = %v, want 1", v)
	}
}

// In open mode there is no token to refresh: bad_request, and the
// connection goes on.
func TestRefreshTokenOpenMode(t *testing.T) {
	s := startServer(t, nil)
	p := dial(t, s, nil)
	sj := p.join("open", "u", "U", "")
	if sj.ExpiresAt != nil {
		t.Errorf("open mode session-joined expiresAt = %v, want none", sj.ExpiresAt)
	}
	m := rfRefresh(p, auToken(t, rfClaims("u", "", "", nil, time.Hour)), "o")
	var e protocol.ErrorPayload
	decode(t, m, &e)
	if m.Type != protocol.TypeError || e.Code != protocol.CodeBadRequest {
		t.Errorf("open mode refresh: %s %s, want error bad_request", m.Type, m.Data)
	}
	p.sync()
}

// A connection whose 2-second token is refreshed every second stays up for
// 10 s (the server closes nothing and its participant never leaves); the
// same connection, once it stops refreshing, ends with 4001.
func TestRefreshTokenKeepsConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 10 s")
	}
	s := startServer(t, &hub.Options{JWTSecret: auSecret, LeaveGrace: -1})
	obs := auDial(t, s, auToken(t, rfClaims("obs", "Obs", "", nil, time.Hour)))
	obs.join("class", "", "", "")
	p := auDial(t, s, auToken(t, rfClaims("kid", "Kid", "", nil, 2*time.Second)))
	p.join("class", "", "", "")
	obs.expect(protocol.TypeUserJoined, nil)

	// The cadence of the refreshes is the scenario, not a wait for an event.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.Now().Add(10 * time.Second)
	var last time.Time
	for n := 0; time.Now().Before(end); n++ {
		<-tick.C
		c := rfClaims("kid", "Kid", "", nil, 2*time.Second)
		m := rfRefresh(p, auToken(t, c), "k"+string(rune('a'+n%26)))
		if m.Type != protocol.TypeTokenRefreshed {
			t.Fatalf("refresh %d answered %s %s", n, m.Type, m.Data)
		}
		last = rfExpiresAt(c)
	}
	// Server-side: nothing closed, the participant never left.
	if v := metricValue(t, s, `sessionhub_server_closes_total{reason="token_expired"}`); v != 0 {
		t.Fatalf("token_expired closes = %v while refreshed", v)
	}
	if v := metricValue(t, s, "sessionhub_connections"); v != 2 {
		t.Fatalf("sessionhub_connections = %v, want 2", v)
	}
	obs.sync()
	select {
	case m := <-obs.msgs:
		t.Fatalf("the observer saw %s %s while the token was refreshed", m.Type, m.Data)
	default:
	}

	// Without refreshes the last token ends it.
	if code := p.closed(); code != websocket.StatusCode(protocol.CloseTokenExpired) {
		t.Fatalf("closed with %v, want 4001", code)
	}
	if now := time.Now(); now.Before(last) {
		t.Errorf("closed %v before the last token's exp", last.Sub(now))
	}
	obs.skipUntilMatch("user-left of kid", isUserLeft("kid"))
	if v := metricValue(t, s, `sessionhub_server_closes_total{reason="token_expired"}`); v != 1 {
		t.Errorf("token_expired closes = %v, want 1", v)
	}
}
