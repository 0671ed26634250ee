package hub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/protocol"
)

// FuzzParseToken feeds arbitrary strings to the token parser with a fixed
// secret and clock: it never panics, its error never quotes the token, and
// it accepts a token only if it is an HS256 JWT that the secret signed (as
// checked here independently of the JWT library) with a sub without control
// characters, a valid role, an exp and nbf that allow the fixed clock, and
// no claim given twice.
func FuzzParseToken(f *testing.F) {
	secret := []byte("fuzz-secret-0123456789abcdef")
	now := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	sign := func(key []byte, m jwt.SigningMethod, c jwt.Claims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	good := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ExpiresAt: at(time.Hour)},
		Name: "Alice", Role: "instructor", Sessions: []string{"a", "b"}}
	f.Add(sign(secret, jwt.SigningMethodHS256, good))
	f.Add(sign(secret, jwt.SigningMethodHS256, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "bob"}}))
	f.Add(sign(secret, jwt.SigningMethodHS256, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "x", ExpiresAt: at(-time.Second)}}))
	f.Add(sign(secret, jwt.SigningMethodHS256, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "x", NotBefore: at(time.Minute)}}))
	f.Add(sign(secret, jwt.SigningMethodHS256, Claims{Name: "no sub"}))
	f.Add(sign(secret, jwt.SigningMethodHS256, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "x"}, Role: "root"}))
	f.Add(sign(secret, jwt.SigningMethodHS512, good))
	f.Add(sign([]byte("another-secret-0123456789"), jwt.SigningMethodHS256, good))
	f.Add(sign(secret, jwt.SigningMethodHS256, jwt.MapClaims{"sub": "m", "sessions": "not-a-list", "exp": 1e12}))
	f.Add(sign(secret, jwt.SigningMethodHS256, jwt.MapClaims{"sub": 42}))
	f.Add(sign(secret, jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u", "exp": "tomorrow"}))
	enc := base64.RawURLEncoding
	signRaw := func(payload string) string {
		signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
		sig, err := jwt.SigningMethodHS256.Sign(signing, secret)
		if err != nil {
			f.Fatal(err)
		}
		return signing + "." + enc.EncodeToString(sig)
	}
	f.Add(signRaw(`{"sub":"a","exp":1800000000,"sessions":["a"],"sessions":null}`))
	f.Add(signRaw(`{"sub":"a","exp":1800000000,"Sessions":null}`))
	f.Add(signRaw(`{"sub":"a\u0000b","exp":1800000000}`))
	f.Add(signRaw(`{"sub":"a","EXP":1800000000}`))
	f.Add(signRaw(`{"sub":"a","exp":1800000000,"sessions":[]}`))
	f.Add(enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(`{"sub":"alice"}`)) + ".")
	f.Add(enc.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." + enc.EncodeToString([]byte(`{"sub":"alice"}`)) + ".AAAA")
	for _, s := range []string{"", ".", "..", "a.b.c", "a.b.c.d", "Bearer x", "eyJ", "\x00\xff", strings.Repeat("A", 300) + ".."} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, raw string) {
		id, err := parseToken(raw, secret, now)
		if err != nil {
			if id != nil {
				t.Fatalf("identity %+v with error %v", id, err)
			}
			if len(raw) >= 8 && strings.Contains(err.Error(), raw) {
				t.Fatalf("error %q quotes the token", err)
			}
			return
		}
		if id == nil {
			t.Fatal("no identity and no error")
		}
		// Accepted: it must be three segments, an HS256 header and a
		// signature of the first two with secret.
		parts := strings.Split(raw, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted %q with %d segments", raw, len(parts))
		}
		hdr, err := enc.DecodeString(parts[0])
		if err != nil {
			t.Fatalf("accepted %q with an undecodable header: %v", raw, err)
		}
		var h struct {
			Alg string `json:"alg"`
		}
		if err := json.Unmarshal(hdr, &h); err != nil || h.Alg != "HS256" {
			t.Fatalf("accepted %q with header %s", raw, hdr)
		}
		sig, err := enc.DecodeString(parts[2])
		if err != nil {
			t.Fatalf("accepted %q with an undecodable signature: %v", raw, err)
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(parts[0] + "." + parts[1]))
		if !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("accepted %q, which the secret did not sign", raw)
		}
		switch {
		case id.userID == "":
			t.Fatalf("accepted %q without a sub", raw)
		case id.role != "instructor" && id.role != "learner":
			t.Fatalf("accepted %q with role %q", raw, id.role)
		case id.expires.IsZero() || !now.Before(id.expires):
			t.Fatalf("accepted %q, with exp %v", raw, id.expires)
		case !protocol.ValidText(id.userID) || !protocol.ValidText(id.name):
			t.Fatalf("accepted %q with sub %q, name %q", raw, id.userID, id.name)
		}
		// No claim given twice.
		payload, err := enc.DecodeString(parts[1])
		if err != nil {
			t.Fatalf("accepted %q with an undecodable payload: %v", raw, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(payload)))
		seen := map[string]bool{}
		dec.Token()
		for dec.More() {
			k, _ := dec.Token()
			name, _ := k.(string)
			var v json.RawMessage
			dec.Decode(&v)
			if seen[name] {
				t.Fatalf("accepted %q with %q twice", raw, name)
			}
			seen[name] = true
		}
	})
}
