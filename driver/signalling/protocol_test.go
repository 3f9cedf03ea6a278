package signalling

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestStreamerIdentification covers the streamer handshake: identify and
// config on connect, endpointIdConfirm, a taken id getting a suffix, and
// readiness following identified streamers.
func TestStreamerIdentification(t *testing.T) {
	s := startServer(t, Config{})
	if s.Ready() {
		t.Fatal("Ready with no streamer")
	}
	unidentified := dial(t, "unidentified", streamerURL(s), nil)
	unidentified.expect(wantIdentify)
	unidentified.expect(wantConfig)
	player := newPlayer(t, s, "player")
	player.send(`{"type":"listStreamers"}`)
	player.expect(`{"type":"streamerList","ids":[]}`)

	newStreamer(t, s, "DefaultStreamer")
	if !s.Ready() {
		t.Fatal("not Ready with a streamer")
	}
	// The same id again is committed with a suffix.
	unidentified.send(`{"type":"endpointId","id":"DefaultStreamer"}`)
	unidentified.expect(`{"type":"endpointIdConfirm","committedId":"DefaultStreamer1"}`)
	player.send(`{"type":"listStreamers"}`)
	player.expect(`{"type":"streamerList","ids":["DefaultStreamer","DefaultStreamer1"]}`)
}

// TestPlayerSession walks one player through a whole session against a
// stand-in Unreal streamer and checks every message byte for byte.
func TestPlayerSession(t *testing.T) {
	s := startServer(t, Config{})
	st := newStreamer(t, s, "DefaultStreamer")
	p := newPlayer(t, s, "player")

	p.send(`{"type":"listStreamers"}`)
	p.expect(`{"type":"streamerList","ids":["DefaultStreamer"]}`)
	pid := subscribe(t, p, st, "DefaultStreamer")
	if pid != "1" {
		t.Fatalf("first player id %q, want 1", pid)
	}

	steps := []struct {
		name      string
		from, to  *peer
		send      string
		delivered string
	}{
		{"offer reaches the player with its playerId", st, p,
			`{"type":"offer","playerId":"1","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n","multiplex":true,"sfu":false}`,
			`{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n","multiplex":true,"sfu":false,"playerId":"1"}`},
		{"answer gains the player's id", p, st,
			`{"type":"answer","sdp":"v=0\r\n","minBitrateBps":0,"maxBitrateBps":100000000}`,
			`{"type":"answer","sdp":"v=0\r\n","minBitrateBps":0,"maxBitrateBps":100000000,"playerId":"1"}`},
		{"streamer ICE keeps sdpMLineIndex 0", st, p,
			`{"type":"iceCandidate","candidate":{"candidate":"candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"},"playerId":"1"}`,
			`{"type":"iceCandidate","candidate":{"candidate":"candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"},"playerId":"1"}`},
		{"player ICE forwarded as received", p, st,
			`{"type":"iceCandidate","candidate":{"candidate":"candidate:2 1 udp 1 192.0.2.1 9 typ srflx","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}}`,
			`{"type":"iceCandidate","candidate":{"candidate":"candidate:2 1 udp 1 192.0.2.1 9 typ srflx","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null},"playerId":"1"}`},
		{"layerPreference playerId is overwritten", p, st,
			`{"type":"layerPreference","spatialLayer":1,"temporalLayer":2,"playerId":"999"}`,
			`{"type":"layerPreference","spatialLayer":1,"temporalLayer":2,"playerId":"1"}`},
		{"dataChannelRequest", p, st, `{"type":"dataChannelRequest"}`, `{"type":"dataChannelRequest","playerId":"1"}`},
		{"peerDataChannelsReady", p, st, `{"type":"peerDataChannelsReady"}`, `{"type":"peerDataChannelsReady","playerId":"1"}`},
		{"player ping: milliseconds echoed verbatim", p, p, `{"type":"ping","time":1732461234567}`, `{"type":"pong","time":1732461234567}`},
		{"streamer ping: fractional seconds echoed verbatim", st, st, `{"type":"ping","time":1732461234.5670001}`, `{"type":"pong","time":1732461234.5670001}`},
		{"huge time value is not truncated", p, p, `{"type":"ping","time":123456789012345678901234567890}`, `{"type":"pong","time":123456789012345678901234567890}`},
		{"unsubscribe tells the streamer", p, st, `{"type":"unsubscribe"}`, `{"type":"playerDisconnected","playerId":"1"}`},
	}
	for _, step := range steps {
		step.from.send(step.send)
		got := step.to.recv()
		if got != step.delivered {
			t.Fatalf("%s:\n got  %s\n want %s", step.name, got, step.delivered)
		}
	}
	// Subscribing again works after unsubscribe; closing the socket tells the streamer.
	subscribe(t, p, st, "DefaultStreamer")
	_ = p.ws.Close()
	st.expect(`{"type":"playerDisconnected","playerId":"1"}`)
}

// TestTwoStreamers checks routing with several streamers: each streamer
// reaches only its own players.
func TestTwoStreamers(t *testing.T) {
	s := startServer(t, Config{})
	a := newStreamer(t, s, "A")
	b := newStreamer(t, s, "B")
	pa := newPlayer(t, s, "player of A")
	pb := newPlayer(t, s, "player of B")
	idA := subscribe(t, pa, a, "A")
	idB := subscribe(t, pb, b, "B")

	// A addressing B's player is dropped; A addressing its own is delivered.
	a.send(fmt.Sprintf(`{"type":"offer","playerId":%q,"sdp":"from A to B's player"}`, idB))
	a.send(fmt.Sprintf(`{"type":"offer","playerId":%q,"sdp":"for A's player"}`, idA))
	pa.expect(fmt.Sprintf(`{"type":"offer","sdp":"for A's player","playerId":%q}`, idA))
	b.send(fmt.Sprintf(`{"type":"offer","playerId":%q,"sdp":"for B's player"}`, idB))
	pb.expect(fmt.Sprintf(`{"type":"offer","sdp":"for B's player","playerId":%q}`, idB))

	pa.send(`{"type":"answer","sdp":"a"}`)
	pb.send(`{"type":"answer","sdp":"b"}`)
	a.expect(fmt.Sprintf(`{"type":"answer","sdp":"a","playerId":%q}`, idA))
	b.expect(fmt.Sprintf(`{"type":"answer","sdp":"b","playerId":%q}`, idB))

	// Switching streamers: the old one hears playerDisconnected, the new one playerConnected.
	pa.send(`{"type":"subscribe","streamerId":"B"}`)
	a.expect(fmt.Sprintf(`{"type":"playerDisconnected","playerId":%q}`, idA))
	b.expect(fmt.Sprintf(`{"type":"playerConnected","playerId":%q,"dataChannel":true,"sfu":false}`, idA))

	st := s.Status()
	if len(st.Streamers) != 2 || st.Streamers[0].ID != "A" || len(st.Streamers[0].Players) != 0 ||
		st.Streamers[1].ID != "B" || len(st.Streamers[1].Players) != 2 {
		t.Fatalf("Status after the switch: %+v", st)
	}
}

// TestSubscribeFailures covers subscribeFailed for an unknown streamer and a
// full one, with Epic's wording.
func TestSubscribeFailures(t *testing.T) {
	s := startServer(t, Config{MaxPlayers: 1, Limits: Limits{FullProbe: 200 * time.Millisecond}})
	st := newStreamer(t, s, "S")
	first := newPlayer(t, s, "first")
	subscribe(t, first, st, "S")
	first.answerPings() // a live browser: it answers the server's ping

	second := newPlayer(t, s, "second")
	second.send(`{"type":"subscribe","streamerId":"nobody"}`)
	second.expect(`{"type":"subscribeFailed","message":"Streamer nobody does not exist."}`)
	second.send(`{"type":"subscribe","streamerId":"S"}`)
	second.expect(`{"type":"subscribeFailed","message":"Streamer S is full. Max players = 1."}`)

	// When the first leaves, the seat is free.
	_ = first.ws.Close()
	st.expect(`{"type":"playerDisconnected","playerId":"1"}`)
	subscribe(t, second, st, "S")
}

// TestFullStreamerDropsSilentPlayer: a player reconnecting after a network
// blip finds its streamer full of its own dead connection; the server pings
// the subscribers, drops the one that does not answer and lets the new
// connection in.
func TestFullStreamerDropsSilentPlayer(t *testing.T) {
	s := startServer(t, Config{MaxPlayers: 1, Limits: Limits{FullProbe: 200 * time.Millisecond}})
	st := newStreamer(t, s, "S")
	dead := newPlayer(t, s, "dead") // never reads again, so never answers a ping
	deadID := subscribe(t, dead, st, "S")

	back := newPlayer(t, s, "back")
	back.send(`{"type":"subscribe","streamerId":"S"}`)
	st.expect(fmt.Sprintf(`{"type":"playerDisconnected","playerId":%q}`, deadID))
	var pc map[string]any
	if err := json.Unmarshal([]byte(st.recv()), &pc); err != nil || pc["type"] != "playerConnected" || pc["playerId"] == deadID {
		t.Fatalf("streamer got %v (%v), want playerConnected for the new connection", pc, err)
	}
}

// TestDisconnectPlayer: the streamer kicks a player; the player sees close
// code 1011 with the streamer's reason, the streamer then playerDisconnected.
func TestDisconnectPlayer(t *testing.T) {
	s := startServer(t, Config{})
	st := newStreamer(t, s, "S")
	p := newPlayer(t, s, "kicked")
	bystander := newPlayer(t, s, "bystander")
	pid := subscribe(t, p, st, "S")
	subscribe(t, bystander, st, "S")

	st.send(fmt.Sprintf(`{"type":"disconnectPlayer","playerId":%q,"reason":"kicked by the game"}`, pid))
	p.expectCloseWith(websocket.CloseInternalServerErr, "kicked by the game")
	st.expect(fmt.Sprintf(`{"type":"playerDisconnected","playerId":%q}`, pid))
	bystander.roundTrip()
}

// TestStreamerLeaves: players of a streamer that goes away are closed (code
// 1000, so Epic's frontend reconnects), and readiness drops.
func TestStreamerLeaves(t *testing.T) {
	events := newEventLog()
	s := startServer(t, Config{Hooks: Hooks{Event: events.hook}})
	st := newStreamer(t, s, "S")
	if ev := events.next(t); ev.Kind != StreamerIdentified || ev.StreamerID != "S" || ev.Streamers != 1 {
		t.Fatalf("first event %+v", ev)
	}
	p1 := newPlayer(t, s, "p1")
	p2 := newPlayer(t, s, "p2")
	subscribe(t, p1, st, "S")
	subscribe(t, p2, st, "S")
	for i := 0; i < 2; i++ {
		if ev := events.next(t); ev.Kind != PlayerConnected || ev.StreamerID != "S" {
			t.Fatalf("event %+v, want PlayerConnected", ev)
		}
	}
	_ = st.ws.Close()
	p1.expectCloseWith(websocket.CloseNormalClosure, "streamer S disconnected")
	p2.expectCloseWith(websocket.CloseNormalClosure, "streamer S disconnected")
	var kinds []EventKind
	for i := 0; i < 3; i++ {
		kinds = append(kinds, events.next(t).Kind)
	}
	if kinds[0] != PlayerDisconnected || kinds[1] != PlayerDisconnected || kinds[2] != StreamerDisconnected {
		t.Fatalf("events after the streamer left: %v", kinds)
	}
	eventually(t, "Ready to report no streamer", func() bool { return !s.Ready() })
}

// TestLegacyPlayerSendsFirst: a player that sends a streamer-bound message
// without subscribing is subscribed to the first streamer; with no streamer
// it is closed.
func TestLegacyPlayerSendsFirst(t *testing.T) {
	s := startServer(t, Config{})
	lonely := newPlayer(t, s, "no streamer yet")
	lonely.send(`{"type":"offer","sdp":"v=0"}`)
	lonely.expectCloseWith(websocket.ClosePolicyViolation, "offer sent before subscribe and there is no streamer")

	first := newStreamer(t, s, "First")
	newStreamer(t, s, "Second")
	p := newPlayer(t, s, "legacy")
	p.send(`{"type":"offer","sdp":"v=0"}`)
	first.expect(`{"type":"playerConnected","playerId":"2","dataChannel":true,"sfu":false}`)
	first.expect(`{"type":"offer","sdp":"v=0","playerId":"2"}`)
	first.send(`{"type":"answer","playerId":"2","sdp":"v=0 answer"}`)
	p.expect(`{"type":"answer","sdp":"v=0 answer","playerId":"2"}`)
}

// TestHooks: per-player peer options reach that player's config, and the
// streamer's SDP and ICE lines are shown to the TURN policy hooks.
func TestHooks(t *testing.T) {
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	var sdps, cands []string
	s := startServer(t, Config{
		PeerConnectionOptions: json.RawMessage(`{ "iceServers": [] }`),
		Hooks: Hooks{
			PlayerPeerOptions: func(pid string) json.RawMessage {
				if pid == "1" {
					return json.RawMessage(`{"iceServers":[{"urls":["turn:192.0.2.1:3478"],"username":"1700000000:1","credential":"c2VjcmV0"}]}`)
				}
				return nil
			},
			StreamerSDP: func(pid, sdp string) {
				<-mu
				sdps = append(sdps, pid+"|"+sdp)
				mu <- struct{}{}
			},
			StreamerCandidate: func(pid, c string) {
				<-mu
				cands = append(cands, pid+"|"+c)
				mu <- struct{}{}
			},
		},
	})
	st := dial(t, "streamer", streamerURL(s), nil)
	st.expect(wantIdentify)
	st.expect(`{"type":"config","peerConnectionOptions":{"iceServers":[]},"protocolVersion":"1.3.0"}`)
	st.send(`{"type":"endpointId","id":"S"}`)
	st.expect(`{"type":"endpointIdConfirm","committedId":"S"}`)

	p1 := dial(t, "p1", playerURL(s), nil)
	p1.expect(`{"type":"config","peerConnectionOptions":{"iceServers":[{"urls":["turn:192.0.2.1:3478"],"username":"1700000000:1","credential":"c2VjcmV0"}]},"protocolVersion":"1.3.0"}`)
	p2 := dial(t, "p2", playerURL(s), nil)
	p2.expect(`{"type":"config","peerConnectionOptions":{"iceServers":[]},"protocolVersion":"1.3.0"}`)

	subscribe(t, p1, st, "S")
	st.send(`{"type":"offer","playerId":"1","sdp":"v=0 offer"}`)
	p1.recv()
	st.send(`{"type":"iceCandidate","playerId":"1","candidate":{"candidate":"candidate:1 1 udp 1 198.51.100.7 4000 typ host","sdpMid":"0","sdpMLineIndex":0}}`)
	p1.recv()
	<-mu
	defer func() { mu <- struct{}{} }()
	if len(sdps) != 1 || sdps[0] != "1|v=0 offer" {
		t.Fatalf("StreamerSDP saw %q", sdps)
	}
	if len(cands) != 1 || cands[0] != "1|candidate:1 1 udp 1 198.51.100.7 4000 typ host" {
		t.Fatalf("StreamerCandidate saw %q", cands)
	}
}

// TestSFU drives the SFU endpoint as Epic's SFU does: it identifies, starts
// streaming, subscribes to the Unreal streamer, and relays to its own players.
func TestSFU(t *testing.T) {
	s := startServer(t, Config{SFUListen: "127.0.0.1:0"})
	st := newStreamer(t, s, "Unreal")
	sfu := dial(t, "sfu", "ws://"+s.SFUAddr().String()+"/", nil)
	sfu.expect(wantIdentify)
	sfu.expect(wantConfig)
	sfu.send(`{"type":"endpointId","id":"SFU"}`)
	sfu.expect(`{"type":"endpointIdConfirm","committedId":"SFU"}`)
	sfu.send(`{"type":"listStreamers"}`)
	sfu.expect(`{"type":"streamerList","ids":["Unreal","SFU"]}`)

	// The SFU subscribes upstream like a player; Unreal learns it is an SFU.
	sfu.send(`{"type":"subscribe","streamerId":"Unreal"}`)
	st.expect(`{"type":"playerConnected","playerId":"1","dataChannel":true,"sfu":true,"sendOffer":true}`)
	st.send(`{"type":"offer","playerId":"1","sdp":"unreal offer"}`)
	sfu.expect(`{"type":"offer","sdp":"unreal offer","playerId":"1"}`)
	sfu.send(`{"type":"answer","sdp":"sfu answer"}`)
	st.expect(`{"type":"answer","sdp":"sfu answer","playerId":"1"}`)

	// A player subscribes to the SFU and gets its offer.
	p := newPlayer(t, s, "player")
	p.send(`{"type":"subscribe","streamerId":"SFU"}`)
	sfu.expect(`{"type":"playerConnected","playerId":"2","dataChannel":true,"sfu":false}`)
	sfu.send(`{"type":"offer","playerId":"2","sdp":"sfu offer"}`)
	p.expect(`{"type":"offer","sdp":"sfu offer","playerId":"2"}`)
	p.send(`{"type":"layerPreference","spatialLayer":0,"temporalLayer":1}`)
	sfu.expect(`{"type":"layerPreference","spatialLayer":0,"temporalLayer":1,"playerId":"2"}`)
	sfu.send(`{"type":"streamerDataChannels","playerId":"2","sendStreamId":1,"recvStreamId":2}`)
	st.expect(`{"type":"streamerDataChannels","playerId":"2","sendStreamId":1,"recvStreamId":2,"sfuId":"1"}`)
	sfu.send(`{"type":"peerDataChannels","playerId":"2","sendStreamId":2,"recvStreamId":1}`)
	p.expect(`{"type":"peerDataChannels","sendStreamId":2,"recvStreamId":1,"playerId":"2"}`)
	p.send(`{"type":"peerDataChannelsReady"}`)
	sfu.expect(`{"type":"peerDataChannelsReady","playerId":"2"}`)

	// Stopping the SFU's stream closes its players and unlists it.
	sfu.send(`{"type":"stopStreaming"}`)
	p.expectCloseWith(websocket.CloseNormalClosure, "streamer SFU disconnected")
	sfu.send(`{"type":"listStreamers"}`)
	sfu.expect(`{"type":"streamerList","ids":["Unreal"]}`)

	// Unreal leaving tells the SFU without closing it.
	_ = st.ws.Close()
	sfu.expect(`{"type":"streamerDisconnected"}`)
	sfu.roundTrip()
}
