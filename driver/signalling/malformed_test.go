package signalling

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestMalformedInput sends each kind of bad input from a player or the
// streamer and checks the sender is closed with a reason that says what was
// wrong, while a bystander player and the streamer carry on.
func TestMalformedInput(t *testing.T) {
	huge := `{"type":"ping","time":1,"pad":"` + strings.Repeat("x", 70<<10) + `"}`
	cases := []struct {
		name   string
		from   string // "player" or "streamer"
		sends  []string
		binary bool
		code   int
		reason string
	}{
		{"not JSON", "player", []string{`hello`}, false, websocket.CloseInvalidFramePayloadData, "message is not valid JSON"},
		{"truncated JSON", "player", []string{`{"type":"ping"`}, false, websocket.CloseInvalidFramePayloadData, "message is not valid JSON"},
		{"JSON array", "player", []string{`[{"type":"ping"}]`}, false, websocket.CloseInvalidFramePayloadData, "message is not a JSON object"},
		{"JSON string", "player", []string{`"ping"`}, false, websocket.CloseInvalidFramePayloadData, "message is not a JSON object"},
		{"no type", "player", []string{`{"streamerId":"S"}`}, false, websocket.CloseInvalidFramePayloadData, "message has no type field"},
		{"type is a number", "player", []string{`{"type":7}`}, false, websocket.CloseInvalidFramePayloadData, "message field type must be a string"},
		{"unknown type", "player", []string{`{"type":"launchMissiles"}`}, false, websocket.ClosePolicyViolation, `unknown message type "launchMissiles"`},
		{"subscribe without streamerId", "player", []string{`{"type":"subscribe"}`}, false, websocket.CloseInvalidFramePayloadData, "subscribe message is missing field streamerId"},
		{"streamerId of the wrong type", "player", []string{`{"type":"subscribe","streamerId":["S"]}`}, false, websocket.CloseInvalidFramePayloadData, "subscribe message field streamerId must be a string"},
		{"answer without sdp", "player", []string{`{"type":"answer"}`}, false, websocket.CloseInvalidFramePayloadData, "answer message is missing field sdp"},
		{"iceCandidate without candidate", "player", []string{`{"type":"iceCandidate"}`}, false, websocket.CloseInvalidFramePayloadData, "iceCandidate message is missing field candidate"},
		{"candidate not an object", "player", []string{`{"type":"iceCandidate","candidate":"candidate:1"}`}, false, websocket.CloseInvalidFramePayloadData, "iceCandidate message field candidate must be an object"},
		{"ping without time", "player", []string{`{"type":"ping"}`}, false, websocket.CloseInvalidFramePayloadData, "ping message is missing field time"},
		{"ping time a string", "player", []string{`{"type":"ping","time":"soon"}`}, false, websocket.CloseInvalidFramePayloadData, "ping message field time must be a number"},
		{"binary garbage", "player", []string{"\x00\xff\xfe"}, true, websocket.CloseInvalidFramePayloadData, "message is not valid UTF-8"},
		{"huge message", "player", []string{huge}, false, websocket.CloseMessageTooBig, "message larger than 65536 bytes"},
		{"flood", "player", flood(500), false, websocket.ClosePolicyViolation, "rate limit exceeded: more than 100 messages per second"},
		{"streamer endpointId without id", "streamer", []string{`{"type":"endpointId"}`}, false, websocket.CloseInvalidFramePayloadData, "endpointId message is missing field id"},
		{"streamer endpointId empty", "streamer", []string{`{"type":"endpointId","id":""}`}, false, websocket.CloseInvalidFramePayloadData, "endpointId message field id must be 1 to 256 bytes"},
		{"streamer disconnectPlayer without playerId", "streamer", []string{`{"type":"disconnectPlayer"}`}, false, websocket.CloseInvalidFramePayloadData, "disconnectPlayer message is missing field playerId"},
		{"streamer playerId an object", "streamer", []string{`{"type":"offer","sdp":"x","playerId":{}}`}, false, websocket.CloseInvalidFramePayloadData, "offer message field playerId must be a string"},
	}
	s := startServer(t, Config{})
	st := newStreamer(t, s, "S")
	bystander := newPlayer(t, s, "bystander")
	subscribe(t, bystander, st, "S")

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var bad *peer
			if tc.from == "streamer" {
				bad = dial(t, "bad streamer", streamerURL(s), nil)
				bad.expect(wantIdentify)
				bad.expect(wantConfig)
			} else {
				bad = newPlayer(t, s, "bad player")
			}
			kind := websocket.TextMessage
			if tc.binary {
				kind = websocket.BinaryMessage
			}
			for _, m := range tc.sends {
				if err := bad.ws.WriteMessage(kind, []byte(m)); err != nil {
					break // the server may already have closed a flooding peer
				}
			}
			bad.expectCloseWith(tc.code, tc.reason)

			bystander.roundTrip()
			st.roundTrip()
			st.send(`{"type":"offer","playerId":"1","sdp":"still here"}`)
			bystander.expect(`{"type":"offer","sdp":"still here","playerId":"1"}`)
		})
	}
}

func flood(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = `{"type":"unsubscribe"}` // no reply, so only the rate limit can trip
	}
	return out
}

// TestLimits covers the connection limits not driven by message content:
// handshake deadlines, total connections, slow readers and dead peers.
func TestLimits(t *testing.T) {
	t.Run("streamer must identify in time", func(t *testing.T) {
		s := startServer(t, Config{Limits: Limits{IdentifyTimeout: 50 * time.Millisecond}})
		st := dial(t, "silent streamer", streamerURL(s), nil)
		st.expect(wantIdentify)
		st.expect(wantConfig)
		st.expectCloseWith(websocket.ClosePolicyViolation, "no endpointId within 50ms")
	})
	t.Run("player must subscribe in time", func(t *testing.T) {
		s := startServer(t, Config{Limits: Limits{SubscribeTimeout: 50 * time.Millisecond}})
		st := newStreamer(t, s, "S")
		idle := newPlayer(t, s, "idle")
		idle.expectCloseWith(websocket.ClosePolicyViolation, "no subscribe within 50ms")
		ok := newPlayer(t, s, "subscribed")
		subscribe(t, ok, st, "S")
		// Still served once the deadline has passed for the idle one.
		eventually(t, "the idle player to be gone", func() bool { return len(s.Status().Players) == 1 })
		ok.roundTrip()
	})
	t.Run("max connections", func(t *testing.T) {
		s := startServer(t, Config{Limits: Limits{MaxConnections: 2}})
		newStreamer(t, s, "S")
		newPlayer(t, s, "fits")
		over := dial(t, "one too many", playerURL(s), nil)
		over.expectCloseWith(websocket.CloseTryAgainLater, "too many connections (max 2)")
	})
	t.Run("slow reader is closed, others unaffected", func(t *testing.T) {
		s := startServer(t, Config{Limits: Limits{SendQueue: 4, StreamerMessagesPerSecond: 1e6, StreamerBurst: 1e6}})
		st := newStreamer(t, s, "S")
		slow := newPlayer(t, s, "never reads")
		fast := newPlayer(t, s, "reads")
		slowID := subscribe(t, slow, st, "S")
		fastID := subscribe(t, fast, st, "S")
		big := `{"type":"iceCandidate","playerId":"` + slowID + `","candidate":{"candidate":"` + strings.Repeat("c", 60<<10) + `"}}`
		gone := func() bool {
			for _, p := range s.Status().Players {
				if p.ID == slowID {
					return false
				}
			}
			return true
		}
		deadline := time.Now().Add(waitFor)
		for !gone() {
			if time.Now().After(deadline) {
				t.Fatal("slow player was never closed")
			}
			for i := 0; i < 20; i++ {
				st.send(big)
			}
			st.send(`{"type":"offer","playerId":"` + fastID + `","sdp":"x"}`)
			fast.expect(`{"type":"offer","sdp":"x","playerId":"` + fastID + `"}`)
		}
		fast.roundTrip()
	})
	t.Run("dead peer found by ping frames", func(t *testing.T) {
		s := startServer(t, Config{Limits: Limits{PingInterval: 20 * time.Millisecond, PongTimeout: 100 * time.Millisecond}})
		st := newStreamer(t, s, "S")
		dead := newPlayer(t, s, "never answers pings")
		alive := newPlayer(t, s, "answers pings")
		deadID := subscribe(t, dead, st, "S")
		subscribe(t, alive, st, "S")
		// The live player keeps reading, which answers pings; the dead one never reads.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, _, err := alive.ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		st.expect(`{"type":"playerDisconnected","playerId":"` + deadID + `"}`)
		if n := len(s.Status().Players); n != 1 {
			t.Fatalf("%d players after the dead one was dropped, want 1", n)
		}
		_ = alive.ws.Close()
		<-done
	})
}

// TestRecoverBoundary: a bug hit while handling one peer (here, hooks that
// panic) drops that peer with 1011, is counted in /metrics, and leaves the
// streamer, a bystander and the process alone.
func TestRecoverBoundary(t *testing.T) {
	var nilMap map[string]int
	s := startServer(t, Config{Hooks: Hooks{
		PlayerSDP: func(_, _, sdp string) {
			if sdp == "boom" {
				nilMap[sdp]++ // a real bug's panic: assignment to entry in nil map
			}
		},
		PlayerPeerOptions: func(playerID string) json.RawMessage {
			if playerID == "3" {
				panic("options for player 3")
			}
			return nil
		},
	}})
	st := newStreamer(t, s, "S")
	bystander := newPlayer(t, s, "bystander") // player 1
	subscribe(t, bystander, st, "S")

	bad := newPlayer(t, s, "bad") // player 2
	badID := subscribe(t, bad, st, "S")
	bad.send(`{"type":"answer","sdp":"boom"}`)
	bad.expectCloseWith(websocket.CloseInternalServerErr, "internal server error")
	st.expect(`{"type":"playerDisconnected","playerId":"` + badID + `"}`)

	third := dial(t, "third", playerURL(s), nil) // player 3: its config hook panics
	third.expectCloseWith(websocket.CloseInternalServerErr, "internal server error")

	bystander.roundTrip()
	st.send(`{"type":"offer","playerId":"1","sdp":"still here"}`)
	bystander.expect(`{"type":"offer","sdp":"still here","playerId":"1"}`)
	body := metricsText(t, s)
	for _, want := range []string{`pixelstream_signalling_peer_panics_total{where="read"} 1`, `pixelstream_signalling_peer_panics_total{where="hook"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestStreamerSendBudget: players writing faster than the streamer reads
// are refused with 1013 once the streamer's queue nears its byte budget;
// the streamer stays, and so do players that behave.
func TestStreamerSendBudget(t *testing.T) {
	s := startServer(t, Config{Limits: Limits{StreamerSendQueueBytes: 256 << 10, MessagesPerSecond: 1e9, Burst: 1 << 30}})
	st := newStreamer(t, s, "S") // reads nothing from here on
	if tc, ok := st.ws.NetConn().(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10) // so the server's queue, not the kernel, takes the backlog
	}
	flooder := newPlayer(t, s, "flooder")
	subscribe(t, flooder, st, "S")
	answer := `{"type":"answer","sdp":"` + strings.Repeat("a", 60<<10) + `"}`
	// Write until refused: how much the kernel buffers towards the
	// streamer before the server's queue grows varies.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 4000; i++ {
			if err := flooder.ws.WriteMessage(websocket.TextMessage, []byte(answer)); err != nil {
				return
			}
		}
	}()
	defer func() { _ = flooder.ws.Close(); <-done }()
	flooder.expectCloseWith(websocket.CloseTryAgainLater, "streamer busy: more than 229376 bytes waiting for it")
	if n := len(s.Status().Streamers); n != 1 {
		t.Fatalf("%d streamers after the flood, want 1", n)
	}
	if !strings.Contains(metricsText(t, s), `pixelstream_signalling_rejected_total{endpoint="player",reason="streamer_busy"} 1`) {
		t.Error("/metrics does not count the refusal as streamer_busy")
	}
}

func TestBudgetValidation(t *testing.T) {
	_, err := New(Config{StreamerListen: "127.0.0.1:0",
		Limits: Limits{SendQueueBytes: 1000, MaxPendingBytes: -1}})
	if err == nil || !strings.Contains(err.Error(), "limits.MaxPendingBytes must not be negative") {
		t.Fatalf("negative MaxPendingBytes: %v", err)
	}
	_, err = New(Config{StreamerListen: "127.0.0.1:0", Limits: Limits{SendQueueBytes: 1000}})
	if err == nil || !strings.Contains(err.Error(), "limits.SendQueueBytes (1000) must be at least MaxMessageBytes (65536)") {
		t.Fatalf("SendQueueBytes below a message: %v", err)
	}
}

// TestConfigValidation: bad configs are refused with the field named.
func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no streamer address", Config{}, "StreamerListen is required"},
		{"bad streamer address", Config{StreamerListen: "localhost"}, "StreamerListen \"localhost\" is not host:port"},
		{"negative max players", Config{StreamerListen: ":0", MaxPlayers: -1}, "MaxPlayers must be 0 (unlimited) or positive"},
		{"peer options not an object", Config{StreamerListen: ":0", PeerConnectionOptions: json.RawMessage(`[1]`)}, "PeerConnectionOptions must be a JSON object"},
		{"negative limit", Config{StreamerListen: ":0", Limits: Limits{MaxConnections: -1}}, "limits.MaxConnections must not be negative"},
		{"negative per-address cap", Config{StreamerListen: ":0", Limits: Limits{MaxConnectionsPerAddress: -1}}, "limits.MaxConnectionsPerAddress must not be negative"},
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
