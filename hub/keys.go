package hub

// The keys of token mode: HS256 secrets, public keys from PEM files, and a
// JSON Web Key Set fetched from an identity provider (jwks.go). The
// verifier picks the keys that may verify a token by the token's alg, and
// only keys whose type is that alg's: the algorithm is fixed by the key,
// never by what the token claims (an HS256 token is checked against the
// secrets only, so a token "signed" with a public key's bytes fails, and
// alg none is no method at all).
//
// Any goroutine may verify (readers and upgrade handlers do); SetKeys swaps
// the static keys atomically.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/golang-jwt/jwt/v5"
)

// MinSecretBytes is the shortest HS256 secret the hub takes.
const MinSecretBytes = 16

// MinRSABits is the smallest RSA key the hub takes.
const MinRSABits = 2048

// The algorithms of token mode, one per key type.
var tokenMethods = []string{
	jwt.SigningMethodHS256.Alg(),
	jwt.SigningMethodRS256.Alg(),
	jwt.SigningMethodES256.Alg(),
	jwt.SigningMethodEdDSA.Alg(),
}

// Keys are the static keys of token mode: what --jwt-secret,
// --jwt-secret-file and --jwt-public-key-file give.
type Keys struct {
	// Secrets verify HS256 tokens, each of them (so that a new secret can
	// be added before the old one is retired); the first signs the tokens
	// of `hubd token`. Each is at least MinSecretBytes long.
	Secrets [][]byte

	// PublicKeys verify RS256 (*rsa.PublicKey, at least MinRSABits), ES256
	// (*ecdsa.PublicKey on P-256) and EdDSA (ed25519.PublicKey) tokens.
	PublicKeys []crypto.PublicKey
}

// empty reports whether k has no key at all.
func (k *Keys) empty() bool { return len(k.Secrets) == 0 && len(k.PublicKeys) == 0 }

// check reports the first key that the hub would not take.
func (k *Keys) check() error {
	for i, s := range k.Secrets {
		if len(s) < MinSecretBytes {
			return fmt.Errorf("secret %d is %d bytes: at least %d are needed", i+1, len(s), MinSecretBytes)
		}
	}
	for i, pk := range k.PublicKeys {
		if keyAlg(pk) == "" {
			return fmt.Errorf("public key %d: %w", i+1, errKeyType(pk))
		}
	}
	return nil
}

// clone copies k, so that the caller's slices can change.
func (k *Keys) clone() *Keys {
	c := &Keys{PublicKeys: append([]crypto.PublicKey(nil), k.PublicKeys...)}
	for _, s := range k.Secrets {
		c.Secrets = append(c.Secrets, bytes.Clone(s))
	}
	return c
}

// keyAlg is the one algorithm that pk verifies, or "" for a key the hub
// does not take.
func keyAlg(pk crypto.PublicKey) string {
	switch k := pk.(type) {
	case *rsa.PublicKey:
		if k.N != nil && k.N.BitLen() >= MinRSABits {
			return jwt.SigningMethodRS256.Alg()
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return jwt.SigningMethodES256.Alg()
		}
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return jwt.SigningMethodEdDSA.Alg()
		}
	}
	return ""
}

// errKeyType says why pk is not taken.
func errKeyType(pk crypto.PublicKey) error {
	switch k := pk.(type) {
	case *rsa.PublicKey:
		return fmt.Errorf("RSA key of %d bits: at least %d are needed", k.N.BitLen(), MinRSABits)
	case *ecdsa.PublicKey:
		return fmt.Errorf("ECDSA key on %s: only P-256 (ES256) is taken", k.Curve.Params().Name)
	}
	return fmt.Errorf("unsupported key type %T: RSA, ECDSA P-256 and Ed25519 are taken", pk)
}

// ParseSecrets reads HS256 secrets, one a line (a file of --jwt-secret-file):
// trailing spaces and carriage returns are cut, blank lines and lines that
// start with # are skipped. It fails on a file with no secret and on a
// secret shorter than MinSecretBytes.
func ParseSecrets(b []byte) ([][]byte, error) {
	var out [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < MinSecretBytes {
			return nil, fmt.Errorf("line %d: the secret is %d bytes, at least %d are needed", i+1, len(line), MinSecretBytes)
		}
		out = append(out, []byte(line))
	}
	if len(out) == 0 {
		return nil, errors.New("no secret in the file")
	}
	return out, nil
}

// ParsePublicKeys reads PEM blocks (a file of --jwt-public-key-file): PUBLIC
// KEY (PKIX: RSA, ECDSA P-256 or Ed25519), RSA PUBLIC KEY (PKCS #1) or
// CERTIFICATE (its public key). It fails on a file with no key, on a block
// of another type (a private key has no business there) and on a key the
// hub does not take; text between blocks is ignored.
func ParsePublicKeys(b []byte) ([]crypto.PublicKey, error) {
	var out []crypto.PublicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		var pk crypto.PublicKey
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pk, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pk, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pk = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %d is %q: only PUBLIC KEY, RSA PUBLIC KEY and CERTIFICATE are taken", n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		if keyAlg(pk) == "" {
			return nil, fmt.Errorf("PEM block %d: %w", n, errKeyType(pk))
		}
		out = append(out, pk)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM public key in the file")
	}
	return out, nil
}

// verifier holds what verifies tokens: the static keys (swapped by
// Hub.SetKeys), the JWKS if any, and the iss and aud a token must carry.
type verifier struct {
	keys     atomic.Pointer[Keys]
	jwks     *JWKS
	issuer   string
	audience string
}

// newVerifier builds the verifier of o, or returns nil in open mode.
func newVerifier(o *Options) (*verifier, error) {
	k := o.JWTKeys.clone()
	if o.JWTSecret != nil {
		k.Secrets = append([][]byte{bytes.Clone(o.JWTSecret)}, k.Secrets...)
	}
	if k.empty() && o.JWKS == nil {
		return nil, nil
	}
	if err := k.check(); err != nil {
		return nil, err
	}
	v := &verifier{jwks: o.JWKS, issuer: o.JWTIssuer, audience: o.JWTAudience}
	v.keys.Store(k)
	return v, nil
}

// parser is the JWT parser of v at now: the methods of token mode only,
// exp required, iss and aud when configured.
func (v *verifier) parser(opts ...jwt.ParserOption) *jwt.Parser {
	opts = append(opts, jwt.WithValidMethods(tokenMethods))
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	if v.audience != "" {
		opts = append(opts, jwt.WithAudience(v.audience))
	}
	return jwt.NewParser(opts...)
}

// keyfunc gives jwt the keys that may verify t: for HS256 the secrets,
// for the others the public keys of that alg's type, from the static keys
// and from the JWKS (the key of t's kid, or when t has none every key of
// the set). No key of another type is ever handed over, whatever t claims.
func (v *verifier) keyfunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	k := v.keys.Load()
	var set jwt.VerificationKeySet
	if alg == jwt.SigningMethodHS256.Alg() {
		for _, s := range k.Secrets {
			set.Keys = append(set.Keys, s)
		}
	} else {
		for _, pk := range k.PublicKeys {
			if keyAlg(pk) == alg {
				set.Keys = append(set.Keys, pk)
			}
		}
		if v.jwks != nil {
			keys, err := v.jwks.keys(t)
			if err != nil && len(set.Keys) == 0 {
				return nil, err
			}
			for _, pk := range keys {
				if keyAlg(pk) == alg {
					set.Keys = append(set.Keys, pk)
				}
			}
		}
	}
	if len(set.Keys) == 0 {
		return nil, &noKeyError{"no " + alg + " key"}
	}
	return set, nil
}

// noKeyError is the reason for a token that no configured key can verify;
// why never quotes the token (nor its kid).
type noKeyError struct{ why string }

func (e *noKeyError) Error() string { return "no key for the token: " + e.why }
