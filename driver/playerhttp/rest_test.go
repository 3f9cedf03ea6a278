package playerhttp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// sameShape reports where got differs from Wilbur's answer want: the same
// keys at every level (got may have more only where extra allows), the
// same JSON types, and the same values except under the keys in loose.
func sameShape(path string, want, got any, loose map[string]bool, extra map[string]bool) []string {
	var diffs []string
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want an object", path, got)}
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				diffs = append(diffs, fmt.Sprintf("%s.%s: missing", path, k))
				continue
			}
			if loose[k] {
				if reflect.TypeOf(wv) != reflect.TypeOf(gv) {
					diffs = append(diffs, fmt.Sprintf("%s.%s: %T, want %T", path, k, gv, wv))
				}
				continue
			}
			diffs = append(diffs, sameShape(path+"."+k, wv, gv, loose, extra)...)
		}
		for k := range g {
			if _, ok := w[k]; !ok && !extra[path] {
				diffs = append(diffs, fmt.Sprintf("%s.%s: not in Wilbur's answer", path, k))
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: %v, want %d elements", path, got, len(w))}
		}
		for i := range w {
			diffs = append(diffs, sameShape(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], loose, extra)...)
		}
	default:
		if !reflect.DeepEqual(want, got) {
			diffs = append(diffs, fmt.Sprintf("%s: %v, want %v", path, got, want))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// TestRESTShapesMatchWilbur compares every REST route's answer, for one
// streamer DefaultStreamer with one subscribed player, with Wilbur's
// (testdata/wilbur): the same keys, types and ids, the same 404 bodies.
func TestRESTShapesMatchWilbur(t *testing.T) {
	s := startServer(t, Config{})
	st := newStreamer(t, s, "DefaultStreamer")
	p := newPlayer(t, s, "player")
	if pid := subscribe(t, p, st, "DefaultStreamer"); pid != "1" {
		t.Fatalf("player id %q, want 1", pid)
	}
	loose := map[string]bool{"uptime": true, "version": true, "remoteAddress": true}
	for _, tc := range []struct {
		route, file string
		code        int
		extra       map[string]bool // objects where this server adds keys of its own
	}{
		{"/api/status", "status.json", http.StatusOK, map[string]bool{"": true}},
		{"/api/streamers", "streamers.json", http.StatusOK, nil},
		{"/api/streamers/DefaultStreamer", "streamer.json", http.StatusOK, nil},
		{"/api/players", "players.json", http.StatusOK, nil},
		{"/api/players/1", "player.json", http.StatusOK, nil},
		{"/api/streamers/nobody", "streamer-404.json", http.StatusNotFound, nil},
		{"/api/players/999", "player-404.json", http.StatusNotFound, nil},
	} {
		t.Run(tc.route, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "wilbur", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var want, got any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatalf("%s: %v", tc.file, err)
			}
			resp, body := httpGet(t, httpURL(s, tc.route), nil)
			if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s, want %d application/json", resp.StatusCode, resp.Header.Get("Content-Type"), tc.code)
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("not JSON: %v: %s", err, body)
			}
			if diffs := sameShape("", want, got, loose, tc.extra); len(diffs) > 0 {
				t.Fatalf("differs from Wilbur's answer:\n  %s\ngot %s", strings.Join(diffs, "\n  "), body)
			}
		})
	}
	// Addresses carry no port, as Wilbur's.
	var info apiPlayerInfo
	_, body := httpGet(t, httpURL(s, "/api/players/1"), nil)
	_ = json.Unmarshal([]byte(body), &info)
	if info.RemoteAddress != "127.0.0.1" {
		t.Fatalf("remoteAddress %q, want 127.0.0.1", info.RemoteAddress)
	}
	// A player that has not subscribed has no subscribedTo, as in Wilbur.
	newPlayer(t, s, "idle")
	_, body = httpGet(t, httpURL(s, "/api/players/2"), nil)
	if strings.Contains(body, "subscribedTo") {
		t.Fatalf("an unsubscribed player's answer names a streamer: %s", body)
	}
}

// TestRESTConfigRedacted: /api/config has Wilbur's two parts but no secret:
// TURN credentials in the peer options read <redacted>, the player token
// and the streamer port are not there.
func TestRESTConfigRedacted(t *testing.T) {
	const token = "player-token-0123456789"
	s := startServerWith(t, Config{PlayerToken: token}, signalling.Config{
		PeerConnectionOptions: json.RawMessage(`{"iceServers":[{"urls":["turn:192.0.2.1:3478"],"username":"TURNUSER","credential":"TURNSECRET"}]}`),
	})
	resp, body := httpGet(t, httpURL(s, "/api/config"), http.Header{"Authorization": {"Bearer " + token}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/config: %d %s", resp.StatusCode, body)
	}
	for _, secret := range []string{"TURNSECRET", "TURNUSER", token, s.StreamerAddr().String()} {
		if strings.Contains(body, secret) {
			t.Fatalf("/api/config shows %q: %s", secret, body)
		}
	}
	var cfg struct {
		Config         map[string]any `json:"config"`
		ProtocolConfig struct {
			ProtocolVersion string `json:"protocolVersion"`
			PeerOptions     struct {
				ICEServers []map[string]any `json:"iceServers"`
			} `json:"peerConnectionOptions"`
		} `json:"protocolConfig"`
	}
	if err := json.Unmarshal([]byte(body), &cfg); err != nil {
		t.Fatal(err)
	}
	ice := cfg.ProtocolConfig.PeerOptions.ICEServers
	if cfg.ProtocolConfig.ProtocolVersion != signalling.ProtocolVersion || len(ice) != 1 ||
		ice[0]["credential"] != "<redacted>" || ice[0]["username"] != "<redacted>" || cfg.Config["playerPort"] == nil {
		t.Fatalf("/api/config = %s", body)
	}
	// Without the token, nothing.
	if resp, _ := httpGet(t, httpURL(s, "/api/config"), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/api/config without the token: %d, want 401", resp.StatusCode)
	}
}

// TestAPIDefinitionMatchesRoutes: /api/api-definition is an OpenAPI 3
// document whose paths are exactly the REST routes this server serves.
func TestAPIDefinitionMatchesRoutes(t *testing.T) {
	s := startServer(t, Config{})
	resp, body := httpGet(t, httpURL(s, "/api/api-definition"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/api-definition: %d", resp.StatusCode)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document (%v): %.200s", err, body)
	}
	var got []string
	for p, ops := range doc.Paths {
		if _, ok := ops["get"]; !ok {
			t.Errorf("%s has no get operation", p)
		}
		got = append(got, p)
	}
	want := []string{RouteStatus, RouteStreamers, RouteStreamer, RoutePlayers, RoutePlayer, RouteConfig, RouteAPIDefinition}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("documented paths %v, routes %v", got, want)
	}
	for _, route := range want {
		path := strings.NewReplacer("{id}", "DefaultStreamer").Replace(route)
		if resp, _ := httpGet(t, httpURL(s, path), nil); resp.StatusCode == http.StatusNotFound && !strings.Contains(route, "{id}") {
			t.Errorf("%s is documented but answers 404", route)
		}
	}
}

// TestHTTPRootHomepage: a directory laid out as Epic's frontend build lays
// out its output (player.html, no index.html) loads at / and at
// /?StreamerId=..., as with Wilbur's --homepage default; an index.html wins
// when there is one; a configured homepage is served at /; a homepage that
// is not in http_root, or without http_root, is refused at start.
func TestHTTPRootHomepage(t *testing.T) {
	epic := t.TempDir()
	must(t, writeFile(epic+"/player.html", "<html>epic player</html>"))
	must(t, writeFile(epic+"/player.js", "console.log(1)"))
	s := startServer(t, Config{HTTPRoot: epic})
	for _, path := range []string{"/", "/?StreamerId=DefaultStreamer"} {
		if resp, body := httpGet(t, httpURL(s, path), nil); resp.StatusCode != http.StatusOK || body != "<html>epic player</html>" {
			t.Fatalf("GET %s: %d %q, want the build's player.html", path, resp.StatusCode, body)
		}
	}
	if resp, body := httpGet(t, httpURL(s, "/player.js"), nil); resp.StatusCode != http.StatusOK || body != "console.log(1)" {
		t.Fatalf("GET /player.js: %d %q", resp.StatusCode, body)
	}

	both := t.TempDir()
	must(t, writeFile(both+"/player.html", "<html>player</html>"))
	must(t, writeFile(both+"/index.html", "<html>index</html>"))
	must(t, writeFile(both+"/uiless.html", "<html>uiless</html>"))
	if _, body := httpGet(t, httpURL(startServer(t, Config{HTTPRoot: both}), "/"), nil); body != "<html>index</html>" {
		t.Fatalf("with index.html, / served %q", body)
	}
	if _, body := httpGet(t, httpURL(startServer(t, Config{HTTPRoot: both, Homepage: "uiless.html"}), "/"), nil); body != "<html>uiless</html>" {
		t.Fatalf("with homepage = uiless.html, / served %q", body)
	}

	router := startServer(t, Config{}).router
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"homepage not in http_root", Config{HTTPRoot: both, Homepage: "missing.html"}, `homepage "missing.html" is not a file in http_root`},
		{"homepage without http_root", Config{Homepage: "player.html"}, "needs HTTPRoot"},
		{"homepage outside", Config{HTTPRoot: both, Homepage: "../etc/passwd"}, "must be a file name inside HTTPRoot"},
		{"homepage a dotfile", Config{HTTPRoot: both, Homepage: ".env"}, "must be a file name inside HTTPRoot"},
	} {
		tc.cfg.Router, tc.cfg.Listen = router, "127.0.0.1:0"
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
