package playerhttp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// The embedded player page is served from memory, precompressed at build
// time (web/build.mjs writes NAME.gz and NAME.br next to each file), the
// encoding chosen by Accept-Encoding: a visitor downloads the bundle once,
// compressed, and a repeat visit revalidates only the page. Assets carry a
// content hash in their names (player.HASH.js) and are cached for good
// (Cache-Control: immutable); the page itself is revalidated every time
// (no-cache, with an ETag, so a repeat visit gets a 304).

// hashedName matches the names esbuild gives with [hash]: NAME.HASH.EXT,
// HASH 8 upper-case base32 characters.
var hashedName = regexp.MustCompile(`\.[A-Z2-7]{8}\.[a-z0-9]+$`)

// asset is one file in its encodings.
type asset struct {
	contentType string
	etag        string // of the identity bytes; variants append their encoding
	immutable   bool
	body        map[string][]byte // by content coding: "identity", "gzip", "br"
}

// encodings in the server's order of preference for equal q-values.
var encodings = []string{"br", "gzip", "identity"}

// precompressed loads every regular file of fsys (hidden ones and the .gz
// and .br variants excepted) and its variants into memory.
func precompressed(fsys fs.FS) (map[string]*asset, error) {
	out := map[string]*asset{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() || hiddenPath(name) || strings.HasSuffix(name, ".gz") || strings.HasSuffix(name, ".br") {
			return nil
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		a := &asset{contentType: ct, etag: hex.EncodeToString(sum[:12]), immutable: hashedName.MatchString(name),
			body: map[string][]byte{"identity": b}}
		for coding, ext := range map[string]string{"gzip": ".gz", "br": ".br"} {
			if v, err := fs.ReadFile(fsys, name+ext); err == nil && len(v) < len(b) {
				a.body[coding] = v
			}
		}
		out[name] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load the embedded player page: %w", err)
	}
	return out, nil
}

// acceptable returns the coding to send for an Accept-Encoding header
// among those available: the accepted compressed coding of highest
// q-value (ties broken by encodings' order), else identity unless the
// header refuses it (identity;q=0, or *;q=0 without identity named), else
// "" (nothing acceptable).
func acceptable(header string, available map[string][]byte) string {
	q := map[string]float64{}
	star, hasStar := 0.0, false
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" || len(name) > 32 {
			continue
		}
		v := 1.0
		for _, p := range strings.Split(params, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
				if err != nil || f < 0 || f > 1 {
					f = 0 // a malformed weight is not consent
				}
				v = f
			}
		}
		if name == "*" {
			star, hasStar = v, true
			continue
		}
		if old, seen := q[name]; !seen || v < old {
			q[name] = v // a coding named twice gets its lower weight
		}
	}
	weight := func(c string) float64 {
		if v, ok := q[c]; ok {
			return v
		}
		if hasStar {
			return star
		}
		if c == "identity" {
			return 1 // RFC 9110 12.5.3: identity is acceptable unless refused
		}
		return 0
	}
	// A compressed coding the client accepts beats identity whatever the
	// weights (the server's choice among acceptable ones); among them the
	// highest weight wins.
	best, bestQ := "", 0.0
	for _, c := range encodings {
		if _, ok := available[c]; !ok || c == "identity" {
			continue
		}
		if w := weight(c); w > bestQ {
			best, bestQ = c, w
		}
	}
	if best == "" && weight("identity") > 0 {
		if _, ok := available["identity"]; ok {
			best = "identity"
		}
	}
	return best
}

// servePrecompressed serves the in-memory page: GET and HEAD, "/" and any
// directory as its index.html, no hidden paths.
func servePrecompressed(assets map[string]*asset) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeText(w, http.StatusMethodNotAllowed, "405 method not allowed\n")
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" || strings.HasSuffix(r.URL.Path, "/") {
			name = path.Join(name, "index.html")
		}
		a, ok := assets[name]
		if !ok || hiddenPath(name) {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Vary", "Accept-Encoding")
		coding := acceptable(r.Header.Get("Accept-Encoding"), a.body)
		if coding == "" {
			writeText(w, http.StatusNotAcceptable, "406 not acceptable: the page is served as br, gzip or identity\n")
			return
		}
		etag := `"` + a.etag + `"`
		if coding != "identity" {
			etag = `"` + a.etag + "-" + coding + `"`
			h.Set("Content-Encoding", coding)
		}
		h.Set("ETag", etag)
		if a.immutable {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		if etagMatch(r.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := a.body[coding]
		h.Set("Content-Type", a.contentType)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}

// etagMatch is If-None-Match's weak comparison (RFC 9110 13.1.2).
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
