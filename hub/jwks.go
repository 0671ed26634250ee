package hub

// A JSON Web Key Set fetched from an identity provider (--jwks-url), by
// github.com/MicahParks/keyfunc/v3 over github.com/MicahParks/jwkset: the
// set is fetched once at the start, again every RefreshInterval on the
// library's refresh goroutine (which runs until Close), and again when a
// token names a kid the set does not have, at most once per
// UnknownKIDInterval (the library's rate limiter; a kid that comes while
// the limiter is closed is refused at once rather than waited for, so that
// a stream of made-up kids neither fetches nor holds upgrades). A fetch
// that fails (network, status, size, JSON) keeps the last good set. The
// hub adds the bounds the library leaves to its caller: the HTTP client's
// timeout and a limit on the answer's size.
//
// Any goroutine may verify with it (upgrade handlers and readers do); a
// fetch for an unknown kid runs on the goroutine whose token named it.

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// JWKSOptions configures a JWKS. A nil *JWKSOptions, and every zero field,
// takes the default.
type JWKSOptions struct {
	// Timeout bounds one fetch of the set. Defaults to 10s.
	Timeout time.Duration
	// MaxBytes is the largest answer taken; a larger one is a failed
	// fetch. Defaults to 1 MiB.
	MaxBytes int64
	// RefreshInterval is how often the set is fetched again. Defaults to
	// 10m.
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two fetches for a kid
	// the set does not have. Defaults to 30s.
	UnknownKIDInterval time.Duration
	// Transport makes the HTTP requests. Defaults to a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Logger receives the failed fetches. Defaults to slog.Default().
	Logger *slog.Logger
}

// Defaults of JWKSOptions.
const (
	DefaultJWKSTimeout            = 10 * time.Second
	DefaultJWKSMaxBytes           = 1 << 20
	DefaultJWKSRefreshInterval    = 10 * time.Minute
	DefaultJWKSUnknownKIDInterval = 30 * time.Second
)

// JWKS is an identity provider's JSON Web Key Set, kept fresh. Give it to
// Options.JWKS; Close it once the hubs that use it have shut down.
type JWKS struct {
	url     string
	kf      keyfunc.Keyfunc
	fetched jwkset.Storage // the set as last fetched, read without fetching
	unknown *rate.Limiter  // the gate of fetches for unknown kids
	client  *http.Client
	cancel  context.CancelFunc
}

// NewJWKS fetches the set at url (http or https) and keeps it fresh until
// Close. A first fetch that fails is logged, not returned: the hub starts,
// and the set is fetched again on the first token with a kid (the identity
// provider may come up after the hub). The error is for a url that is not
// one.
func NewJWKS(url string, opts *JWKSOptions) (*JWKS, error) {
	var o JWKSOptions
	if opts != nil {
		o = *opts
	}
	setDefault(&o.Timeout, DefaultJWKSTimeout)
	setDefault(&o.MaxBytes, DefaultJWKSMaxBytes)
	setDefault(&o.RefreshInterval, DefaultJWKSRefreshInterval)
	setDefault(&o.UnknownKIDInterval, DefaultJWKSUnknownKIDInterval)
	if o.Transport == nil {
		o.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	client := &http.Client{
		Timeout:   o.Timeout,
		Transport: limitTransport{next: o.Transport, max: o.MaxBytes},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("the JWKS URL redirects: give the final URL")
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	logFail := func(ctx context.Context, err error) {
		o.Logger.Warn("JWKS fetch failed: the last good set stays", "url", url, "err", err)
	}
	store, err := jwkset.NewStorageFromHTTP(url, jwkset.HTTPClientStorageOptions{
		Client:                    client,
		Ctx:                       ctx,
		HTTPTimeout:               o.Timeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       logFail,
		RefreshInterval:           o.RefreshInterval,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jwks: %w", err)
	}
	storage, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{url: store},
		// Open: JWKS.keys gates these fetches. The library bounds the
		// fetch with this context deadline.
		RateLimitWaitMax:  o.Timeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jwks: %w", err)
	}
	kf, err := keyfunc.New(keyfunc.Options{
		Ctx:     ctx,
		Storage: storage,
		// Keys for signatures: those marked "sig" and those not marked.
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return &JWKS{url: url, kf: kf, fetched: store, client: client, cancel: cancel,
		unknown: rate.NewLimiter(rate.Every(o.UnknownKIDInterval), 1)}, nil
}

// Close stops the refresh goroutine and closes the idle connections to
// the provider. Tokens that need a fetch fail after it.
func (j *JWKS) Close() {
	j.cancel()
	j.client.CloseIdleConnections()
}

// URL is the set's address.
func (j *JWKS) URL() string { return j.url }

// keys returns the public keys of the set that may verify t: the key of
// its kid (fetching the set again, within the rate limit, for a kid it
// does not have), or with no kid every key of the set. Keys of a type
// that does not match t's alg are filtered out by the verifier.
func (j *JWKS) keys(t *jwt.Token) ([]crypto.PublicKey, error) {
	if kid, ok := t.Header["kid"].(string); ok {
		_, err := j.fetched.KeyRead(context.Background(), kid)
		if errors.Is(err, jwkset.ErrKeyNotFound) && !j.unknown.Allow() {
			return nil, &noKeyError{"unknown key id (kid) for this alg"}
		}
	}
	k, err := j.kf.Keyfunc(t)
	if err != nil {
		// The library's reasons quote the kid: say less. (A kid the set
		// lacks while the fetch limiter is closed is not ErrKeyNotFound
		// but the limiter's refusal: the same to the caller.)
		return nil, &noKeyError{"unknown key id (kid) for this alg"}
	}
	switch k := k.(type) {
	case jwt.VerificationKeySet:
		out := make([]crypto.PublicKey, 0, len(k.Keys))
		for _, pk := range k.Keys {
			out = append(out, pk)
		}
		return out, nil
	default:
		return []crypto.PublicKey{k}, nil
	}
}

// limitTransport fails an answer whose body is over max bytes.
type limitTransport struct {
	next http.RoundTripper
	max  int64
}

func (l limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > l.max {
		resp.Body.Close()
		return nil, fmt.Errorf("the JWKS answer is %d bytes, over the limit of %d", resp.ContentLength, l.max)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: l.max}
	return resp, nil
}

// limitedBody reads at most left bytes and fails past them.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, errTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

var errTooLarge = errors.New("the JWKS answer is over the size limit")
