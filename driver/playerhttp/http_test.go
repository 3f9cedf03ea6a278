package playerhttp

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling/sigtest"
)

// TestPlayerToken checks the page, the REST API and the WebSocket without,
// with a wrong and with the right token, through every way of presenting it.
func TestPlayerToken(t *testing.T) {
	const token = "s3cret-token"
	s := startServer(t, Config{PlayerToken: token})
	cases := []struct {
		name   string
		query  string
		header http.Header
		ok     bool
	}{
		{"no token", "", nil, false},
		{"wrong query token", "?token=nope", nil, false},
		{"wrong bearer", "", http.Header{"Authorization": {"Bearer nope"}}, false},
		{"wrong cookie", "", http.Header{"Cookie": {s.tokenCookie() + "=nope"}}, false},
		{"prefix of the token", "?token=s3cret", nil, false},
		{"query token", "?token=" + token, nil, true},
		{"bearer", "", http.Header{"Authorization": {"Bearer " + token}}, true},
		{"cookie", "", http.Header{"Cookie": {s.tokenCookie() + "=" + token}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/", "/api/status"} {
				resp, body := httpGet(t, httpURL(s, path+tc.query), tc.header)
				if tc.ok != (resp.StatusCode == http.StatusOK) {
					t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
				}
				if !tc.ok && resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("GET %s refused with %d, want 401", path, resp.StatusCode)
				}
				if strings.Contains(body, token) {
					t.Fatalf("GET %s leaks the token", path)
				}
			}
			ws, resp, err := websocket.DefaultDialer.Dial(playerURL(s)+tc.query, tc.header)
			if !tc.ok {
				if err == nil {
					_ = ws.Close()
					t.Fatal("WebSocket accepted without the right token")
				}
				if resp == nil || resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("WebSocket refused with %v, want 401", resp)
				}
				return
			}
			if err != nil {
				t.Fatalf("WebSocket with the right token: %v", err)
			}
			p := wrap(&sigtest.Peer{T: t, Name: "player", WS: ws})
			defer ws.Close()
			p.expect(wantConfig)
		})
	}
	t.Run("page sets the cookie the WebSocket then uses", func(t *testing.T) {
		resp, _ := httpGet(t, httpURL(s, "/?token="+token), nil)
		var cookie *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == s.tokenCookie() {
				cookie = c
			}
		}
		if cookie == nil || !cookie.HttpOnly {
			t.Fatalf("page did not set an HttpOnly %s cookie: %v", s.tokenCookie(), resp.Cookies())
		}
		p := dial(t, "browser", playerURL(s), http.Header{"Cookie": {cookie.String()}})
		p.expect(wantConfig)
	})
	t.Run("health and metrics stay open", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/metrics"} {
			if resp, _ := httpGet(t, httpURL(s, path), nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s without token: %d", path, resp.StatusCode)
			}
		}
	})
}

// TestHTTPEndpoints checks the placeholder or built page, health, metrics and
// the REST API shapes, and that nothing exposes TURN credentials.
func TestHTTPEndpoints(t *testing.T) {
	s := startServerWith(t, Config{}, signalling.Config{
		PeerConnectionOptions: json.RawMessage(`{"iceServers":[{"urls":["turn:192.0.2.1:3478"],"username":"u","credential":"TURNSECRET"}]}`),
	})
	st := dial(t, "streamer", streamerURL(s), nil)
	st.expect(wantIdentify)
	st.recv()
	st.send(`{"type":"endpointId","id":"S"}`)
	st.recv()
	p := dial(t, "player", playerURL(s), nil)
	p.recv()
	subscribe(t, p, st, "S")
	p.send(`{"type":"answer","sdp":"x"}`)
	st.recv()

	resp, body := httpGet(t, httpURL(s, "/"), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<html") {
		t.Fatalf("GET /: %d %.200s", resp.StatusCode, body)
	}
	if !BundleEmbedded() && !strings.Contains(body, "npm --prefix web ci") {
		t.Fatalf("placeholder page does not say how to build the bundle: %s", body)
	}

	get := func(path string, into any) {
		t.Helper()
		resp, body := httpGet(t, httpURL(s, path), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if strings.Contains(body, "TURNSECRET") {
			t.Fatalf("GET %s exposes TURN credentials", path)
		}
		if err := json.Unmarshal([]byte(body), into); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	var status map[string]any
	get("/api/status", &status)
	if status["streamer_count"] != 1.0 || status["player_count"] != 1.0 || status["version"] == nil || status["uptime"] == nil {
		t.Fatalf("/api/status = %v", status)
	}
	var streamers []apiStreamerInfo
	get("/api/streamers", &streamers)
	if len(streamers) != 1 || streamers[0].StreamerID != "S" {
		t.Fatalf("/api/streamers = %v", streamers)
	}
	var info apiStreamerInfo
	get("/api/streamers/S", &info)
	if info.StreamerID != "S" || info.Type != "Streamer" || !info.Streaming || len(info.Subscribers) != 1 || info.Subscribers[0].PlayerID != "1" {
		t.Fatalf("/api/streamers/S = %+v", info)
	}
	var players []apiPlayerInfo
	get("/api/players", &players)
	if len(players) != 1 || players[0].PlayerID != "1" {
		t.Fatalf("/api/players = %v", players)
	}
	var pinfo apiPlayerInfo
	get("/api/players/1", &pinfo)
	if pinfo.PlayerID != "1" || pinfo.Type != "Player" || pinfo.SubscribedTo != "S" {
		t.Fatalf("/api/players/1 = %+v", pinfo)
	}
	for _, path := range []string{"/api/streamers/nobody", "/api/players/999"} {
		if resp, _ := httpGet(t, httpURL(s, path), nil); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}

	_, metrics := httpGet(t, httpURL(s, "/metrics"), nil)
	for _, want := range []string{
		"pixelstream_signalling_streamers 1",
		"pixelstream_signalling_players 1",
		`pixelstream_signalling_messages_received_total{endpoint="player",type="answer"} 1`,
		`pixelstream_signalling_rejected_total{endpoint="player",reason="rate_limit"} 0`,
		`pixelstream_signalling_received_bytes_total{endpoint="player"}`,
		`pixelstream_signalling_sent_bytes_total{endpoint="streamer"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, "TURNSECRET") {
		t.Fatal("/metrics exposes TURN credentials")
	}

	if resp, _ := httpGet(t, "http://"+s.StreamerAddr().String()+"/", nil); resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET on the streamer port: %d, want 426", resp.StatusCode)
	}
}

// TestHTTPRoot serves a user's directory instead of the embedded page.
func TestHTTPRoot(t *testing.T) {
	dir := t.TempDir()
	if err := writeFile(dir+"/index.html", "<html>my own player</html>"); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Config{HTTPRoot: dir})
	resp, body := httpGet(t, httpURL(s, "/"), nil)
	if resp.StatusCode != http.StatusOK || body != "<html>my own player</html>" {
		t.Fatalf("GET / with http_root: %d %q", resp.StatusCode, body)
	}
}

// TestConfigValidation: bad configs are refused with the field named.
func TestConfigValidation(t *testing.T) {
	router := startServer(t, Config{}).router
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no player address", Config{Router: router}, "Listen is required"},
		{"bad player address", Config{Router: router, Listen: "localhost"}, "Listen \"localhost\" is not host:port"},
		{"no router", Config{Listen: ":0"}, "Router is required"},
		{"missing http root", Config{Router: router, Listen: ":0", HTTPRoot: "/nonexistent/dir"}, "HTTPRoot"},
		{"origin without scheme", Config{Router: router, Listen: ":0", AllowedOrigins: []string{"app.example.com"}}, `AllowedOrigins[0]: "app.example.com" is not an origin`},
		{"origin with a path", Config{Router: router, Listen: ":0", AllowedOrigins: []string{"*", "https://app.example.com/play"}}, "AllowedOrigins[1]"},
		{"session id not cookie-safe", Config{Router: router, Listen: ":0", SessionID: "a b"}, `SessionID "a b"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// dialFrom opens a TCP connection to the player port from a given loopback
// address (all of 127.0.0.0/8 is local on Linux), so tests can be several
// remote addresses at once.
func dialFrom(t *testing.T, s *testServer, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: waitFor}
	nc, err := d.Dial("tcp", s.PlayerAddr().String())
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return nc
}

// keepAliveGet sends GET /healthz on nc and returns the response status,
// leaving the connection open (HTTP/1.1 keep-alive).
func keepAliveGet(t *testing.T, nc net.Conn, br *bufio.Reader) (int, http.Header) {
	t.Helper()
	_ = nc.SetDeadline(time.Now().Add(waitFor))
	defer nc.SetDeadline(time.Time{})
	if _, err := io.WriteString(nc, "GET /healthz HTTP/1.1\r\nHost: pixelstream\r\n\r\n"); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// expectClosedByServer reads nc until the server closes it, failing if it
// is still open after waitFor.
func expectClosedByServer(t *testing.T, nc net.Conn, what string) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(waitFor))
	_, err := io.Copy(io.Discard, nc)
	if isTimeout(err) {
		t.Fatalf("%s: the server kept the connection open for %s", what, waitFor)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestHTTPTimeouts: connections that park on the server are closed, and
// WebSockets are not cut off by the timeouts of their upgrade request.
func TestHTTPTimeouts(t *testing.T) {
	const short = 200 * time.Millisecond
	t.Run("idle keep-alive connection is closed", func(t *testing.T) {
		s := startServerWith(t, Config{}, signalling.Config{Limits: signalling.Limits{HTTPIdleTimeout: short}})
		nc := dialFrom(t, s, "127.0.0.2")
		if code, _ := keepAliveGet(t, nc, bufio.NewReader(nc)); code != http.StatusOK {
			t.Fatalf("GET /healthz: %d", code)
		}
		expectClosedByServer(t, nc, "idle keep-alive connection")
	})
	t.Run("unfinished request header is closed", func(t *testing.T) {
		s := startServerWith(t, Config{}, signalling.Config{Limits: signalling.Limits{HTTPReadHeaderTimeout: short}})
		nc := dialFrom(t, s, "127.0.0.2")
		if _, err := io.WriteString(nc, "GET / HTTP/1.1\r\nHost: pixelstream\r\n"); err != nil {
			t.Fatal(err)
		}
		expectClosedByServer(t, nc, "request header never finished")
	})
	t.Run("WebSockets outlive every HTTP timeout", func(t *testing.T) {
		s := startServerWith(t, Config{}, signalling.Config{Limits: signalling.Limits{HTTPReadHeaderTimeout: short, HTTPReadTimeout: short,
			HTTPWriteTimeout: short, HTTPIdleTimeout: short}})
		st := newStreamer(t, s, "S")
		p := newPlayer(t, s, "player")
		id := subscribe(t, p, st, "S")
		// Let every deadline the HTTP server set on the upgrade requests
		// pass: this waits for time itself, not for readiness.
		time.Sleep(3 * short)
		p.roundTrip()
		st.roundTrip()
		st.send(fmt.Sprintf(`{"type":"offer","playerId":%q,"sdp":"v=0"}`, id))
		p.expect(fmt.Sprintf(`{"type":"offer","sdp":"v=0","playerId":%q}`, id))
	})
}

// TestConnectionCaps: one address cannot take more than its share of the
// player port, players cannot fill the streamer's budget, refusals are
// answered 503 and counted.
func TestConnectionCaps(t *testing.T) {
	t.Run("per address", func(t *testing.T) {
		s := startServerWith(t, Config{}, signalling.Config{Limits: signalling.Limits{MaxConnectionsPerAddress: 2}})
		var held []net.Conn
		for i := 0; i < 2; i++ {
			nc := dialFrom(t, s, "127.0.0.2")
			if code, _ := keepAliveGet(t, nc, bufio.NewReader(nc)); code != http.StatusOK {
				t.Fatalf("connection %d within the cap: %d", i+1, code)
			}
			held = append(held, nc)
		}
		over := dialFrom(t, s, "127.0.0.2")
		code, hdr := keepAliveGet(t, over, bufio.NewReader(over))
		if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
			t.Fatalf("connection over the per-address cap: %d %v, want 503 with Retry-After", code, hdr)
		}
		expectClosedByServer(t, over, "refused connection")
		other := dialFrom(t, s, "127.0.0.3")
		if code, _ := keepAliveGet(t, other, bufio.NewReader(other)); code != http.StatusOK {
			t.Fatalf("another address: %d", code)
		}
		// A WebSocket player from a third address is unaffected.
		newPlayer(t, s, "bystander")
		if m := metricsText(t, s); !strings.Contains(m, `pixelstream_signalling_connections_refused_total{listener="player",reason="per_address"} 1`) {
			t.Fatalf("/metrics does not count the refusal:\n%s", grepLines(m, "refused"))
		}
		// Closing one frees its place.
		_ = held[0].Close()
		eventually(t, "a place freed by a close", func() bool {
			nc := dialFrom(t, s, "127.0.0.2")
			code, _ := keepAliveGet(t, nc, bufio.NewReader(nc))
			return code == http.StatusOK
		})
	})
	t.Run("players cannot take the streamer's budget", func(t *testing.T) {
		s := startServerWith(t, Config{}, signalling.Config{Limits: signalling.Limits{MaxPlayerConnections: 3}})
		for i := 2; i < 5; i++ {
			nc := dialFrom(t, s, fmt.Sprintf("127.0.0.%d", i))
			if code, _ := keepAliveGet(t, nc, bufio.NewReader(nc)); code != http.StatusOK {
				t.Fatalf("player connection %d: %d", i, code)
			}
		}
		over := dialFrom(t, s, "127.0.0.9")
		if code, _ := keepAliveGet(t, over, bufio.NewReader(over)); code != http.StatusServiceUnavailable {
			t.Fatalf("connection over the player port's total: %d, want 503", code)
		}
		st := newStreamer(t, s, "S")
		st.roundTrip()
		if _, body := httpGet(t, "http://"+s.StreamerAddr().String()+"/", nil); !strings.Contains(body, "connect with a WebSocket") {
			t.Fatalf("streamer port: %q", body)
		}
	})
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestOriginCheck: player WebSockets from other sites' pages are refused
// unless allowed; clients without an Origin are not browsers and pass.
func TestOriginCheck(t *testing.T) {
	cases := []struct {
		name    string
		allowed []string
		origin  string // "SELF": the player port's own origin
		ok      bool
	}{
		{"no Origin (streamer, CLI)", nil, "", true},
		{"same origin", nil, "SELF", true},
		{"another site", nil, "https://evil.example", false},
		{"same host, other port (another session)", nil, "http://127.0.0.1:1", false},
		{"opaque origin", nil, "null", false},
		{"listed origin", []string{"https://app.example.com"}, "https://app.example.com", true},
		{"listed origin, default port written out", []string{"https://app.example.com:443"}, "https://APP.example.com", true},
		{"listed host, other scheme", []string{"https://app.example.com"}, "http://app.example.com", false},
		{"unlisted origin with a list", []string{"https://app.example.com"}, "https://other.example.com", false},
		{"any origin", []string{"*"}, "https://evil.example", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{AllowedOrigins: tc.allowed})
			h := http.Header{}
			switch tc.origin {
			case "":
			case "SELF":
				h.Set("Origin", "http://"+s.PlayerAddr().String())
			default:
				h.Set("Origin", tc.origin)
			}
			ws, resp, err := websocket.DefaultDialer.Dial(playerURL(s), h)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v %v", err, resp)
				}
				p := wrap(&sigtest.Peer{T: t, Name: "player", WS: ws})
				defer ws.Close()
				p.expect(wantConfig)
				return
			}
			if err == nil {
				_ = ws.Close()
				t.Fatal("upgrade accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("refused with %v, want 403", resp)
			}
			if m := metricsText(t, s); !strings.Contains(m, `pixelstream_signalling_rejected_total{endpoint="player",reason="bad_origin"} 1`) {
				t.Fatalf("refusal not counted:\n%s", grepLines(m, "bad_origin"))
			}
		})
	}
}

// TestTokenCookiePerSession: a browser holding the cookies of two sessions
// on one host (different ports) keeps both; neither overwrites the other.
func TestTokenCookiePerSession(t *testing.T) {
	const tokenA, tokenB = "token-of-session-a", "token-of-session-b"
	a := startServer(t, Config{PlayerToken: tokenA})
	b := startServer(t, Config{PlayerToken: tokenB})
	named := startServer(t, Config{PlayerToken: tokenA, SessionID: "alloc-1234"})
	if a.tokenCookie() == b.tokenCookie() || !strings.HasSuffix(named.tokenCookie(), "alloc-1234") {
		t.Fatalf("cookie names %q, %q, %q", a.tokenCookie(), b.tokenCookie(), named.tokenCookie())
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar}
	for _, visit := range []struct {
		s     *testServer
		token string
	}{{a, tokenA}, {b, tokenB}} {
		resp, err := browser.Get(httpURL(visit.s, "/?token="+visit.token))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page with token: %d", resp.StatusCode)
		}
	}
	for _, s := range []*testServer{a, b} {
		u, _ := url.Parse(httpURL(s, "/"))
		var parts []string
		for _, c := range jar.Cookies(u) {
			parts = append(parts, c.Name+"="+c.Value)
		}
		p := dial(t, "browser", playerURL(s), http.Header{"Cookie": {strings.Join(parts, "; ")}})
		p.expect(wantConfig)
	}
}

// TestHTTPRootHardening: http_root serves its own regular files only.
func TestHTTPRootHardening(t *testing.T) {
	outside := t.TempDir()
	must(t, writeFile(outside+"/secret.txt", "outside secret"))
	dir := t.TempDir()
	must(t, writeFile(dir+"/index.html", "<html>root index</html>"))
	must(t, writeFile(dir+"/app.js", "console.log(1)"))
	must(t, writeFile(dir+"/.env", "SECRET=1"))
	must(t, os.MkdirAll(dir+"/.git", 0o755))
	must(t, writeFile(dir+"/.git/config", "[core]"))
	must(t, os.MkdirAll(dir+"/assets", 0o755))
	must(t, writeFile(dir+"/assets/a.css", "body{}"))
	must(t, os.MkdirAll(dir+"/game", 0o755))
	must(t, writeFile(dir+"/game/index.html", "<html>game</html>"))
	must(t, os.MkdirAll(dir+"/.well-known", 0o755))
	must(t, writeFile(dir+"/.well-known/security.txt", "Contact: x"))
	must(t, os.Symlink(outside+"/secret.txt", dir+"/abs-link.txt"))
	must(t, os.Symlink("../"+filepath.Base(outside)+"/secret.txt", dir+"/rel-link.txt"))
	must(t, os.Symlink(outside, dir+"/linkdir"))
	must(t, os.Symlink("app.js", dir+"/inside-link.js"))
	s := startServer(t, Config{HTTPRoot: dir})

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cases := []struct {
		path string
		code int
		body string
	}{
		{"/", 200, "<html>root index</html>"},
		{"/app.js", 200, "console.log(1)"},
		{"/inside-link.js", 200, "console.log(1)"},
		{"/game/", 200, "<html>game</html>"},
		{"/.well-known/security.txt", 200, "Contact: x"},
		{"/game", 301, ""},
		{"/assets/", 404, ""},
		{"/.env", 404, ""},
		{"/.git/config", 404, ""},
		{"/assets/.hidden", 404, ""},
		{"/abs-link.txt", 404, ""},
		{"/rel-link.txt", 404, ""},
		{"/linkdir/secret.txt", 404, ""},
		{"/%2e%2e/" + filepath.Base(outside) + "/secret.txt", 404, ""},
		{"/" + strings.Repeat("a", 9<<10), 414, ""},
	}
	for _, tc := range cases {
		name := tc.path
		if len(name) > 40 {
			name = name[:40] + "..."
		}
		t.Run(name, func(t *testing.T) {
			resp, err := noRedirect.Get(httpURL(s, tc.path))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.code || (tc.body != "" && string(body) != tc.body) {
				t.Fatalf("GET: %d %.100q, want %d %q", resp.StatusCode, body, tc.code, tc.body)
			}
			if strings.Contains(string(body), "outside secret") || strings.Contains(string(body), "SECRET=1") {
				t.Fatal("served a file it must not")
			}
			if tc.code == 301 && resp.Header.Get("Location") != "/game/" {
				t.Fatalf("redirect to %q, want /game/", resp.Header.Get("Location"))
			}
		})
	}
	t.Run("URL beyond the header limit", func(t *testing.T) {
		resp, err := http.Get(httpURL(s, "/"+strings.Repeat("a", 200<<10)))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge && resp.StatusCode != http.StatusRequestURITooLong {
			t.Fatalf("200 KiB URL: %d, want 414 or 431", resp.StatusCode)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStreamerNotLockedOutByPlayers: players holding every WebSocket the
// server allows do not keep a streamer from connecting.
func TestStreamerNotLockedOutByPlayers(t *testing.T) {
	s := startServerWith(t, Config{}, signalling.Config{Limits: signalling.Limits{MaxConnections: 2}})
	newPlayer(t, s, "player 1")
	newPlayer(t, s, "player 2")
	ws, _, err := websocket.DefaultDialer.Dial(playerURL(s), nil)
	if err == nil {
		p := wrap(&sigtest.Peer{T: t, Name: "player 3", WS: ws})
		code, _ := p.expectClose()
		_ = ws.Close()
		if code != 1013 {
			t.Fatalf("player over MaxConnections closed with %d, want 1013", code)
		}
	}
	st := newStreamer(t, s, "S")
	st.roundTrip()
}

// TestStatusExtra: the session adds its own fields to /api/status, and
// cannot override the server's.
func TestStatusExtra(t *testing.T) {
	s := startServer(t, Config{StatusExtra: func() map[string]any {
		return map[string]any{"max_duration_left_s": 42, "player_count": "must not override"}
	}})
	st := newStreamer(t, s, "DefaultStreamer")
	a, b := newPlayer(t, s, "a"), newPlayer(t, s, "b")
	subscribe(t, a, st, "DefaultStreamer")
	b.roundTrip()

	resp, body := httpGet(t, httpURL(s, "/api/status"), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/api/status: %d", resp.StatusCode)
	}
	var status map[string]any
	if err := json.Unmarshal([]byte(body), &status); err != nil {
		t.Fatal(err)
	}
	if status["max_duration_left_s"] != float64(42) || status["player_count"] != float64(2) {
		t.Fatalf("/api/status = %s", body)
	}
}
