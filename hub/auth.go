package hub

import (
	"errors"
	"fmt"
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
// token may join: absent means any, an empty list none) complete it; exp
// and nbf are honoured.
type Claims struct {
	jwt.RegisteredClaims
	Name     string   `json:"name,omitempty"`
	Role     string   `json:"role,omitempty"`
	Sessions []string `json:"sessions,omitempty"`
}

// NewToken signs claims with secret (HS256). It is what hubd's token
// subcommand and the tests use; production tokens come from the platform.
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
// header (Bearer) or the token query parameter, HS256 only (alg none and
// every other algorithm are refused), signed with secret, within exp and
// nbf. The error is a one-line reason for a 401 that never quotes the token.
func authenticate(r *http.Request, secret []byte, now time.Time) (*identity, error) {
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
	return parseToken(raw, secret, now)
}

// parseToken verifies a token string; see authenticate.
func parseToken(raw string, secret []byte, now time.Time) (*identity, error) {
	var c Claims
	p := jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithTimeFunc(func() time.Time { return now }))
	if _, err := p.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return secret, nil }); err != nil {
		return nil, tokenReason(err)
	}
	id := &identity{userID: c.Subject, name: c.Name, role: protocol.Role(c.Role)}
	switch {
	case id.userID == "":
		return nil, errors.New("token has no sub")
	case len(id.userID) > protocol.MaxUserIDBytes || !utf8.ValidString(id.userID):
		return nil, fmt.Errorf("token's sub is over %d bytes", protocol.MaxUserIDBytes)
	case utf8.RuneCountInString(id.name) > protocol.MaxNameChars:
		return nil, fmt.Errorf("token's name is over %d characters", protocol.MaxNameChars)
	}
	switch id.role {
	case "":
		id.role = protocol.RoleLearner
	case protocol.RoleInstructor, protocol.RoleLearner:
	default:
		return nil, fmt.Errorf("token's role must be %q or %q", protocol.RoleInstructor, protocol.RoleLearner)
	}
	if c.Sessions != nil {
		id.sessions = c.Sessions
	}
	if c.ExpiresAt != nil {
		id.expires = c.ExpiresAt.Time
	}
	return id, nil
}

// verifyRefresh verifies the token of a refresh-token as an upgrade's is
// verified; a token that does not verify is invalid_token, with a reason
// that never quotes it. In open mode there is no token to refresh:
// bad_request.
func (h *Hub) verifyRefresh(raw string, now time.Time) (*identity, *protocol.Error) {
	if h.opts.JWTSecret == nil {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "refresh-token needs token mode (the hub has no keys)")
	}
	id, err := parseToken(raw, h.opts.JWTSecret, now)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInvalidToken, "%v", err)
	}
	return id, nil
}

// tokenReason turns a parse error into a short reason without the token.
func tokenReason(err error) error {
	for _, known := range []error{jwt.ErrTokenExpired, jwt.ErrTokenNotValidYet, jwt.ErrTokenSignatureInvalid,
		jwt.ErrTokenUnverifiable, jwt.ErrTokenMalformed, jwt.ErrTokenUsedBeforeIssued} {
		if errors.Is(err, known) {
			if errors.Is(err, jwt.ErrTokenUnverifiable) {
				return errors.New("token is unverifiable: only HS256 is accepted")
			}
			return known
		}
	}
	return errors.New("token is invalid")
}
