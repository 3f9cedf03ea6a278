package signalling

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"os"
)

// webroot holds the placeholder page (committed) and, after
// `npm --prefix web ci && npm --prefix web run build`, the player bundle in
// webroot/dist (never committed). Embedding the directory rather than the
// bundle keeps a build without the bundle compiling.
//
//go:embed all:webroot
var webroot embed.FS

// embeddedPage returns the built player page, or the placeholder that says
// how to build it, and whether the bundle is present.
func embeddedPage() (fs.FS, bool) {
	if dist, err := fs.Sub(webroot, "webroot/dist"); err == nil {
		if _, err := fs.Stat(dist, "index.html"); err == nil {
			return dist, true
		}
	}
	placeholder, _ := fs.Sub(webroot, "webroot/placeholder") // a constant path inside the embed
	return placeholder, false
}

// BundleEmbedded reports whether this build carries the player page bundle.
func BundleEmbedded() bool {
	_, ok := embeddedPage()
	return ok
}

func (s *Server) pageHandler() (http.Handler, error) {
	if s.cfg.HTTPRoot != "" {
		if _, err := os.Stat(s.cfg.HTTPRoot); err != nil {
			return nil, fmt.Errorf("signalling http_root: %w", err)
		}
		return http.FileServer(http.Dir(s.cfg.HTTPRoot)), nil
	}
	page, ok := embeddedPage()
	if !ok {
		s.log.Warn("player page bundle not embedded; serving build instructions", "build", "npm --prefix web ci && npm --prefix web run build")
	}
	return http.FileServerFS(page), nil
}
