package hub_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/hub/web"
)

// The browser files have their content types, an ETag that gets a 304
// without a body, a cache policy that revalidates, and CORS for the
// allowed origins only.
func TestStaticFiles(t *testing.T) {
	s := startServer(t, &hub.Options{AllowedOrigins: []string{"app.example.com", "*.example.org"}})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.ts.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	tests := []struct {
		path, file, ctype string
	}{
		{"/hub.js", "hub.js", "text/javascript; charset=utf-8"},
		{"/hub.d.ts", "hub.d.ts", "application/typescript; charset=utf-8"},
		{"/", "index.html", "text/html; charset=utf-8"},
	}
	etags := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			want, err := web.FS.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := get(tt.path)
			if resp.StatusCode != http.StatusOK || string(body) != string(want) {
				t.Fatalf("GET %s: %d, %d bytes; want 200 and the %d bytes of %s", tt.path, resp.StatusCode, len(body), len(want), tt.file)
			}
			if ct := resp.Header.Get("Content-Type"); ct != tt.ctype {
				t.Errorf("Content-Type %q, want %q", ct, tt.ctype)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache (revalidate)", cc)
			}
			etag := resp.Header.Get("ETag")
			if !strings.HasPrefix(etag, `"`) || len(etag) < 10 || etags[etag] {
				t.Fatalf("ETag %q: want a strong ETag, one per file", etag)
			}
			etags[etag] = true
			// Revalidation: unchanged gets 304 with no body; another tag the file.
			resp, body = get(tt.path, "If-None-Match", etag)
			if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
				t.Errorf("If-None-Match %s: %d with %d bytes, want 304 and none", etag, resp.StatusCode, len(body))
			}
			if resp.Header.Get("ETag") != etag {
				t.Errorf("304's ETag %q, want %q", resp.Header.Get("ETag"), etag)
			}
			resp, body = get(tt.path, "If-None-Match", `"stale"`)
			if resp.StatusCode != http.StatusOK || len(body) != len(want) {
				t.Errorf("If-None-Match a stale tag: %d with %d bytes, want 200 and the file", resp.StatusCode, len(body))
			}
		})
	}

	// Cross-origin import of /hub.js: allowed origins only.
	cors := []struct {
		origin string
		ok     bool
	}{
		{"https://app.example.com", true},
		{"http://a.example.org", true},
		{"https://evil.example", false},
		{"https://app.example.com.evil.example", false},
		{"null", false},
	}
	for _, c := range cors {
		resp, _ := get("/hub.js", "Origin", c.origin)
		got := resp.Header.Get("Access-Control-Allow-Origin")
		if c.ok && got != c.origin || !c.ok && got != "" {
			t.Errorf("Origin %s: Access-Control-Allow-Origin %q, want allowed %v", c.origin, got, c.ok)
		}
		if !strings.Contains(resp.Header.Get("Vary"), "Origin") {
			t.Errorf("Origin %s: no Vary: Origin", c.origin)
		}
	}
	if resp, _ := get("/hub.js.nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /hub.js.nope: %d, want 404", resp.StatusCode)
	}
}
