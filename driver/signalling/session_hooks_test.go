package signalling

import (
	"encoding/json"
	"testing"
)

// TestWarnPlayers: the session can warn connected players; streamers get
// no warning.
func TestWarnPlayers(t *testing.T) {
	s := startServer(t, Config{})
	st := newStreamer(t, s, "DefaultStreamer")
	a, b := newPlayer(t, s, "a"), newPlayer(t, s, "b")
	subscribe(t, a, st, "DefaultStreamer")

	if n := s.WarnPlayers("Session ends in 1m0s", 60); n != 2 {
		t.Fatalf("WarnPlayers reached %d players, want 2", n)
	}
	want := `{"type":"sessionWarning","message":"Session ends in 1m0s","secondsLeft":60}`
	a.expect(want)
	b.expect(want)
	st.roundTrip() // nothing queued for the streamer before this ping's pong
}

// TestStreamerHooks: a streamer connection gets its own peer options (TURN
// credentials in a session) under a key, and the session sees under that key
// what players advertise to it and when it leaves.
func TestStreamerHooks(t *testing.T) {
	type seen struct{ kind, key, value string }
	got := make(chan seen, 16)
	s := startServer(t, Config{Hooks: Hooks{
		StreamerPeerOptions: func(key string) json.RawMessage {
			return json.RawMessage(`{"iceServers":[{"urls":["turn:x"],"username":"` + key + `"}]}`)
		},
		PlayerSDP:       func(key, pid, sdp string) { got <- seen{"sdp", key + "/" + pid, sdp} },
		PlayerCandidate: func(key, pid, c string) { got <- seen{"candidate", key + "/" + pid, c} },
		StreamerLeft:    func(key string) { got <- seen{"left", key, ""} },
	}})
	st := dial(t, "streamer", streamerURL(s), nil)
	st.expect(wantIdentify)
	st.expect(`{"type":"config","peerConnectionOptions":{"iceServers":[{"urls":["turn:x"],"username":"streamer-1"}]},"protocolVersion":"1.3.0"}`)
	st.send(`{"type":"endpointId","id":"S"}`)
	st.expect(`{"type":"endpointIdConfirm","committedId":"S"}`)
	p := newPlayer(t, s, "p")
	pid := subscribe(t, p, st, "S")
	p.send(`{"type":"answer","sdp":"v=0 answer"}`)
	st.recv()
	p.send(`{"type":"iceCandidate","candidate":{"candidate":"candidate:1 1 udp 1 192.0.2.7 5000 typ relay","sdpMid":"0","sdpMLineIndex":0}}`)
	st.recv()
	for _, want := range []seen{{"sdp", "streamer-1/" + pid, "v=0 answer"}, {"candidate", "streamer-1/" + pid, "candidate:1 1 udp 1 192.0.2.7 5000 typ relay"}} {
		if g := <-got; g != want {
			t.Fatalf("hook saw %+v, want %+v (player %s)", g, want, pid)
		}
	}
	_ = st.ws.Close()
	if g := <-got; g != (seen{"left", "streamer-1", ""}) {
		t.Fatalf("hook saw %+v, want the streamer leaving", g)
	}
}

// PlayerLeft reports every player connection closing, also one that never
// subscribed: TURN revokes the credentials its config message carried.
func TestPlayerLeftForEveryPlayer(t *testing.T) {
	left := make(chan string, 4)
	minted := make(chan string, 4)
	s := startServer(t, Config{Hooks: Hooks{
		PlayerPeerOptions: func(pid string) json.RawMessage { minted <- pid; return nil },
		PlayerLeft:        func(pid string) { left <- pid },
	}})
	p := newPlayer(t, s, "never subscribes")
	pid := <-minted
	_ = p.ws.Close()
	if got := <-left; got != pid {
		t.Fatalf("PlayerLeft(%q), want the player's id %q", got, pid)
	}
}
