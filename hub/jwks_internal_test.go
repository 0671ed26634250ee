package hub

// The JWKS client's timers under testing/synctest (the fake clock of a
// bubble): a kid the set lacks fetches at most once per
// UnknownKIDInterval, and the set is fetched again every RefreshInterval.
// The provider is a real HTTP server outside the bubble; the client in the
// bubble opens a new TCP connection per fetch (no keep-alive), so that no
// goroutine of the bubble waits on the network between fetches.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestJWKSFetchTimes(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	x, y := point[1:33], point[33:]
	b64 := base64.RawURLEncoding.EncodeToString
	set, err := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64(x), "y": b64(y)}}})
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Write(set)
	}))
	defer idp.Close()

	synctest.Test(t, func(t *testing.T) {
		j, err := NewJWKS(idp.URL, &JWKSOptions{
			Transport: &http.Transport{DisableKeepAlives: true},
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		v := &verifier{jwks: j}
		v.keys.Store(&Keys{})
		token := func(kid string) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodES256, Claims{RegisteredClaims: jwt.RegisteredClaims{
				Subject: "u", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
			tok.Header["kid"] = kid
			s, err := tok.SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		verify := func(kid string) error {
			_, err := parseToken(token(kid), v, time.Now())
			return err
		}
		want := func(n int32, when string) {
			t.Helper()
			synctest.Wait()
			if got := fetches.Load(); got != n {
				t.Fatalf("%s: %d fetches, want %d", when, got, n)
			}
		}

		want(1, "at the start")
		if err := verify("ec-1"); err != nil {
			t.Fatalf("known kid: %v", err)
		}
		want(1, "after a known kid")

		// A stream of unknown kids: the first fetches, the rest wait for
		// the interval and are refused meanwhile.
		for i := range 100 {
			if err := verify(fmt.Sprintf("unknown-%d", i)); err == nil {
				t.Fatal("an unknown kid verified")
			}
			time.Sleep(250 * time.Millisecond) // 25 s of the fake clock in all
		}
		want(2, "after 100 unknown kids within 25 s")

		time.Sleep(5 * time.Second) // 30 s after that fetch
		if err := verify("unknown-late"); err == nil {
			t.Fatal("an unknown kid verified")
		}
		want(3, "after an unknown kid 30 s later")

		// The refresh goroutine fetches every 10 min on its own.
		fetchesBefore := fetches.Load()
		time.Sleep(10*time.Minute - 30*time.Second - time.Second)
		want(fetchesBefore, "just before 10 min")
		time.Sleep(2 * time.Second)
		want(fetchesBefore+1, "at 10 min")
		time.Sleep(10 * time.Minute)
		want(fetchesBefore+2, "at 20 min")
		if err := verify("ec-1"); err != nil {
			t.Fatalf("known kid after the refreshes: %v", err)
		}
	})
}
