package playerhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling/sigtest"
)

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
func (p *peer) roundTrip()                 { p.T.Helper(); p.RoundTrip() }

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

func httpGet(t testing.TB, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	return sigtest.HTTPGet(t, url, header)
}

// metricsText is what /metrics serves.
func metricsText(t *testing.T, s *testServer) string {
	t.Helper()
	_, body := httpGet(t, httpURL(s, "/metrics"), nil)
	return body
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
