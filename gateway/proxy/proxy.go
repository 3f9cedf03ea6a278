// Package proxy forwards a visitor's page, API and player WebSocket to its
// session under the gateway's origin. The session checks the WebSocket's
// Origin against Host, so Host is passed through unchanged; the session's
// one-time token rides in Authorization, never in the visitor's URL; the
// gateway's own cookies (the visitor's credential among them) are not sent
// on to the session, nor may a session set them.
package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pixelstream/nomad-driver-pixelstream/gateway/sessiontls"
)

// ErrStaleClaim is a session's 401 to a page load: the visitor's binding
// names a claim the session no longer has (expired, or the session went
// back to the pool), so the gateway finds the visitor a session again.
var ErrStaleClaim = errors.New("the session no longer holds this visitor's claim")

// IsNavigation says whether r is a browser loading a page (not an asset,
// an API call or a WebSocket).
func IsNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet || strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" {
		return m == "navigate"
	}
	return r.URL.Path == "/" || strings.Contains(r.Header.Get("Accept"), "text/html")
}

// Target is where one request goes.
type Target struct {
	AllocID string
	Addr    string // host:port of the session's player port
	Token   string // the claim's player token
}

type targetKey struct{}

// WithTarget attaches the session a request goes to.
func WithTarget(r *http.Request, t Target) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), targetKey{}, t))
}

// TargetOf returns the session attached to r.
func TargetOf(r *http.Request) (Target, bool) {
	t, ok := r.Context().Value(targetKey{}).(Target)
	return t, ok
}

// New returns the reverse proxy. dropCookie says which cookies stay at
// the gateway; onError handles a session that did not answer.
// dropQuery names the query parameter that carries the visitor's credential:
// it stays at the gateway too.
// sessions, when set, reaches sessions over TLS.
func New(log hclog.Logger, dropCookie func(name string) bool, dropQuery string, onError func(http.ResponseWriter, *http.Request, error),
	sessions *sessiontls.Dialer) *httputil.ReverseProxy {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       60 * time.Second,
	}
	if sessions != nil {
		tr.DialTLSContext = sessions.DialTLSContext
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t, _ := TargetOf(pr.In)
			pr.SetURL(&url.URL{Scheme: sessions.Scheme(), Host: t.Addr})
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			if q := pr.Out.URL.Query(); dropQuery != "" && q.Has(dropQuery) {
				q.Del(dropQuery)
				pr.Out.URL.RawQuery = q.Encode()
			}
			pr.Out.Header.Set("Authorization", "Bearer "+t.Token)
			keep := make([]string, 0, 4)
			for _, c := range pr.In.Cookies() {
				if !dropCookie(c.Name) {
					keep = append(keep, c.String())
				}
			}
			pr.Out.Header.Del("Cookie")
			if len(keep) > 0 {
				pr.Out.Header.Set("Cookie", strings.Join(keep, "; "))
			}
		},
		Transport: tr,
		// A session must not set the gateway's own cookies (a visitor's
		// binding or id under the gateway's origin): those are dropped.
		ModifyResponse: func(resp *http.Response) error {
			if cs := resp.Header.Values("Set-Cookie"); len(cs) > 0 {
				resp.Header.Del("Set-Cookie")
				for _, c := range cs {
					name, _, _ := strings.Cut(c, "=")
					if !dropCookie(strings.TrimSpace(name)) {
						resp.Header.Add("Set-Cookie", c)
					}
				}
			}
			if resp.StatusCode == http.StatusUnauthorized && IsNavigation(resp.Request) {
				return ErrStaleClaim
			}
			return nil
		},
		ErrorLog:     log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		ErrorHandler: onError,
	}
}
