package playerhttp

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func TestAcceptable(t *testing.T) {
	all := map[string][]byte{"identity": nil, "gzip": nil, "br": nil}
	noBr := map[string][]byte{"identity": nil, "gzip": nil}
	for _, tc := range []struct {
		header string
		avail  map[string][]byte
		want   string
	}{
		{"", all, "identity"},
		{"gzip, deflate, br, zstd", all, "br"}, // Chromium
		{"gzip, deflate, br, zstd", noBr, "gzip"},
		{"gzip", all, "gzip"},
		{"br;q=0.5, gzip;q=0.8", all, "gzip"},
		{"br;q=0, gzip;q=0", all, "identity"},
		{"*", all, "br"},
		{"*;q=0", all, ""},
		{"identity;q=0", map[string][]byte{"identity": nil}, ""},
		{"GZIP;Q=1", all, "gzip"},
		{"gzip;q=2", all, "identity"},   // out of range: not consent
		{"gzip;q=nan", all, "identity"}, // malformed weight
		{"br, br;q=0", all, "identity"}, // named twice: the lower weight
		{",,;;=,br;q", all, "br"},       // junk around a valid coding
		{strings.Repeat("x", 100) + ", gzip", all, "gzip"},
	} {
		if got := acceptable(tc.header, tc.avail); got != tc.want {
			t.Errorf("Accept-Encoding %q: %q, want %q", tc.header, got, tc.want)
		}
	}
}

// FuzzAcceptable: no header panics, and the answer is always an
// available coding or "".
func FuzzAcceptable(f *testing.F) {
	for _, s := range []string{"", "gzip", "br;q=0.5, gzip;q=0.8", "*;q=0", "q=1e308", ";;;", strings.Repeat("a,", 4096)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		avail := map[string][]byte{"identity": nil, "gzip": nil}
		if got := acceptable(h, avail); got != "" && got != "identity" && got != "gzip" {
			t.Fatalf("%q: %q is not available", h, got)
		}
	})
}

// TestPrecompressedPage: the page and its hashed bundle come compressed as
// the browser asks, the bundle cached for good, the page revalidated with
// an ETag (304 on a repeat visit), and the variants never served as files.
func TestPrecompressedPage(t *testing.T) {
	js := []byte(strings.Repeat("console.log('pixel streaming');", 200))
	page := []byte(`<!doctype html><script type="module" src="player.ABCDEFGH.js"></script>` + strings.Repeat(" ", 200))
	fsys := fstest.MapFS{
		"index.html":            {Data: page},
		"index.html.gz":         {Data: gz(t, page)},
		"player.ABCDEFGH.js":    {Data: js},
		"player.ABCDEFGH.js.gz": {Data: gz(t, js)},
		"player.ABCDEFGH.js.br": {Data: []byte("pretend-brotli")},
		".env":                  {Data: []byte("SECRET=1")},
	}
	assets, err := precompressed(fsys)
	if err != nil {
		t.Fatal(err)
	}
	h := servePrecompressed(assets)
	get := func(path, ae, inm string) *http.Response {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if ae != "" {
			r.Header.Set("Accept-Encoding", ae)
		}
		if inm != "" {
			r.Header.Set("If-None-Match", inm)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Result()
	}

	resp := get("/player.ABCDEFGH.js", "gzip, deflate, br, zstd", "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "br" || string(body) != "pretend-brotli" ||
		resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || resp.Header.Get("Vary") != "Accept-Encoding" ||
		resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("bundle for Chromium: %d %v", resp.StatusCode, resp.Header)
	}
	resp = get("/player.ABCDEFGH.js", "gzip", "")
	body, _ = io.ReadAll(resp.Body)
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, js) || resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("gzip bundle does not decode to the bundle (%d bytes)", len(plain))
	}
	resp = get("/player.ABCDEFGH.js", "", "")
	body, _ = io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, js) {
		t.Fatalf("identity bundle: %v, %d bytes", resp.Header, len(body))
	}

	first := get("/?token=x", "gzip", "")
	etag := first.Header.Get("ETag")
	if first.StatusCode != 200 || first.Header.Get("Cache-Control") != "no-cache" || !strings.HasSuffix(etag, `-gzip"`) {
		t.Fatalf("page: %d %v", first.StatusCode, first.Header)
	}
	repeat := get("/", "gzip", etag)
	if b, _ := io.ReadAll(repeat.Body); repeat.StatusCode != http.StatusNotModified || len(b) != 0 {
		t.Fatalf("repeat visit with the ETag: %d, %d bytes", repeat.StatusCode, len(b))
	}
	if r := get("/", "", etag); r.StatusCode != 200 {
		t.Fatalf("identity request with the gzip ETag: %d, want the identity page", r.StatusCode)
	}
	for _, p := range []string{"/index.html.gz", "/player.ABCDEFGH.js.br", "/.env", "/nothing"} {
		if r := get(p, "gzip", ""); r.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, r.StatusCode)
		}
	}
	if r := get("/", "identity;q=0, *;q=0", ""); r.StatusCode != http.StatusNotAcceptable {
		t.Errorf("no acceptable coding: %d, want 406", r.StatusCode)
	}
}
