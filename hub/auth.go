package hub

// This file verifies tokens. Its functions hold no state and may run on any
// goroutine: authenticate on the upgrade's (ServeWS, ServeSSE), parseToken
// there and on a reader (refresh-token, through verifyRefresh), NewToken on
// its caller's. The keys they verify with are the verifier's (keys.go).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/protocol"
)

// Claims are the JWT claims of token mode: sub is the userId; name, role
// (instructor or learner, default learner) and sessions (the session ids the
// token may join: nil, and so absent from the token, means any; an empty,
// non-nil list means none and is signed as "sessions": []) complete it; exp
// is required, nbf is honoured.
type Claims struct {
	jwt.RegisteredClaims
	Name     string   `json:"name,omitempty"`
	Role     string   `json:"role,omitempty"`
	Sessions []string `json:"sessions,omitzero"`
}

// NewToken signs claims with secret (HS256). It is what hubd's token
// subcommand and the tests use; production tokens come from the platform.
// An empty, non-nil c.Sessions stays in the token as "sessions": [] (no
// session allowed).
func NewToken(secret []byte, c Claims) (string, error) {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// identity is who a verified token says a connection is. It is set before
// the connection is served; refresh-token replaces it (run does) with the
// identity of a newer token of the same sub.
type identity struct {
	userID   string
	name     string
	role     protocol.Role
	sessions []string  // nil: any
	expires  time.Time // zero: never
}

// mayJoin reports whether the token allows session id.
func (id *identity) mayJoin(session string) bool {
	return id.sessions == nil || slices.Contains(id.sessions, session)
}

// errNoToken is the reason for a request that carries no token.
var errNoToken = errors.New("no token: send Authorization: Bearer <jwt> or ?token=<jwt>")

// authenticate verifies the upgrade request's token: from the Authorization
// header (Bearer) or the token query parameter, verified by one of v's keys
// with that key's algorithm (alg none and every other algorithm are
// refused), within exp and nbf, with v's iss and aud. The error is a
// one-line reason for a 401 that never quotes the token.
func authenticate(r *http.Request, v *verifier, now time.Time) (*identity, error) {
	raw := ""
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return nil, errors.New("the Authorization header is not a Bearer token")
		}
		raw = strings.TrimSpace(tok)
	} else {
		raw = r.URL.Query().Get("token")
	}
	if raw == "" {
		return nil, errNoToken
	}
	return parseToken(raw, v, now)
}

// parseToken verifies a token string; see authenticate. Besides the
// signature (by one of v's keys, with that key's algorithm) it requires exp,
// and it reads the claims itself, exactly: a claim name matches only in its
// own case ("Sessions" is not "sessions"), and a claim given twice makes the
// token invalid, so that no two readers of one token can disagree on what it
// allows.
func parseToken(raw string, v *verifier, now time.Time) (*identity, error) {
	p := v.parser(jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return now }))
	mc := jwt.MapClaims{}
	if _, err := p.ParseWithClaims(raw, mc, v.keyfunc); err != nil {
		return nil, tokenReason(err)
	}
	parts := strings.Split(raw, ".")
	payload, err := p.DecodeSegment(parts[1]) // the parser took three parts
	if err != nil {
		return nil, jwt.ErrTokenMalformed
	}
	c, err := exactClaims(payload)
	if err != nil {
		return nil, err
	}
	id := &identity{role: protocol.RoleLearner, sessions: c.sessions}
	if err := c.str("sub", &id.userID); err != nil {
		return nil, err
	}
	if err := c.str("name", &id.name); err != nil {
		return nil, err
	}
	var role string
	if err := c.str("role", &role); err != nil {
		return nil, err
	}
	switch {
	case id.userID == "":
		return nil, errors.New("token has no sub")
	case len(id.userID) > protocol.MaxUserIDBytes:
		return nil, fmt.Errorf("token's sub is over %d bytes", protocol.MaxUserIDBytes)
	case !protocol.ValidText(id.userID):
		return nil, errors.New("token's sub is not UTF-8 text without control characters")
	case utf8.RuneCountInString(id.name) > protocol.MaxNameChars:
		return nil, fmt.Errorf("token's name is over %d characters", protocol.MaxNameChars)
	case !protocol.ValidText(id.name):
		return nil, errors.New("token's name is not UTF-8 text without control characters")
	}
	switch r := protocol.Role(role); r {
	case "":
	case protocol.RoleInstructor, protocol.RoleLearner:
		id.role = r
	default:
		return nil, fmt.Errorf("token's role must be %q or %q", protocol.RoleInstructor, protocol.RoleLearner)
	}
	exp, err := mc.GetExpirationTime()
	if err != nil || exp == nil { // the parser required and checked it
		return nil, jwt.ErrTokenRequiredClaimMissing
	}
	id.expires = exp.Time
	return id, nil
}

// tokenClaims are a token's claims by their exact names, each given once.
type tokenClaims struct {
	raw      map[string]json.RawMessage
	sessions []string // nil: any
}

// exactClaims reads a token's payload: a JSON object whose member names are
// compared exactly and must be unique. It decodes sessions (absent: any; a
// list of strings, maybe empty: those; anything else, null included, is
// invalid).
func exactClaims(payload []byte) (*tokenClaims, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("token's claims are not a JSON object")
	}
	c := &tokenClaims{raw: map[string]json.RawMessage{}}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, errors.New("token's claims are not a JSON object")
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New("token's claims are not a JSON object")
		}
		if _, dup := c.raw[name]; dup {
			return nil, fmt.Errorf("token has the claim %q twice", truncateClaim(name))
		}
		c.raw[name] = v
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, errors.New("token's claims are not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("token's claims are not one JSON object")
	}
	if v, ok := c.raw["sessions"]; ok {
		if string(v) == "null" || json.Unmarshal(v, &c.sessions) != nil {
			return nil, errors.New("token's sessions must be a list of session ids")
		}
		if c.sessions == nil {
			c.sessions = []string{}
		}
	}
	return c, nil
}

// str reads the string claim name into dst; absent leaves dst alone, and
// anything but a string is invalid.
func (c *tokenClaims) str(name string, dst *string) error {
	v, ok := c.raw[name]
	if !ok {
		return nil
	}
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, dst) != nil {
		return fmt.Errorf("token's %s must be a string", name)
	}
	return nil
}

// truncateClaim shortens a claim name for an error message, as printable
// text.
func truncateClaim(name string) string {
	if len(name) > 32 || !protocol.ValidText(name) {
		return "…"
	}
	return name
}

// verifyRefresh verifies the token of a refresh-token as an upgrade's is
// verified; a token that does not verify is invalid_token, with a reason
// that never quotes it. In open mode there is no token to refresh:
// bad_request.
func (h *Hub) verifyRefresh(raw string, now time.Time) (*identity, *protocol.Error) {
	if h.tokens == nil {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "refresh-token needs token mode (the hub has no keys)")
	}
	id, err := parseToken(raw, h.tokens, now)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInvalidToken, "%v", err)
	}
	return id, nil
}

// lastPart is what follows the last ": " of s.
func lastPart(s string) string {
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// tokenReason turns a parse error into a short reason without the token;
// errors.Is finds jwt.ErrTokenUnverifiable and the other jwt errors it names
// in it (a missing claim's reason is its own).
func tokenReason(err error) error {
	var nk *noKeyError
	if errors.As(err, &nk) {
		// Which key was missing is no secret: "no RS256 key", "unknown key id".
		return fmt.Errorf("%w: %s", jwt.ErrTokenUnverifiable, nk.why)
	}
	if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
		// jwt's text names the claim ("iss claim is required"), never a value.
		return errors.New("token is missing a required claim: " + lastPart(err.Error()))
	}
	for _, known := range []error{jwt.ErrTokenExpired, jwt.ErrTokenNotValidYet, jwt.ErrTokenSignatureInvalid,
		jwt.ErrTokenUnverifiable, jwt.ErrTokenMalformed, jwt.ErrTokenUsedBeforeIssued,
		jwt.ErrTokenInvalidIssuer, jwt.ErrTokenInvalidAudience} {
		if errors.Is(err, known) {
			if known == jwt.ErrTokenUnverifiable {
				return fmt.Errorf("%w: only %s are accepted, each with its own keys", known, strings.Join(tokenMethods, ", "))
			}
			return known
		}
	}
	return errors.New("token is invalid")
}
