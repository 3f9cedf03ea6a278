package playerhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// waitFor is how long a test waits for something that should happen at once.
const waitFor = 5 * time.Second

// testServer is a session's signalling as the session composes it: a
// router and its player port.
type testServer struct {
	*Server
	router *signalling.Server
}

func (s *testServer) PlayerAddr() net.Addr           { return s.Addr() }
func (s *testServer) StreamerAddr() net.Addr         { return s.router.StreamerAddr() }
func (s *testServer) Status() signalling.Status      { return s.router.Status() }
func (s *testServer) Registry() *prometheus.Registry { return s.router.Registry() }

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	return startServerWith(t, cfg, signalling.Config{})
}

// startServerWith starts a router configured by rc and a player port
// configured by cfg in front of it.
func startServerWith(t testing.TB, cfg Config, rc signalling.Config) *testServer {
	t.Helper()
	if rc.StreamerListen == "" {
		rc.StreamerListen = "127.0.0.1:0"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "signalling", Level: hclog.Warn, Output: io.Discard})
	if rc.Logger == nil {
		rc.Logger = logger
	}
	if cfg.Logger == nil {
		cfg.Logger = logger
	}
	sig, err := Start(rc, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = sig.Shutdown(ctx)
	})
	return &testServer{Server: sig.Web, router: sig.Router}
}

func httpURL(s *testServer, path string) string {
	return "http://" + s.PlayerAddr().String() + path
}

func playerURL(s *testServer) string   { return "ws://" + s.PlayerAddr().String() + "/" }
func streamerURL(s *testServer) string { return "ws://" + s.StreamerAddr().String() + "/" }

// peer is a test WebSocket client: a stand-in for Unreal, a browser or an SFU.
type peer struct {
	t    testing.TB
	name string
	ws   *websocket.Conn
}

func dial(t testing.TB, name, url string, header http.Header) *peer {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("%s: dial %s: %v %s", name, url, err, status)
	}
	p := &peer{t: t, name: name, ws: ws}
	t.Cleanup(func() { _ = ws.Close() })
	return p
}

func (p *peer) send(msg string) {
	p.t.Helper()
	if err := p.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		p.t.Fatalf("%s: send %s: %v", p.name, msg, err)
	}
}

// recv returns the next text message, failing the test on close or timeout.
func (p *peer) recv() string {
	p.t.Helper()
	_ = p.ws.SetReadDeadline(time.Now().Add(waitFor))
	_, data, err := p.ws.ReadMessage()
	if err != nil {
		p.t.Fatalf("%s: waiting for a message: %v", p.name, err)
	}
	return string(data)
}

// expect asserts the next message is exactly want (byte for byte).
func (p *peer) expect(want string) {
	p.t.Helper()
	if got := p.recv(); got != want {
		p.t.Fatalf("%s: got message\n  %s\nwant\n  %s", p.name, got, want)
	}
}

// expectClose reads until the server closes and returns the close frame.
func (p *peer) expectClose() (int, string) {
	p.t.Helper()
	_ = p.ws.SetReadDeadline(time.Now().Add(waitFor))
	for {
		_, data, err := p.ws.ReadMessage()
		if err == nil {
			p.t.Logf("%s: (before close) %s", p.name, data)
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		p.t.Fatalf("%s: wanted a close frame, got %v", p.name, err)
	}
}

// roundTrip proves the connection is alive and served: a ping gets its pong.
func (p *peer) roundTrip() {
	p.t.Helper()
	p.send(`{"type":"ping","time":42}`)
	p.expect(`{"type":"pong","time":42}`)
}

const (
	wantIdentify = `{"type":"identify"}`
	wantConfig   = `{"type":"config","peerConnectionOptions":{},"protocolVersion":"1.3.0"}`
)

// newStreamer connects a stand-in for Unreal's Pixel Streaming plugin and
// identifies it as id; it returns the committed id's peer.
func newStreamer(t testing.TB, s *testServer, id string) *peer {
	t.Helper()
	st := dial(t, "streamer "+id, streamerURL(s), nil)
	st.expect(wantIdentify)
	st.expect(wantConfig)
	st.send(fmt.Sprintf(`{"type":"endpointId","id":%q,"protocolVersion":"1.3.0"}`, id))
	st.expect(fmt.Sprintf(`{"type":"endpointIdConfirm","committedId":%q}`, id))
	return st
}

// newPlayer connects a stand-in for Epic's frontend and reads its config.
func newPlayer(t testing.TB, s *testServer, name string) *peer {
	t.Helper()
	p := dial(t, name, playerURL(s), nil)
	p.expect(wantConfig)
	return p
}

// subscribe subscribes p and returns the playerId the streamer was told.
func subscribe(t testing.TB, p, st *peer, streamerID string) string {
	t.Helper()
	p.send(fmt.Sprintf(`{"type":"subscribe","streamerId":%q}`, streamerID))
	var msg struct {
		Type     string `json:"type"`
		PlayerID string `json:"playerId"`
	}
	raw := st.recv()
	if err := json.Unmarshal([]byte(raw), &msg); err != nil || msg.Type != "playerConnected" {
		t.Fatalf("%s: wanted playerConnected, got %s", st.name, raw)
	}
	want := fmt.Sprintf(`{"type":"playerConnected","playerId":%q,"dataChannel":true,"sfu":false}`, msg.PlayerID)
	if raw != want {
		t.Fatalf("%s: playerConnected is\n  %s\nwant\n  %s", st.name, raw, want)
	}
	return msg.PlayerID
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func httpGet(t testing.TB, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// metricsText is what /metrics serves.
func metricsText(t *testing.T, s *testServer) string {
	t.Helper()
	_, body := httpGet(t, httpURL(s, "/metrics"), nil)
	return body
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
