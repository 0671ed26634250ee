// Package jwttest signs JWTs and writes public keys for tests: the hub's
// token-mode tests, its token fuzz test and hubd's key tests share it
// rather than each keeping its own copy. Every function fails tb instead
// of returning an error.
package jwttest

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// PEM is the PKIX PEM ("PUBLIC KEY" block) of the public key pk.
func PEM(tb testing.TB, pk any) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pk)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Sign signs c with m and key, with kid in the header when it is not
// empty.
func Sign(tb testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.Claims) string {
	tb.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Retag gives tok a header that claims alg (and kid, when it is not empty)
// and keeps tok's body and signature: a token that claims another
// algorithm, or another key, than the one that signed it.
func Retag(tb testing.TB, tok, alg, kid string) string {
	tb.Helper()
	h := map[string]string{"alg": alg, "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	b, err := json.Marshal(h)
	if err != nil {
		tb.Fatal(err)
	}
	_, rest, _ := strings.Cut(tok, ".")
	return base64.RawURLEncoding.EncodeToString(b) + "." + rest
}
