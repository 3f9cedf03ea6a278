package playerhttp

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// tokenCookiePrefix starts the name of the cookie that carries the player
// token from the page to its WebSocket: the page is loaded once with
// ?token=, the browser sends the cookie on upgrade. Browsers send a host's
// cookies to every port of it and let any port overwrite them, so the name
// ends in the session's own id (Config.SessionID, else the player port):
// two sessions on one node never read or replace each other's cookie.
const tokenCookiePrefix = "pixelstream_token_"

// tokenCookie is this server's cookie name.
func (s *Server) tokenCookie() string { return tokenCookiePrefix + s.cookieID }

// cookieSafe reports whether id may end a cookie name (RFC 6265 token
// characters, kept to an unsurprising subset).
func cookieSafe(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// presentedToken returns the token a request carries: ?token=, an
// Authorization: Bearer header, or this session's cookie, in that order.
func (s *Server) presentedToken(r *http.Request) (string, bool) {
	if t := r.URL.Query().Get("token"); t != "" {
		return t, true
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	if c, err := r.Cookie(s.tokenCookie()); err == nil && c.Value != "" {
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
	got, ok := s.presentedToken(r)
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
		s.reject(signalling.ReasonUnauthorized)
		s.log.Info("refused request without a valid player token", "remote", r.RemoteAddr, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="pixelstream"`)
		http.Error(w, "401 unauthorized: this stream needs a player token (?token=..., Authorization: Bearer ..., or the page's cookie)", http.StatusUnauthorized)
		return false
	}
	if s.cfg.PlayerToken != "" && r.URL.Query().Get("token") != "" {
		http.SetCookie(w, &http.Cookie{
			Name:     s.tokenCookie(),
			Value:    s.cfg.PlayerToken,
			Path:     "/",
			HttpOnly: true,
			SameSite: http.SameSiteStrictMode,
			Secure:   r.TLS != nil,
		})
	}
	return true
}

// anyOrigin in AllowedOrigins allows every origin.
const anyOrigin = "*"

// parseOrigin checks an origin as a job writes it in allowed_origins and
// returns it normalised as browsers send it: lower case, no default port.
func parseOrigin(o string) (string, error) {
	if o == anyOrigin {
		return o, nil
	}
	u, err := url.Parse(o)
	if err != nil {
		return "", fmt.Errorf("%q is not an origin such as \"https://app.example.com\": %w", o, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q is not an origin such as \"https://app.example.com\": the scheme must be http or https", o)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not an origin such as \"https://app.example.com\": only scheme, host and port, no path, query or user", o)
	}
	return u.Scheme + "://" + hostWithoutDefaultPort(u.Scheme, u.Host), nil
}

// hostWithoutDefaultPort lower-cases host[:port] and drops the scheme's
// default port, as the Origin header leaves it out.
func hostWithoutDefaultPort(scheme, hostport string) string {
	hostport = strings.ToLower(hostport)
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport // no port
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return hostport
}

// errOrigin is why a player WebSocket upgrade was refused for its origin.
var errOrigin = errors.New("origin not allowed")

// checkOrigin allows a player WebSocket upgrade from the page's own origin
// (the Origin's host is the Host the request was sent to), from the
// configured origins, and from clients that send no Origin (not browsers, so
// no visitor's cookies are being used on someone else's behalf). Without it
// any web page a visitor opens could drive a player with the visitor's
// token cookie.
func (s *Server) checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" || s.anyOrigin {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: %q", errOrigin, origin)
	}
	if hostWithoutDefaultPort(u.Scheme, u.Host) == hostWithoutDefaultPort(u.Scheme, r.Host) {
		return nil
	}
	if s.origins[u.Scheme+"://"+hostWithoutDefaultPort(u.Scheme, u.Host)] {
		return nil
	}
	return fmt.Errorf("%w: %q", errOrigin, origin)
}
