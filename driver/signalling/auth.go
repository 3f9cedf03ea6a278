package signalling

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// tokenCookie carries the player token from the page to its WebSocket: the
// page is loaded once with ?token=, the browser sends the cookie on upgrade.
const tokenCookie = "pixelstream_token"

// presentedToken returns the token a request carries: ?token=, an
// Authorization: Bearer header, or the cookie, in that order.
func presentedToken(r *http.Request) (string, bool) {
	if t := r.URL.Query().Get("token"); t != "" {
		return t, true
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	if c, err := r.Cookie(tokenCookie); err == nil && c.Value != "" {
		return c.Value, true
	}
	return "", false
}

// authorized checks the request's token in constant time. Hashing first
// makes the comparison independent of the token's length too.
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.PlayerToken == "" {
		return true
	}
	got, ok := presentedToken(r)
	if !ok {
		return false
	}
	want := sha256.Sum256([]byte(s.cfg.PlayerToken))
	have := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(want[:], have[:]) == 1
}

// requireToken answers 401 unless the request carries the player token. A
// page request that brought ?token= also gets the cookie, so the page's
// WebSocket (which cannot set headers) is authorized too.
func (s *Server) requireToken(w http.ResponseWriter, r *http.Request) bool {
	if !s.authorized(r) {
		s.metrics.reject(rolePlayer, reasonUnauthorized)
		s.log.Info("refused request without a valid player token", "remote", r.RemoteAddr, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="pixelstream"`)
		http.Error(w, "401 unauthorized: this stream needs a player token (?token=..., Authorization: Bearer ..., or the page's cookie)", http.StatusUnauthorized)
		return false
	}
	if s.cfg.PlayerToken != "" && r.URL.Query().Get("token") != "" {
		http.SetCookie(w, &http.Cookie{
			Name:     tokenCookie,
			Value:    s.cfg.PlayerToken,
			Path:     "/",
			HttpOnly: true,
			SameSite: http.SameSiteStrictMode,
			Secure:   r.TLS != nil,
		})
	}
	return true
}
