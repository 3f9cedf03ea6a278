package signalling

import (
	"fmt"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

// identifyAs connects a streamer and sends endpointId id; it returns the
// peer and the id the server committed.
func identifyAs(t *testing.T, s *testServer, name, id string) (*peer, string) {
	t.Helper()
	st := dial(t, name, streamerURL(s), nil)
	st.expect(wantIdentify)
	st.expect(wantConfig)
	st.send(fmt.Sprintf(`{"type":"endpointId","id":%q}`, id))
	var committed string
	if _, err := fmt.Sscanf(st.recv(), `{"type":"endpointIdConfirm","committedId":%q}`, &committed); err != nil {
		t.Fatalf("%s: no endpointIdConfirm: %v", name, err)
	}
	return st, committed
}

// connCount is how many connections the server still holds.
func connCount(s *testServer) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.conns)
}

// TestStreamerReconnectReplacesStale: the session's streamer comes back on
// a new socket while its old one is still open (a PixelStreaming2 streamer
// reconnects after 2 s; the ping sweep needs up to a minute to notice the
// old one). The new connection keeps the id, the old one is closed, its
// players are told and reconnect to the new one, and readiness never drops.
func TestStreamerReconnectReplacesStale(t *testing.T) {
	events := newEventLog()
	s := startServer(t, Config{StreamerID: "DefaultStreamer", Hooks: Hooks{Event: events.hook}})
	old := newStreamer(t, s, "DefaultStreamer")
	p := newPlayer(t, s, "player")
	subscribe(t, p, old, "DefaultStreamer")
	for _, want := range []EventKind{StreamerIdentified, PlayerConnected} {
		if ev := events.next(t); ev.Kind != want {
			t.Fatalf("event %v, want %v", ev.Kind, want)
		}
	}

	fresh, committed := identifyAs(t, s, "reconnected streamer", "DefaultStreamer")
	if committed != "DefaultStreamer" {
		t.Fatalf("the reconnecting streamer was committed as %q, want DefaultStreamer", committed)
	}
	old.expectCloseWith(websocket.CloseGoingAway, "replaced by a new connection of streamer DefaultStreamer")
	p.expectCloseWith(websocket.CloseNormalClosure, "streamer DefaultStreamer reconnected")
	if ev := events.next(t); ev.Kind != PlayerDisconnected {
		t.Fatalf("event %v, want the old streamer's player disconnected", ev.Kind)
	}
	if ev := events.next(t); ev.Kind != StreamerReconnected || ev.StreamerID != "DefaultStreamer" || ev.Streamers != 1 {
		t.Fatalf("event %+v, want DefaultStreamer reconnected with 1 streamer", ev)
	}
	if !s.Ready() {
		t.Fatal("not ready after the streamer reconnected")
	}
	// The stale socket's own teardown must not unlist the streamer.
	eventually(t, "the stale connection and its player to be gone", func() bool { return connCount(s) == 1 })
	if st := s.Status(); len(st.Streamers) != 1 || st.Streamers[0].ID != "DefaultStreamer" || !s.Ready() {
		t.Fatalf("after the stale socket closed: %+v", st)
	}

	// The player reconnects, as Epic's frontend does, and reaches the new connection.
	again := newPlayer(t, s, "player again")
	pid := subscribe(t, again, fresh, "DefaultStreamer")
	if ev := events.next(t); ev.Kind != PlayerConnected {
		t.Fatalf("event %v after the reconnect, want player connected (no streamer disconnected)", ev.Kind)
	}
	fresh.send(fmt.Sprintf(`{"type":"offer","playerId":%q,"sdp":"v=0"}`, pid))
	again.expect(fmt.Sprintf(`{"type":"offer","sdp":"v=0","playerId":%q}`, pid))
}

// TestStreamerReconnectRacesStaleClose runs the reconnect against the stale
// socket closing at the same moment, many times: whichever comes first, the
// id ends up held by the new connection alone, under its own name.
func TestStreamerReconnectRacesStaleClose(t *testing.T) {
	s := startServer(t, Config{StreamerID: "DefaultStreamer"})
	old := newStreamer(t, s, "DefaultStreamer")
	for i := 0; i < 50; i++ {
		fresh := dial(t, "streamer", streamerURL(s), nil)
		fresh.expect(wantIdentify)
		fresh.expect(wantConfig)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = old.ws.Close() }()
		go func() {
			defer wg.Done()
			_ = fresh.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"endpointId","id":"DefaultStreamer"}`))
		}()
		wg.Wait()
		fresh.expect(`{"type":"endpointIdConfirm","committedId":"DefaultStreamer"}`)
		eventually(t, "only the new streamer left", func() bool { return connCount(s) == 1 })
		if st := s.Status(); len(st.Streamers) != 1 || st.Streamers[0].ID != "DefaultStreamer" {
			t.Fatalf("round %d: streamers %+v, want the new DefaultStreamer alone", i, st.Streamers)
		}
		old = fresh
	}
}

// TestStreamerIDClashKeepsEpicRule: a second streamer with an id that is not
// the session's own streamer id, or with the session's id while the first
// one is an SFU, is listed under a suffixed id as Epic's server does.
func TestStreamerIDClashKeepsEpicRule(t *testing.T) {
	s := startServer(t, Config{StreamerID: "Game"})
	newStreamer(t, s, "Other")
	if _, got := identifyAs(t, s, "second", "Other"); got != "Other1" {
		t.Fatalf("a second Other was committed as %q, want Other1", got)
	}
	plain := startServer(t, Config{}) // no session streamer id: Epic's rule for every id
	newStreamer(t, plain, "DefaultStreamer")
	if _, got := identifyAs(t, plain, "second", "DefaultStreamer"); got != "DefaultStreamer1" {
		t.Fatalf("without a session streamer id, a second DefaultStreamer was committed as %q, want DefaultStreamer1", got)
	}
}

// TestSameStreamerReturns is the decision itself: only a connection that
// presented the session's streamer credential, naming the session's
// streamer id, replaces a live streamer connection.
func TestSameStreamerReturns(t *testing.T) {
	s := &Server{cfg: Config{StreamerID: "Game"}}
	live := func(r role) *conn { return &conn{role: r, listed: true} }
	closing := live(roleStreamer)
	closing.killed.Store(true)
	for _, tc := range []struct {
		name   string
		id     string
		prev   *conn
		keyed  bool
		should bool
	}{
		{"own id, key, live streamer", "Game", live(roleStreamer), true, true},
		{"no key", "Game", live(roleStreamer), false, false},
		{"another id", "Other", live(roleStreamer), true, false},
		{"the holder is an SFU", "Game", live(roleSFU), true, false},
		{"the holder is closing, not yet torn down", "Game", closing, true, true},
		{"the holder is not listed", "Game", &conn{role: roleStreamer}, true, false},
	} {
		if got := s.sameStreamerReturns(tc.id, tc.prev, tc.keyed); got != tc.should {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.should)
		}
	}
}
