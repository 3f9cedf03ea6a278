package playerhttp

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// webroot holds the placeholder page (committed) and, after
// `npm --prefix web ci && npm --prefix web run build`, one player page per
// frontend line in webroot/dist/<frontend> (never committed). Embedding the
// directory rather than the bundle keeps a build without the bundle
// compiling.
//
//go:embed all:webroot
var webroot embed.FS

// embeddedPage returns the built player page of a frontend line
// (config.Frontends), or the placeholder that says how to build it, and
// whether the bundle is present.
func embeddedPage(frontend string) (fs.FS, bool) {
	if dist, err := fs.Sub(webroot, "webroot/dist/"+frontend); err == nil {
		if _, err := fs.Stat(dist, "index.html"); err == nil {
			return dist, true
		}
	}
	placeholder, _ := fs.Sub(webroot, "webroot/placeholder") // a constant path inside the embed
	return placeholder, false
}

// BundleEmbedded reports whether this build carries the player page of
// every frontend line.
func BundleEmbedded() bool {
	for _, f := range config.Frontends {
		if _, ok := embeddedPage(f); !ok {
			return false
		}
	}
	return true
}

func (s *Server) pageHandler() (http.Handler, error) {
	if s.cfg.HTTPRoot != "" {
		// os.Root resolves every name beneath the directory (openat with
		// no escape through "..", absolute symlinks or symlinks pointing
		// out), so a link in a user's tree cannot serve files outside it.
		root, err := os.OpenRoot(s.cfg.HTTPRoot)
		if err != nil {
			return nil, fmt.Errorf("signalling http_root: %w", err)
		}
		s.root = root
		if h := s.cfg.Homepage; h != "" {
			if fi, err := fs.Stat(root.FS(), h); err != nil || !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("homepage %q is not a file in http_root %s (it names the page served at /; default: index.html, else %s)", h, s.cfg.HTTPRoot, DefaultHomepage)
			}
		}
		return staticFiles(root.FS(), s.cfg.Homepage, s.log), nil
	}
	page, ok := embeddedPage(s.frontend())
	if !ok {
		s.log.Warn("player page bundle not embedded; serving build instructions", "frontend", s.frontend(), "build", "make page (npm --prefix web ci && npm --prefix web run build)")
	}
	assets, err := precompressed(page)
	if err != nil {
		return nil, err
	}
	return servePrecompressed(assets), nil
}

// DefaultHomepage is what http_root serves at / when it has no index.html:
// the page Epic's frontend build writes, and Wilbur's --homepage default.
const DefaultHomepage = "player.html"

// homepageOf is the file fsys serves at /: homepage when one is configured,
// else index.html, else DefaultHomepage when that exists.
func homepageOf(fsys fs.FS, homepage string) string {
	if homepage != "" {
		return homepage
	}
	if fi, err := fs.Stat(fsys, "index.html"); err == nil && fi.Mode().IsRegular() {
		return "index.html"
	}
	if fi, err := fs.Stat(fsys, DefaultHomepage); err == nil && fi.Mode().IsRegular() {
		return DefaultHomepage
	}
	return "index.html"
}

// staticFiles serves regular files of fsys: / serves the homepage
// (homepageOf), another directory its index.html or is not found (no
// listings), and no path element may start with a dot (.git, .env,
// .htpasswd: what a deploy leaves behind), except .well-known (RFC 8615).
func staticFiles(fsys fs.FS, homepage string, log hclog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeText(w, http.StatusMethodNotAllowed, "405 method not allowed\n")
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "."
		}
		if hiddenPath(name) {
			http.NotFound(w, r)
			return
		}
		if name == "." {
			name = homepageOf(fsys, homepage)
		}
		f, fi, err := openRegular(fsys, name)
		if errors.Is(err, errIsDir) {
			if !strings.HasSuffix(r.URL.Path, "/") {
				// http.Redirect resolves and cleans this against the request path,
				// so no "//host" path can turn it into a redirect off site.
				target := path.Base(name) + "/"
				if r.URL.RawQuery != "" {
					target += "?" + r.URL.RawQuery
				}
				http.Redirect(w, r, target, http.StatusMovedPermanently)
				return
			}
			f, fi, err = openRegular(fsys, path.Join(name, "index.html"))
		}
		if err != nil {
			log.Debug("static file not served", "path", name, "error", err)
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		rs, ok := f.(io.ReadSeeker)
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, fi.Name(), fi.ModTime(), rs)
	})
}

var errIsDir = errors.New("is a directory")

// openRegular opens name if it is a regular file; errIsDir for a directory.
func openRegular(fsys fs.FS, name string) (fs.File, fs.FileInfo, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
	case fi.IsDir():
		err = errIsDir
	case !fi.Mode().IsRegular():
		err = fmt.Errorf("%s is not a regular file", name)
	default:
		return f, fi, nil
	}
	_ = f.Close()
	return nil, nil, err
}

// hiddenPath reports whether a cleaned slash path has an element that
// starts with a dot, other than .well-known.
func hiddenPath(name string) bool {
	if name == "." {
		return false
	}
	for _, el := range strings.Split(name, "/") {
		if strings.HasPrefix(el, ".") && el != ".well-known" {
			return true
		}
	}
	return false
}
