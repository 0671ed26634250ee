package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// file is an embedded file as served: its bytes, content type and ETag,
// computed once from whatever FS holds.
type file struct {
	name  string
	data  []byte
	ctype string
	etag  string
}

// contentTypes are the types of the files FS holds, by suffix (mime's own
// table would call a .ts file a Qt translation).
var contentTypes = []struct{ suffix, ctype string }{
	{".d.ts", "application/typescript; charset=utf-8"},
	{".ts", "application/typescript; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"},
	{".map", "application/json; charset=utf-8"},
	{".html", "text/html; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".json", "application/json; charset=utf-8"},
}

// files is every file of FS, by its URL path ("/" for index.html).
var files = load()

func load() map[string]*file {
	out := map[string]*file{}
	fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(FS, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		f := &file{name: p, data: b, ctype: "application/octet-stream",
			etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`}
		for _, t := range contentTypes {
			if strings.HasSuffix(p, t.suffix) {
				f.ctype = t.ctype
				break
			}
		}
		route := "/" + p
		if p == "index.html" {
			route = "/"
		}
		out[route] = f
		return nil
	})
	return out
}

// Handler serves the files of FS at their paths, index.html at /: with
// their content type, a strong ETag of their content, and Cache-Control
// no-cache, so that a browser revalidates at every use and gets a 304 with
// no body while the file is unchanged (a new hubd is never paired with an
// old hub.js). A request whose Origin host matches one of allowedOrigins
// (path.Match patterns, as hub.Options.AllowedOrigins) gets
// Access-Control-Allow-Origin, so that a page there may import /hub.js as
// a module. Other paths get 404.
func Handler(allowedOrigins []string) http.Handler {
	patterns := make([]string, len(allowedOrigins))
	for i, p := range allowedOrigins {
		patterns[i] = strings.ToLower(p)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := files[r.URL.Path]
		if f == nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		if o := r.Header.Get("Origin"); o != "" && originAllowed(o, patterns) {
			h.Set("Access-Control-Allow-Origin", o)
		}
		h.Set("Content-Type", f.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.data))
	})
}

// originAllowed reports whether origin's host (with its port, if any)
// matches one of patterns, the way the WebSocket upgrade checks it.
func originAllowed(origin string, patterns []string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Host)
	for _, p := range patterns {
		if ok, _ := path.Match(p, host); ok {
			return true
		}
	}
	return false
}
