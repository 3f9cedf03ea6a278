package signalling

import (
	"context"
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

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling/sigtest"
)

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

// peer is sigtest's stand-in client under this package's short names.
type peer struct {
	*sigtest.Peer
	ws   *websocket.Conn
	name string
}

func wrap(p *sigtest.Peer) *peer { return &peer{Peer: p, ws: p.WS, name: p.Name} }

func dial(t testing.TB, name, url string, header http.Header) *peer {
	t.Helper()
	return wrap(sigtest.Dial(t, name, url, header))
}

func (p *peer) send(msg string)            { p.T.Helper(); p.Send(msg) }
func (p *peer) recv() string               { p.T.Helper(); return p.Recv() }
func (p *peer) expect(want string)         { p.T.Helper(); p.Expect(want) }
func (p *peer) expectClose() (int, string) { p.T.Helper(); return p.ExpectClose() }
func (p *peer) expectCloseWith(code int, reason string) {
	p.T.Helper()
	p.ExpectCloseWith(code, reason)
}
func (p *peer) roundTrip()   { p.T.Helper(); p.RoundTrip() }
func (p *peer) answerPings() { p.AnswerPings() }

const (
	wantIdentify = sigtest.WantIdentify
	wantConfig   = sigtest.WantConfig
)

// waitFor is how long a test waits for something that should happen at once.
const waitFor = sigtest.WaitFor

func newStreamer(t testing.TB, s *testServer, id string) *peer {
	t.Helper()
	return wrap(sigtest.NewStreamer(t, streamerURL(s), id))
}

func newPlayer(t testing.TB, s *testServer, name string) *peer {
	t.Helper()
	return wrap(sigtest.NewPlayer(t, playerURL(s), name))
}

func subscribe(t testing.TB, p, st *peer, streamerID string) string {
	t.Helper()
	return sigtest.Subscribe(t, p.Peer, st.Peer, streamerID)
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	sigtest.Eventually(t, what, cond)
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

// metricsText is what /metrics serves for s.
func metricsText(t testing.TB, s *testServer) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(s.Registry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}
