package hub

import (
	"crypto"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkParseToken is what verifying one token costs, per algorithm: an
// upgrade pays it on its handler's goroutine and a refresh-token on its
// connection's reader, never the run loop. The verifier holds two secrets
// and one key of each public type, as a hub configured with all sources.
func BenchmarkParseToken(b *testing.B) {
	k := genTokenKeys(b)
	rsaKey, ecKey, edPub, edKey := k.rsa, k.ec, k.edPub, k.ed
	secret := []byte("bench-secret-0123456789abcdef")
	v := &verifier{}
	v.keys.Store(&Keys{Secrets: [][]byte{[]byte("older-secret-0123456789abcdef"), secret},
		PublicKeys: []crypto.PublicKey{&rsaKey.PublicKey, &ecKey.PublicKey, edPub}})
	now := time.Now()
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "u1", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))},
		Name: "Ada", Role: "learner", Sessions: []string{"s1"}}
	for _, tc := range []struct {
		name string
		m    jwt.SigningMethod
		key  any
	}{
		{"HS256-second-secret", jwt.SigningMethodHS256, secret},
		{"RS256", jwt.SigningMethodRS256, rsaKey},
		{"ES256", jwt.SigningMethodES256, ecKey},
		{"EdDSA", jwt.SigningMethodEdDSA, edKey},
	} {
		tok, err := jwt.NewWithClaims(tc.m, claims).SignedString(tc.key)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseToken(tok, v, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
