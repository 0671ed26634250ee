package hub_test

// The keys of token mode over real WebSockets (contract: v1.1 "Token
// refresh and keys"): several HS256 secrets, PEM public keys (RSA, ECDSA
// P-256, Ed25519), a JWKS served by an identity provider (an httptest
// server), iss and aud, rotation at run time, and the tokens that claim an
// algorithm their key does not have.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/internal/jwttest"
	"github.com/sessionhub/sessionhub/protocol"
)

// kyKeys are one key pair of each asymmetric type; RSA keys are slow to
// make, so the tests share them.
type kyKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	ec        *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
}

var (
	kyOnce sync.Once
	kyAll  kyKeys
)

func kyGen(t testing.TB) *kyKeys {
	t.Helper()
	kyOnce.Do(func() {
		var err error
		if kyAll.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if kyAll.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if kyAll.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, kyAll.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
	return &kyAll
}

// kyAccepted dials s with tok and checks that the upgrade and a join go
// through as sub.
func kyAccepted(t testing.TB, s *server, tok, sub string) *peer {
	t.Helper()
	p := auDial(t, s, tok)
	if sj := p.join("keys", "", "", ""); sj.SelfID != sub {
		t.Fatalf("selfId = %q, want %q", sj.SelfID, sub)
	}
	return p
}

// kyRefused dials s with tok and checks the 401, whose reason mentions
// reason and does not quote the token.
func kyRefused(t testing.TB, s *server, tok, reason string) {
	t.Helper()
	body := auRefused(t, s.url, auOpts(tok), http.StatusUnauthorized, tok)
	if !strings.Contains(strings.ToLower(body), strings.ToLower(reason)) {
		t.Errorf("401 reason %q does not say %q", body, reason)
	}
}

// Several secrets verify, and every public key type verifies with its own
// algorithm; a token that claims another algorithm than its key's, alg
// none, a public key's bytes used as an HS256 secret, and keys the hub
// does not have are refused.
func TestKeysStatic(t *testing.T) {
	k := kyGen(t)
	secrets, err := hub.ParseSecrets([]byte("# rotated 2026-12-01\nfirst-secret-0123456789abcdef\r\n\nsecond-secret-0123456789abcdef\n"))
	if err != nil {
		t.Fatal(err)
	}
	pemFile := append(append(jwttest.PEM(t, &k.rsa.PublicKey), jwttest.PEM(t, &k.ec.PublicKey)...), jwttest.PEM(t, k.ed.Public())...)
	pubs, err := hub.ParsePublicKeys(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 2 || len(pubs) != 3 {
		t.Fatalf("parsed %d secrets and %d keys, want 2 and 3", len(secrets), len(pubs))
	}
	s := startServer(t, &hub.Options{JWTKeys: hub.Keys{Secrets: secrets, PublicKeys: pubs}})
	c := func(sub string) hub.Claims { return rfClaims(sub, sub, "", nil, time.Hour) }

	accepted := []struct {
		name string
		tok  string
	}{
		{"HS256 with the first secret", jwttest.Sign(t, jwt.SigningMethodHS256, secrets[0], "", c("hs1"))},
		{"HS256 with the second secret", jwttest.Sign(t, jwt.SigningMethodHS256, secrets[1], "", c("hs2"))},
		{"RS256", jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "", c("rs"))},
		{"ES256", jwttest.Sign(t, jwt.SigningMethodES256, k.ec, "", c("es"))},
		{"EdDSA", jwttest.Sign(t, jwt.SigningMethodEdDSA, k.ed, "", c("ed"))},
		{"RS256 with a kid the PEM keys do not have", jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "some-kid", c("rskid"))},
	}
	for _, tt := range accepted {
		t.Run("accepted/"+tt.name, func(t *testing.T) {
			var cl hub.Claims
			if _, _, err := jwt.NewParser().ParseUnverified(tt.tok, &cl); err != nil {
				t.Fatal(err)
			}
			kyAccepted(t, s, tt.tok, cl.Subject)
		})
	}

	rsaPEM := jwttest.PEM(t, &k.rsa.PublicKey)
	refused := []struct {
		name, tok, reason string
	}{
		{"alg none", auAlgNone(t, c("x")), "token"},
		{"HS256 signed with the RSA public key's PEM", jwttest.Sign(t, jwt.SigningMethodHS256, rsaPEM, "", c("x")), "signature"},
		{"HS256 signed with the RSA modulus", jwttest.Sign(t, jwt.SigningMethodHS256, k.rsa.PublicKey.N.Bytes(), "", c("x")), "signature"},
		{"HS256 signed with the Ed25519 public key", jwttest.Sign(t, jwt.SigningMethodHS256, []byte(k.ed.Public().(ed25519.PublicKey)), "", c("x")), "signature"},
		{"ES256 signature claimed as RS256", jwttest.Retag(t, jwttest.Sign(t, jwt.SigningMethodES256, k.ec, "", c("x")), "RS256", ""), "signature"},
		{"RS256 signature claimed as ES256", jwttest.Retag(t, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "", c("x")), "ES256", ""), "signature"},
		{"EdDSA signature claimed as HS256", jwttest.Retag(t, jwttest.Sign(t, jwt.SigningMethodEdDSA, k.ed, "", c("x")), "HS256", ""), "signature"},
		{"RS512 with the right key", jwttest.Sign(t, jwt.SigningMethodRS512, k.rsa, "", c("x")), "invalid"},
		{"PS256 with the right key", jwttest.Sign(t, jwt.SigningMethodPS256, k.rsa, "", c("x")), "invalid"},
		{"RS256 with another key", jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa2, "", c("x")), "signature"},
		{"HS256 with another secret", jwttest.Sign(t, jwt.SigningMethodHS256, []byte("third-secret-0123456789abcdef"), "", c("x")), "signature"},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) { kyRefused(t, s, tt.tok, tt.reason) })
	}
}

// A hub with public keys only has no HS256 at all.
func TestKeysPublicOnly(t *testing.T) {
	k := kyGen(t)
	s := startServer(t, &hub.Options{JWTKeys: hub.Keys{PublicKeys: []crypto.PublicKey{&k.rsa.PublicKey}}})
	kyRefused(t, s, jwttest.Sign(t, jwt.SigningMethodHS256, jwttest.PEM(t, &k.rsa.PublicKey), "", rfClaims("x", "X", "", nil, time.Hour)), "no HS256 key")
	kyAccepted(t, s, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "", rfClaims("r", "R", "", nil, time.Hour)), "r")
}

// ParseSecrets and ParsePublicKeys refuse what the hub must not take.
func TestKeysParseRefuses(t *testing.T) {
	k := kyGen(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]string{
		"empty":            "",
		"comments only":    "# nothing\n\n",
		"a short secret":   "long-enough-secret-0123456789\nshort\n",
		"one short secret": "tooshort",
	} {
		if _, err := hub.ParseSecrets([]byte(in)); err == nil {
			t.Errorf("ParseSecrets(%s) took it", name)
		}
	}
	for name, in := range map[string][]byte{
		"empty":         nil,
		"not PEM":       []byte("ssh-rsa AAAA..."),
		"RSA 1024":      jwttest.PEM(t, &small.PublicKey),
		"ECDSA P-384":   jwttest.PEM(t, &p384.PublicKey),
		"a private key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		"a bad block":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")}),
		"good then bad": append(jwttest.PEM(t, &k.rsa.PublicKey), jwttest.PEM(t, &p384.PublicKey)...),
	} {
		if _, err := hub.ParsePublicKeys(in); err == nil {
			t.Errorf("ParsePublicKeys(%s) took it", name)
		}
	}
}

// iss and aud, when configured, must match.
func TestKeysIssuerAudience(t *testing.T) {
	s := startServer(t, &hub.Options{JWTSecret: auSecret, JWTIssuer: "https://idp.example.com/", JWTAudience: "sessionhub"})
	c := func(iss string, aud ...string) hub.Claims {
		cl := rfClaims("ia", "IA", "", nil, time.Hour)
		cl.Issuer, cl.Audience = iss, aud
		return cl
	}
	kyAccepted(t, s, auToken(t, c("https://idp.example.com/", "sessionhub")), "ia")
	kyAccepted(t, s, auToken(t, c("https://idp.example.com/", "other-api", "sessionhub")), "ia")
	kyRefused(t, s, auToken(t, c("https://evil.example.com/", "sessionhub")), "issuer")
	kyRefused(t, s, auToken(t, c("", "sessionhub")), "iss claim is required")
	kyRefused(t, s, auToken(t, c("https://idp.example.com/", "other-api")), "audience")
	kyRefused(t, s, auToken(t, c("https://idp.example.com/")), "aud claim is required")

	// refresh-token holds the same rules.
	p := auDial(t, s, auToken(t, c("https://idp.example.com/", "sessionhub")))
	p.join("ia", "", "", "")
	m := rfRefresh(p, auToken(t, c("https://evil.example.com/", "sessionhub")), "iss")
	var e protocol.ErrorPayload
	decode(t, m, &e)
	if m.Type != protocol.TypeError || e.Code != protocol.CodeInvalidToken {
		t.Errorf("refresh with a wrong iss: %s %s, want invalid_token", m.Type, m.Data)
	}
}

// SetKeys rotates the keys of a running hub: new tokens verify, tokens of
// the retired secret are refused at their next upgrade, open connections
// stay, and keys the hub would not take leave those in force.
func TestKeysSetKeys(t *testing.T) {
	oldSecret := []byte("old-secret-0123456789abcdef")
	newSecret := []byte("new-secret-0123456789abcdef")
	s := startServer(t, &hub.Options{JWTKeys: hub.Keys{Secrets: [][]byte{oldSecret}}})
	oldTok := jwttest.Sign(t, jwt.SigningMethodHS256, oldSecret, "", rfClaims("o", "O", "", nil, time.Hour))
	newTok := jwttest.Sign(t, jwt.SigningMethodHS256, newSecret, "", rfClaims("n", "N", "", nil, time.Hour))
	open := kyAccepted(t, s, oldTok, "o")
	kyRefused(t, s, newTok, "signature")

	for name, bad := range map[string]hub.Keys{
		"no key":       {},
		"short secret": {Secrets: [][]byte{[]byte("short")}},
	} {
		if err := s.SetKeys(bad); err == nil {
			t.Errorf("SetKeys(%s) took it", name)
		}
	}
	kyAccepted(t, s, oldTok, "o") // still the old keys

	if err := s.SetKeys(hub.Keys{Secrets: [][]byte{newSecret}}); err != nil {
		t.Fatal(err)
	}
	kyAccepted(t, s, newTok, "n")
	kyRefused(t, s, oldTok, "signature")
	open.sync() // the connection of the old secret stays
	// and its refresh is verified with the keys in force now.
	m := rfRefresh(open, jwttest.Sign(t, jwt.SigningMethodHS256, oldSecret, "", rfClaims("o", "O", "", nil, time.Hour)), "old")
	if m.Type != protocol.TypeError {
		t.Errorf("refresh with the retired secret: %s, want invalid_token", m.Type)
	}
	m = rfRefresh(open, jwttest.Sign(t, jwt.SigningMethodHS256, newSecret, "", rfClaims("o", "O", "", nil, time.Hour)), "new")
	if m.Type != protocol.TypeTokenRefreshed {
		t.Errorf("refresh with the new secret: %s %s, want token-refreshed", m.Type, m.Data)
	}

	openHub := startServer(t, nil)
	if err := openHub.SetKeys(hub.Keys{Secrets: [][]byte{newSecret}}); err != hub.ErrOpenMode {
		t.Errorf("SetKeys on an open hub: %v, want ErrOpenMode", err)
	}
}

// ---------------------------------------------------------------------------
// JWKS

// kyIDP is an identity provider's JWKS endpoint: it serves the keys it
// holds (as a JWK Set), counts the requests, and can be made to fail.
type kyIDP struct {
	ts      *httptest.Server
	mu      sync.Mutex
	keys    []map[string]string
	fetches atomic.Int32
	down    atomic.Bool
	huge    atomic.Bool
	stall   atomic.Bool // answer nothing until the client gives up
}

func kyStartIDP(t testing.TB) *kyIDP {
	t.Helper()
	idp := &kyIDP{}
	idp.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idp.fetches.Add(1)
		if idp.stall.Load() {
			<-r.Context().Done()
			return
		}
		if idp.down.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if idp.huge.Load() {
			w.Write([]byte(`{"keys":[],"padding":"` + strings.Repeat("x", 2<<20) + `"}`))
			return
		}
		idp.mu.Lock()
		defer idp.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"keys": idp.keys})
	}))
	t.Cleanup(idp.ts.Close)
	return idp
}

// set replaces the served keys (a rotation at the provider).
func (idp *kyIDP) set(keys ...map[string]string) {
	idp.mu.Lock()
	idp.keys = keys
	idp.mu.Unlock()
}

// kyJWK is the public JWK of pk with kid.
func kyJWK(pk crypto.PublicKey, kid string) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pk.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		point, err := k.Bytes() // 0x04 || X || Y
		if err != nil {
			panic(err)
		}
		x, y := point[1:33], point[33:]
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(x), "y": b64(y)}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(k)}
	}
	panic("kyJWK: unsupported key")
}

// kyJWKS starts a JWKS client of idp, closed at the end of the test.
func kyJWKS(t testing.TB, idp *kyIDP, opts *hub.JWKSOptions) *hub.JWKS {
	t.Helper()
	if opts == nil {
		opts = &hub.JWKSOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	j, err := hub.NewJWKS(idp.ts.URL+"/.well-known/jwks.json", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	return j
}

// A JWKS verifies RS256, ES256 and EdDSA tokens by kid (and without a kid,
// by trying the set); the provider's rotation is taken at the first token
// of the new kid, without a restart; a provider that is down keeps the
// last good set; unknown kids fetch at most once per interval; the keys of
// the set never verify HS256.
func TestKeysJWKS(t *testing.T) {
	k := kyGen(t)
	idp := kyStartIDP(t)
	oct := map[string]string{"kty": "oct", "kid": "sym", "k": base64.RawURLEncoding.EncodeToString([]byte("jwks-symmetric-secret-0123456789"))}
	idp.set(kyJWK(&k.rsa.PublicKey, "rsa-1"), kyJWK(&k.ec.PublicKey, "ec-1"), kyJWK(k.ed.Public(), "ed-1"), oct)
	j := kyJWKS(t, idp, &hub.JWKSOptions{UnknownKIDInterval: time.Hour})
	if n := idp.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at the start, want 1", n)
	}
	s := startServer(t, &hub.Options{JWKS: j, LeaveGrace: -1})
	c := func(sub string) hub.Claims { return rfClaims(sub, sub, "", nil, time.Hour) }

	kyAccepted(t, s, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", c("rs")), "rs")
	kyAccepted(t, s, jwttest.Sign(t, jwt.SigningMethodES256, k.ec, "ec-1", c("es")), "es")
	kyAccepted(t, s, jwttest.Sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", c("ed")), "ed")
	kyAccepted(t, s, jwttest.Sign(t, jwt.SigningMethodES256, k.ec, "", c("es-nokid")), "es-nokid")

	// Keys of the set verify their own algorithm only.
	rsaPEM := jwttest.PEM(t, &k.rsa.PublicKey)
	kyRefused(t, s, jwttest.Sign(t, jwt.SigningMethodHS256, rsaPEM, "rsa-1", c("x")), "no HS256 key")
	kyRefused(t, s, jwttest.Sign(t, jwt.SigningMethodHS256, []byte("jwks-symmetric-secret-0123456789"), "sym", c("x")), "no HS256 key")
	kyRefused(t, s, jwttest.Retag(t, jwttest.Sign(t, jwt.SigningMethodES256, k.ec, "", c("x")), "RS256", "ec-1"), "token")
	kyRefused(t, s, jwttest.Retag(t, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "", c("x")), "RS256", "ed-1"), "token")
	kyRefused(t, s, auAlgNone(t, c("x")), "token")
	if n := idp.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches after tokens of known kids, want 1", n)
	}

	// The provider rotates: a new kid is fetched on its first token.
	idp.set(kyJWK(&k.rsa2.PublicKey, "rsa-2"), kyJWK(&k.ec.PublicKey, "ec-1"))
	kyAccepted(t, s, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa-2", c("rs2")), "rs2")
	if n := idp.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after the rotation, want 2", n)
	}
	// rsa-1 went with the rotation.
	kyRefused(t, s, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", c("x")), "unknown key id")

	// A stream of unknown kids within the interval fetches nothing more,
	// and each is refused at once.
	for i := range 50 {
		kid := "made-up-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		kyRefused(t, s, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa2, kid, c("x")), "unknown key id")
	}
	if n := idp.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after 50 unknown kids within the interval, want still 2", n)
	}
	// The known keys still verify.
	kyAccepted(t, s, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa-2", c("rs2b")), "rs2b")

	// refresh-token takes JWKS tokens too.
	p := kyAccepted(t, s, jwttest.Sign(t, jwt.SigningMethodES256, k.ec, "ec-1", c("live")), "live")
	m := rfRefresh(p, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa-2", c("live")), "j1")
	if m.Type != protocol.TypeTokenRefreshed {
		t.Errorf("refresh with a JWKS token: %s %s", m.Type, m.Data)
	}
	m = rfRefresh(p, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", c("live")), "j2")
	if m.Type != protocol.TypeError {
		t.Errorf("refresh with a retired kid: %s, want invalid_token", m.Type)
	}
}

// A provider that is down, answers too much, stalls past the timeout, or
// is gone leaves the last good set in force.
func TestKeysJWKSKeepsLastGoodSet(t *testing.T) {
	k := kyGen(t)
	idp := kyStartIDP(t)
	idp.set(kyJWK(&k.rsa.PublicKey, "rsa-1"))
	// Unknown kids fetch again at once: every token below with an unknown
	// kid makes the client fetch.
	// A fetch that takes over 2 s fails: a stalled provider costs the
	// upgrade that named the unknown kid 2 s, not the dial's 5 s deadline.
	j := kyJWKS(t, idp, &hub.JWKSOptions{UnknownKIDInterval: time.Nanosecond, MaxBytes: 64 << 10, Timeout: 2 * time.Second})
	s := startServer(t, &hub.Options{JWKS: j})
	c := func(sub string) hub.Claims { return rfClaims(sub, sub, "", nil, time.Hour) }
	good := jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", c("g"))
	kyAccepted(t, s, good, "g")

	for mode, flag := range map[string]*atomic.Bool{"down": &idp.down, "huge": &idp.huge, "stalled": &idp.stall} {
		t.Run(mode, func(t *testing.T) {
			flag.Store(true)
			defer flag.Store(false)
			before := idp.fetches.Load()
			kyRefused(t, s, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-new", c("x")), "unknown key id")
			if n := idp.fetches.Load(); n != before+1 {
				t.Fatalf("%d fetches for the unknown kid, want 1", n-before)
			}
			kyAccepted(t, s, good, "g") // the failed fetch kept rsa-1
		})
	}
	// The provider gone altogether (connection refused).
	idp.ts.Close()
	kyRefused(t, s, jwttest.Sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-gone", c("x")), "unknown key id")
	kyAccepted(t, s, good, "g")
}
