package hub

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/internal/jwttest"
	"github.com/sessionhub/sessionhub/protocol"
)

// FuzzParseToken feeds arbitrary strings to the token parser with fixed
// keys (two HS256 secrets, an RSA, an ECDSA P-256 and an Ed25519 public key)
// and a fixed clock: it never panics, its error never quotes the token, and
// it accepts a token only if its alg is HS256, RS256, ES256 or EdDSA and a
// key of that alg's type signed it (as checked here independently of the
// JWT library), with a sub without control characters, a valid role, an exp
// and nbf that allow the fixed clock, and no claim given twice.
func FuzzParseToken(f *testing.F) {
	secret := []byte("fuzz-secret-0123456789abcdef")
	secret2 := []byte("fuzz-secret-2-0123456789abcdef")
	k := genTokenKeys(f)
	rsaKey, ecKey, edPub, edKey := k.rsa, k.ec, k.edPub, k.ed
	v := &verifier{}
	v.keys.Store(&Keys{Secrets: [][]byte{secret, secret2},
		PublicKeys: []crypto.PublicKey{&rsaKey.PublicKey, &ecKey.PublicKey, edPub}})
	rsaPEM := jwttest.PEM(f, &rsaKey.PublicKey)

	now := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	sign := func(key any, m jwt.SigningMethod, c jwt.Claims) string {
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
	f.Add(sign(secret2, jwt.SigningMethodHS256, good))
	f.Add(sign(rsaKey, jwt.SigningMethodRS256, good))
	f.Add(sign(ecKey, jwt.SigningMethodES256, good))
	f.Add(sign(edKey, jwt.SigningMethodEdDSA, good))
	f.Add(sign(rsaKey, jwt.SigningMethodRS512, good))
	f.Add(sign(rsaKey, jwt.SigningMethodPS256, good))
	f.Add(sign(rsaPEM, jwt.SigningMethodHS256, good))                     // the public key's bytes as a secret
	f.Add(sign(rsaKey.PublicKey.N.Bytes(), jwt.SigningMethodHS256, good)) // its modulus as a secret
	f.Add(jwttest.Retag(f, sign(ecKey, jwt.SigningMethodES256, good), "RS256", ""))
	f.Add(jwttest.Retag(f, sign(rsaKey, jwt.SigningMethodRS256, good), "ES256", ""))
	f.Add(jwttest.Retag(f, sign(edKey, jwt.SigningMethodEdDSA, good), "HS256", ""))
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
		id, err := parseToken(raw, v, now)
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
		// Accepted: it must be three segments, a header of one of the four
		// algorithms, and a signature of the first two by a key of that
		// algorithm's type.
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
		if err := json.Unmarshal(hdr, &h); err != nil {
			t.Fatalf("accepted %q with header %s", raw, hdr)
		}
		sig, err := enc.DecodeString(parts[2])
		if err != nil {
			t.Fatalf("accepted %q with an undecodable signature: %v", raw, err)
		}
		signed := []byte(parts[0] + "." + parts[1])
		digest := sha256.Sum256(signed)
		ok := false
		switch h.Alg {
		case "HS256":
			for _, key := range [][]byte{secret, secret2} {
				mac := hmac.New(sha256.New, key)
				mac.Write(signed)
				ok = ok || hmac.Equal(sig, mac.Sum(nil))
			}
		case "RS256":
			ok = rsa.VerifyPKCS1v15(&rsaKey.PublicKey, crypto.SHA256, digest[:], sig) == nil
		case "ES256":
			if len(sig) == 64 {
				r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
				ok = ecdsa.Verify(&ecKey.PublicKey, digest[:], r, s)
			}
		case "EdDSA":
			ok = ed25519.Verify(edPub, signed, sig)
		}
		if !ok {
			t.Fatalf("accepted %q (alg %q), which no key of that alg signed", raw, h.Alg)
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

// tokenKeys are one private key of each public-key type the hub verifies
// tokens with.
type tokenKeys struct {
	rsa   *rsa.PrivateKey   // 2048 bits
	ec    *ecdsa.PrivateKey // P-256
	ed    ed25519.PrivateKey
	edPub ed25519.PublicKey
}

// genTokenKeys generates a tokenKeys.
func genTokenKeys(tb testing.TB) tokenKeys {
	tb.Helper()
	var k tokenKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		tb.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		tb.Fatal(err)
	}
	if k.edPub, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		tb.Fatal(err)
	}
	return k
}
