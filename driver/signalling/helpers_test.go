package signalling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// waitFor is how long a test waits for something that should happen at once.
const waitFor = 5 * time.Second

// testServer is a router with a bare player port: every request is a
// player WebSocket (the session's player port, with its page, auth and REST
// API, is driver/playerhttp's and tested there).
type testServer struct {
	*Server
	playerLn net.Listener
}

func (s *testServer) PlayerAddr() net.Addr { return s.playerLn.Addr() }

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	if cfg.StreamerListen == "" {
		cfg.StreamerListen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "signalling", Level: hclog.Warn, Output: io.Discard})
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ln, err := s.ListenPlayers("127.0.0.1:0")
	if err != nil {
		t.Fatalf("ListenPlayers: %v", err)
	}
	hs := NewHTTPServer(s.Limits(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !IsUpgrade(r) {
			writeText(w, http.StatusUpgradeRequired, "player WebSocket only\n")
			return
		}
		s.AcceptPlayer(w, r)
	}), cfg.Logger)
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = hs.Shutdown(ctx)
		_ = s.Shutdown(ctx)
	})
	return &testServer{Server: s, playerLn: ln}
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

// answerPings reads (and drops) everything p receives from now on, as a
// browser's WebSocket does, so the server's pings get their pongs.
func (p *peer) answerPings() {
	go func() {
		for {
			_ = p.ws.SetReadDeadline(time.Time{})
			if _, _, err := p.ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
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

func (p *peer) expectCloseWith(code int, reason string) {
	p.t.Helper()
	gotCode, gotReason := p.expectClose()
	if gotCode != code || gotReason != reason {
		p.t.Fatalf("%s: closed with %d %q, want %d %q", p.name, gotCode, gotReason, code, reason)
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

// eventLog records hook events for assertions.
type eventLog struct {
	mu     sync.Mutex
	events []Event
	ch     chan Event
}

func newEventLog() *eventLog { return &eventLog{ch: make(chan Event, 1024)} }

func (l *eventLog) hook(ev Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
	l.ch <- ev
}

func (l *eventLog) next(t testing.TB) Event {
	t.Helper()
	select {
	case ev := <-l.ch:
		return ev
	case <-time.After(waitFor):
		t.Fatal("no event reported")
		return Event{}
	}
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

// metricsText is what /metrics serves for s.
func metricsText(t testing.TB, s *testServer) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(s.Registry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}
