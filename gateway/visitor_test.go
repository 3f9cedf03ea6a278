package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
)

// claimedCount is how many of the sessions are claimed or busy.
func claimedCount(ss ...*playerhttp.Signalling) int {
	n := 0
	for _, s := range ss {
		if st := s.Web.ClaimState(); st == playerhttp.ClaimClaimed || st == playerhttp.ClaimBusy {
			n++
		}
	}
	return n
}

// cookie is a visitor's cookie by name.
func (v *visitor) cookie(name string) *http.Cookie {
	u, _ := url.Parse(v.base + "/")
	for _, c := range v.c.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// dropCookie removes one cookie from the visitor's jar (what an attacker
// does to the binding to ask for another session).
func (v *visitor) dropCookie(name string) {
	u, _ := url.Parse(v.base + "/")
	keep := []*http.Cookie{}
	for _, c := range v.c.Jar.Cookies(u) {
		if c.Name != name {
			keep = append(keep, c)
		}
	}
	jar, _ := cookiejar.New(nil)
	jar.SetCookies(u, keep)
	v.c.Jar = jar
}

// TestOneVisitorHoldsOneSession: three page loads of one visitor that keep
// the visitor cookie and drop the binding cookie (what held all three demo
// sessions on 7f5ddc3) hold one session, and each load is routed back to
// it; two other visitors still get the other two.
func TestOneVisitorHoldsOneSession(t *testing.T) {
	s1, s2, s3 := session(t, false), session(t, false), session(t, false)
	base := startGateway(t, fakeNomad(t, s1, s2, s3), 3)
	eventually(t, "three free sessions", func() bool { return free(t, base) == 3 })

	v := newVisitor(t, base)
	for i := 0; i < 3; i++ {
		resp, body := v.navigate()
		if resp.StatusCode != http.StatusOK || strings.Contains(body, "Waiting for a session") {
			t.Fatalf("load %d: HTTP %d, waiting page %v", i+1, resp.StatusCode, strings.Contains(body, "Waiting"))
		}
		if n := claimedCount(s1, s2, s3); n != 1 {
			t.Fatalf("after load %d of one visitor, %d sessions are claimed, want 1", i+1, n)
		}
		v.dropCookie("pixelstream_session")
	}
	// The visitor's player still opens its one session through the gateway.
	v.navigate()
	ws := v.player()
	defer ws.Close()
	for i := 0; i < 2; i++ {
		if resp, body := newVisitor(t, base).navigate(); resp.StatusCode != http.StatusOK || strings.Contains(body, "Waiting for a session") {
			t.Fatalf("other visitor %d did not get a session", i+1)
		}
	}
	if n := claimedCount(s1, s2, s3); n != 3 {
		t.Fatalf("%d sessions claimed after three visitors, want 3", n)
	}
}

// TestSelfMintedIDsAreReplaced: a visitor id the visitor made up (well
// formed, 22 characters, as 7f5ddc3 accepted) is replaced by a signed one,
// at the page and at the waiting page's event stream.
func TestSelfMintedIDsAreReplaced(t *testing.T) {
	s := session(t, false)
	base := startGateway(t, fakeNomad(t, s), 1)
	eventually(t, "free", func() bool { return free(t, base) == 1 })
	newVisitor(t, base).navigate() // takes the only session: the next ones wait

	const forged = "AAAAAAAAAAAAAAAAAAAAAA"
	for _, path := range []string{"/", "/gateway/queue/events"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.AddCookie(&http.Cookie{Name: "pixelstream_visitor", Value: forged})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		for _, c := range resp.Cookies() {
			if c.Name == "pixelstream_visitor" {
				got = c.Value
			}
		}
		resp.Body.Close()
		cancel()
		if got == "" || strings.HasPrefix(got, forged) {
			t.Fatalf("%s with a self-minted visitor id: cookie %q, want a fresh signed id", path, got)
		}
	}
}

// TestCrossSiteNavigationDoesNotClaim: a link, form or frame on another
// site (Sec-Fetch-Site: cross-site or same-site) gets a page that asks for
// a click and no session is spent; the click (same-origin) claims.
func TestCrossSiteNavigationDoesNotClaim(t *testing.T) {
	s := session(t, false)
	base := startGateway(t, fakeNomad(t, s), 1)
	eventually(t, "free", func() bool { return free(t, base) == 1 })
	v := newVisitor(t, base)
	for _, site := range []string{"cross-site", "same-site"} {
		resp, body := v.navigateWith(http.Header{"Sec-Fetch-Site": {site}})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="start"`) || s.Web.ClaimState() != playerhttp.ClaimFree {
			t.Fatalf("%s navigation: HTTP %d, click page %v, session %s; want the click page and a free session", site, resp.StatusCode,
				strings.Contains(body, `id="start"`), s.Web.ClaimState())
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'self'") {
			t.Fatalf("CSP %q: want frame-ancestors 'self'", csp)
		}
	}
	if resp, _ := v.navigateWith(http.Header{"Sec-Fetch-Site": {"same-origin"}}); resp.StatusCode != http.StatusOK || s.Web.ClaimState() != playerhttp.ClaimClaimed {
		t.Fatalf("the visitor's click: HTTP %d, session %s; want a claim", resp.StatusCode, s.Web.ClaimState())
	}
	// The waiting page's event stream is not for other sites either.
	req, _ := http.NewRequest(http.MethodGet, base+"/gateway/queue/events", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site event stream: %v %v, want 403", resp, err)
	}
}

// TestBindingCookieIsOpaque: nothing of the session (address, port,
// allocation, token) is readable in the binding cookie, raw or decoded.
func TestBindingCookieIsOpaque(t *testing.T) {
	s := session(t, false)
	base := startGateway(t, fakeNomad(t, s), 1)
	eventually(t, "free", func() bool { return free(t, base) == 1 })
	v := newVisitor(t, base)
	v.navigate()
	c := v.cookie("pixelstream_session")
	if c == nil {
		t.Fatal("no binding cookie")
	}
	host, port, _ := strings.Cut(s.PlayerAddr().String(), ":")
	raw, _ := base64.RawURLEncoding.DecodeString(c.Value)
	allocMu.Lock()
	alloc := allocOf[s]
	allocMu.Unlock()
	for _, text := range []string{c.Value, string(raw)} {
		for _, leak := range []string{host, port, alloc, `"addr"`, `"tok"`} {
			if strings.Contains(text, leak) {
				t.Fatalf("the binding cookie shows %q", leak)
			}
		}
	}
	// 7f5ddc3's cookie was a JWT: three dot-separated base64 parts.
	if strings.Count(c.Value, ".") == 2 {
		t.Fatalf("the binding cookie looks like a JWT: %q", c.Value)
	}
	// The session (its logs and task events) knows the visitor only by a
	// pseudonym, not by the id in the visitor's cookie.
	id, _, _ := strings.Cut(v.cookie("pixelstream_visitor").Value, ".")
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.PlayerAddr().String()+claim.Path, nil)
	claim.Authorize(req, claim.SessionKey(secret, alloc), nil, time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st claim.Response
	_ = json.NewDecoder(resp.Body).Decode(&st)
	if st.Visitor == "" || strings.Contains(st.Visitor, id) || !strings.HasPrefix(st.Visitor, "v-") {
		t.Fatalf("the session knows the visitor as %q (cookie id %q), want a pseudonym", st.Visitor, id)
	}
}

// TestExpiredJWTEndsTheBinding: the binding lasts no longer than the
// visitor's JWT: after its exp the session is closed to the visitor (a
// proxied request gets no session) and a reload with the old JWT is refused.
func TestExpiredJWTEndsTheBinding(t *testing.T) {
	const key = "unit-jwt-hs256-key-0123456789abcdef0123"
	s := session(t, false)
	base := startGateway(t, fakeNomad(t, s), 1, "-auth-mode", "jwt", "-auth-jwt-algorithm", "HS256", "-auth-jwt-hmac-key", key,
		"-auth-jwt-issuer", "iss", "-auth-jwt-audience", "aud")
	eventually(t, "free", func() bool { return free(t, base) == 1 })
	now := time.Now()
	exp := now.Add(2 * time.Second)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "iss", Audience: jwt.ClaimStrings{"aud"},
		Subject: "alice", IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp)}).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	v := newVisitor(t, base)
	auth := http.Header{"Authorization": {"Bearer " + tok}}
	if resp, body := v.navigateWith(auth); resp.StatusCode != http.StatusOK || strings.Contains(body, "Waiting") {
		t.Fatalf("visitor with a valid JWT: HTTP %d", resp.StatusCode)
	}
	if c := v.cookie("pixelstream_session"); c == nil {
		t.Fatal("no binding")
	}
	api := func() int {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/status", nil)
		resp, err := v.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := api(); code != http.StatusOK {
		t.Fatalf("the session's /api/status through the gateway before exp: %d", code)
	}
	eventually(t, "the binding to end at the JWT's exp", func() bool { return api() == http.StatusNotFound })
	if time.Now().Before(exp.Truncate(time.Second)) { // exp is whole seconds
		t.Fatalf("the binding ended before the JWT's exp")
	}
	if resp, _ := v.navigateWith(auth); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reload with the expired JWT: HTTP %d, want 401", resp.StatusCode)
	}
}

// TestOperatorEndpointsRefuseVisitors: /metrics and /api/* are not on the
// visitors' listener at all; on the operator listener they need the
// operator token, and the fleet secret opens nothing.
func TestOperatorEndpointsRefuseVisitors(t *testing.T) {
	s := session(t, false)
	base := startGateway(t, fakeNomad(t, s), 1)
	allocMu.Lock()
	op := operatorOf[base]
	allocMu.Unlock()
	for _, path := range []string{"/metrics", "/api/sessions", "/api/queue"} {
		for _, tc := range []struct {
			url, auth string
			want      int
		}{
			{base + path, "", http.StatusNotFound},
			{base + path, opHeader, http.StatusNotFound},
			{op + path, "", http.StatusUnauthorized},
			{op + path, "Bearer " + secret, http.StatusUnauthorized},
			{op + path, opHeader, http.StatusOK},
		} {
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			req.Header.Set("Sec-Fetch-Mode", "cors")
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("GET %s (auth %q): %d, want %d", tc.url, tc.auth, resp.StatusCode, tc.want)
			}
		}
	}
}

// TestPerAddressCaps: visitors at one address hold at most
// max_claims_per_address sessions and open at most
// max_waiting_per_address waiting pages; the visitor already streaming
// keeps streaming.
func TestPerAddressCaps(t *testing.T) {
	s1, s2 := session(t, false), session(t, false)
	base := startGateway(t, fakeNomad(t, s1, s2), 2, "-max-claims-per-address", "1", "-max-waiting-per-address", "2")
	eventually(t, "two free", func() bool { return free(t, base) == 2 })
	first := newVisitor(t, base)
	first.navigate()
	ws := first.player()
	defer ws.Close()
	resp, _ := newVisitor(t, base).navigate()
	if resp.StatusCode != http.StatusTooManyRequests || claimedCount(s1, s2) != 1 {
		t.Fatalf("a second visitor at the same address: HTTP %d, %d sessions claimed; want 429 and 1", resp.StatusCode, claimedCount(s1, s2))
	}
	// Waiting pages: two streams from this address, the third refused.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/gateway/queue/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("event stream %d: %v %v", i+1, resp, err)
		}
		defer resp.Body.Close()
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/gateway/queue/events", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third event stream from one address: %v %v, want 429", resp, err)
	}
	// The first visitor is unharmed.
	if err := ws.WriteJSON(map[string]string{"type": "listStreamers"}); err != nil {
		t.Fatal(err)
	}
	for {
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("the streaming visitor after the caps: %v", err)
		}
		if m["type"] == "streamerList" {
			break
		}
	}
}

// TestPerAddressCapsBehindATrustedProxy: behind a load balancer the
// gateway trusts (-trusted-proxy), the cap counts the visitors' forwarded
// addresses, not the balancer's: two visitors at two addresses both get a
// session, a second one at the first address does not.
func TestPerAddressCapsBehindATrustedProxy(t *testing.T) {
	s1, s2, s3 := session(t, false), session(t, false), session(t, false)
	base := startGateway(t, fakeNomad(t, s1, s2, s3), 3, "-max-claims-per-address", "1", "-trusted-proxy", "127.0.0.0/8")
	eventually(t, "three free", func() bool { return free(t, base) == 3 })
	for i, tc := range []struct {
		xff  string
		want int
	}{{"198.51.100.1", http.StatusOK}, {"198.51.100.2", http.StatusOK}, {"198.51.100.1", http.StatusTooManyRequests}} {
		resp, _ := newVisitor(t, base).navigateWith(http.Header{"X-Forwarded-For": {tc.xff}})
		if resp.StatusCode != tc.want {
			t.Fatalf("visitor %d from %s behind the proxy: HTTP %d, want %d", i+1, tc.xff, resp.StatusCode, tc.want)
		}
	}
	if n := claimedCount(s1, s2, s3); n != 2 {
		t.Fatalf("%d sessions claimed, want 2", n)
	}
}
