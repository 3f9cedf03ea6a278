package signalling

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
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
			p := &peer{t: t, name: "player", ws: ws}
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
	s := startServer(t, Config{
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
	var streamers []string
	get("/api/streamers", &streamers)
	if len(streamers) != 1 || streamers[0] != "S" {
		t.Fatalf("/api/streamers = %v", streamers)
	}
	var info apiStreamerInfo
	get("/api/streamers/S", &info)
	if info.StreamerID != "S" || info.Type != "Streamer" || !info.Streaming || len(info.Subscribers) != 1 || info.Subscribers[0].PlayerID != "1" {
		t.Fatalf("/api/streamers/S = %+v", info)
	}
	var players []string
	get("/api/players", &players)
	if len(players) != 1 || players[0] != "1" {
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
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no player address", Config{StreamerListen: "127.0.0.1:0"}, "PlayerListen is required"},
		{"bad streamer address", Config{PlayerListen: ":0", StreamerListen: "localhost"}, "StreamerListen \"localhost\" is not host:port"},
		{"negative max players", Config{PlayerListen: ":0", StreamerListen: ":0", MaxPlayers: -1}, "MaxPlayers must be 0 (unlimited) or positive"},
		{"peer options not an object", Config{PlayerListen: ":0", StreamerListen: ":0", PeerConnectionOptions: json.RawMessage(`[1]`)}, "PeerConnectionOptions must be a JSON object"},
		{"missing http root", Config{PlayerListen: ":0", StreamerListen: ":0", HTTPRoot: "/nonexistent/dir"}, "HTTPRoot"},
		{"negative limit", Config{PlayerListen: ":0", StreamerListen: ":0", Limits: Limits{MaxConnections: -1}}, "limits.MaxConnections must not be negative"},
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
