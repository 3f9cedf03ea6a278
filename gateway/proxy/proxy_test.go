package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestSessionCannotSetGatewayCookies: a session (its app may be hostile)
// answers with Set-Cookie for the gateway's own cookies, plain and
// __Host-: the visitor's browser never sees them; the session's own
// cookies pass, and the gateway's cookies never reach the session.
func TestSessionCannotSetGatewayCookies(t *testing.T) {
	var sawCookie string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawCookie = r.Header.Get("Cookie")
		for _, c := range []string{"pixelstream_session=evil; Path=/", "__Host-pixelstream_visitor=evil; Path=/; Secure",
			"pixelstream_auth=evil", "app_pref=dark; Path=/"} {
			w.Header().Add("Set-Cookie", c)
		}
		_, _ = w.Write([]byte("page"))
	}))
	defer upstream.Close()
	gatewayCookie := func(name string) bool {
		name = strings.TrimPrefix(name, "__Host-")
		return name == "pixelstream_session" || name == "pixelstream_visitor" || name == "pixelstream_auth"
	}
	p := New(hclog.NewNullLogger(), gatewayCookie, "auth", func(w http.ResponseWriter, _ *http.Request, err error) {
		t.Errorf("proxy error: %v", err)
	}, nil)
	req := httptest.NewRequest(http.MethodGet, "http://gateway.test/", nil)
	req.Header.Set("Cookie", "pixelstream_session=mine; app_pref=light")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, WithTarget(req, Target{AllocID: "a", Addr: strings.TrimPrefix(upstream.URL, "http://"), Token: "t"}))
	got := rec.Result().Header.Values("Set-Cookie")
	if len(got) != 1 || !strings.HasPrefix(got[0], "app_pref=") {
		t.Fatalf("Set-Cookie through the proxy: %q, want only the session's own app_pref", got)
	}
	if strings.Contains(sawCookie, "pixelstream_session") || !strings.Contains(sawCookie, "app_pref=light") {
		t.Fatalf("the session saw cookies %q, want app_pref only", sawCookie)
	}
}
