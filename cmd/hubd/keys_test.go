package main

// hubd's key flags end to end, with hubd as a process: a secret file of
// several secrets and a public key file re-read on SIGHUP (rotation
// without a restart, open connections kept, a bad file changing nothing),
// and --jwks-url pointing at an identity provider (an httptest server in
// this process) with --jwt-issuer and --jwt-audience.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/internal/jwttest"
	"github.com/sessionhub/sessionhub/protocol"
)

// kpToken signs a one-hour token for sub with m and key (kid in the header
// when not empty), with iss and aud when not empty.
func kpToken(t *testing.T, m jwt.SigningMethod, key any, kid, sub, iss, aud string) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "name": sub, "exp": time.Now().Add(time.Hour).Unix()}
	if iss != "" {
		c["iss"] = iss
	}
	if aud != "" {
		c["aud"] = aud
	}
	return jwttest.Sign(t, m, key, kid, c)
}

// kpDial upgrades to p with tok: the connection (nil when refused) and the
// HTTP status.
func kpDial(t *testing.T, p *hubProc, tok string) (*websocket.Conn, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, p.wsURL(), &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws, resp.StatusCode
}

// pingPong does a ping round trip on ws: the connection is served.
func pingPong(t *testing.T, ws *websocket.Conn, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, _ := protocol.Encode(protocol.TypePing, ref, map[string]any{})
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatalf("ping %s: %v", ref, err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("ping %s: %v", ref, err)
	}
	var env protocol.Envelope
	if json.Unmarshal(b, &env) != nil || env.Type != protocol.TypePong || env.Ref != ref {
		t.Fatalf("ping %s: got %s, want its pong", ref, b)
	}
}

// SIGHUP re-reads a secret file of several secrets and a public key file:
// a secret added in front verifies at once (the old one too, until it is
// removed), a public key that is replaced stops verifying at the next
// upgrade, open connections stay, and a file that holds a bad key leaves
// every key in force.
func TestSIGHUPReloadsKeys(t *testing.T) {
	const oldSecret, newSecret = "the-old-secret-0123456789", "the-new-secret-0123456789"
	rsa1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ec2, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secrets, keys := filepath.Join(dir, "secrets"), filepath.Join(dir, "keys.pem")
	write := func(file string, b []byte) {
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(secrets, []byte(oldSecret+"\n"))
	write(keys, jwttest.PEM(t, &rsa1.PublicKey))
	p := startHubProc(t, "hubd", "--jwt-secret-file", secrets, "--jwt-public-key-file", keys)
	hs := func(secret, sub string) string {
		return kpToken(t, jwt.SigningMethodHS256, []byte(secret), "", sub, "", "")
	}
	rs1 := kpToken(t, jwt.SigningMethodRS256, rsa1, "", "r1", "", "")
	es2 := kpToken(t, jwt.SigningMethodES256, ec2, "", "e2", "", "")

	byOld, _ := kpDial(t, p, hs(oldSecret, "o"))
	byRSA, _ := kpDial(t, p, rs1)
	if byOld == nil || byRSA == nil {
		t.Fatal("the keys of the files are refused at the start")
	}
	if ws, status := kpDial(t, p, es2); ws != nil || status != http.StatusUnauthorized {
		t.Fatalf("a key not in the file: status %d, want 401", status)
	}

	reload := func(n int) {
		t.Helper()
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitCount(t, `msg="reload: JWT keys loaded"`, n, time.Now().Add(10*time.Second))
	}
	// Step 1 of a rotation: the new secret in front, the old one kept; the
	// EC key replaces the RSA key.
	write(secrets, []byte(newSecret+"\n"+oldSecret+"\n"))
	write(keys, jwttest.PEM(t, &ec2.PublicKey))
	reload(1)
	p.waitLog(t, regexp.MustCompile(`msg="reload: JWT keys loaded" secrets=2 public_keys=1`), time.Now())
	for name, tok := range map[string]string{"new secret": hs(newSecret, "n"), "old secret": hs(oldSecret, "o2"), "EC key": es2} {
		if ws, status := kpDial(t, p, tok); ws == nil {
			t.Errorf("%s after the reload: status %d, want an upgrade", name, status)
		}
	}
	if ws, status := kpDial(t, p, rs1); ws != nil || status != http.StatusUnauthorized {
		t.Errorf("the removed RSA key after the reload: status %d, want 401", status)
	}
	// Step 2: the old secret goes.
	write(secrets, []byte(newSecret+"\n"))
	reload(2)
	if ws, status := kpDial(t, p, hs(oldSecret, "o3")); ws != nil || status != http.StatusUnauthorized {
		t.Errorf("the retired secret: status %d, want 401", status)
	}
	// The connections of the retired keys are still served.
	pingPong(t, byOld, "old")
	pingPong(t, byRSA, "rsa")

	// A key file with a private key in it: nothing changes.
	priv, err := x509.MarshalPKCS8PrivateKey(ec2)
	if err != nil {
		t.Fatal(err)
	}
	write(keys, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, regexp.MustCompile(`msg="reload failed: the JWT keys in force stay"`), time.Now().Add(10*time.Second))
	if ws, status := kpDial(t, p, es2); ws == nil {
		t.Errorf("the EC key after a failed reload: status %d, want an upgrade", status)
	}
	if ws, status := kpDial(t, p, hs(newSecret, "n2")); ws == nil {
		t.Errorf("the secret after a failed reload: status %d, want an upgrade", status)
	}
	if p.exited() {
		t.Fatalf("hubd %s after SIGHUP", p.exit())
	}
}

// hubd with --jwks-url takes the identity provider's RS256 tokens by kid,
// follows its rotation without a restart, and holds --jwt-issuer and
// --jwt-audience (the flags' HUB_* twins work the same way: TestParse).
func TestJWKSURL(t *testing.T) {
	k1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk := func(k *rsa.PrivateKey, kid string) map[string]string {
		b64 := base64.RawURLEncoding.EncodeToString
		return map[string]string{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
			"n": b64(k.PublicKey.N.Bytes()), "e": b64(big.NewInt(int64(k.PublicKey.E)).Bytes())}
	}
	set := make(chan []map[string]string, 1)
	set <- []map[string]string{jwk(k1, "key-1")}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys := <-set
		set <- keys
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	defer idp.Close()
	const iss, aud = "https://idp.example.com/", "sessionhub"
	p := startHubProc(t, "hubd", "--jwks-url", idp.URL+"/.well-known/jwks.json", "--jwt-issuer", iss, "--jwt-audience", aud)

	if ws, status := kpDial(t, p, kpToken(t, jwt.SigningMethodRS256, k1, "key-1", "u1", iss, aud)); ws == nil {
		t.Fatalf("a token of the provider's key: status %d", status)
	}
	for name, tok := range map[string]string{
		"wrong iss": kpToken(t, jwt.SigningMethodRS256, k1, "key-1", "u1", "https://evil.example.com/", aud),
		"wrong aud": kpToken(t, jwt.SigningMethodRS256, k1, "key-1", "u1", iss, "another-api"),
		"HS256":     kpToken(t, jwt.SigningMethodHS256, jwttest.PEM(t, &k1.PublicKey), "key-1", "u1", iss, aud),
	} {
		if ws, status := kpDial(t, p, tok); ws != nil || status != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, status)
		}
	}
	// The provider rotates to key-2.
	<-set
	set <- []map[string]string{jwk(k2, "key-2")}
	if ws, status := kpDial(t, p, kpToken(t, jwt.SigningMethodRS256, k2, "key-2", "u2", iss, aud)); ws == nil {
		t.Fatalf("a token of the rotated key: status %d", status)
	}
	resp, err := probeClient.Get(p.url("/healthz"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
