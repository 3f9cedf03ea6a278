package signalling

import (
	"testing"

	"github.com/gorilla/websocket"
)

// TestGoroutinePollFallback runs a session on the reader used where epoll is
// not available.
func TestGoroutinePollFallback(t *testing.T) {
	forceGoroutinePoll = true
	s := startServer(t, Config{})
	forceGoroutinePoll = false
	if _, ok := s.poll.(goroutinePoll); !ok {
		t.Fatalf("server uses %T", s.poll)
	}
	st := newStreamer(t, s, "S")
	p := newPlayer(t, s, "player")
	pid := subscribe(t, p, st, "S")
	st.send(`{"type":"offer","playerId":"` + pid + `","sdp":"x"}`)
	p.expect(`{"type":"offer","sdp":"x","playerId":"` + pid + `"}`)
	p.send(`{"type":"answer","sdp":"y"}`)
	st.expect(`{"type":"answer","sdp":"y","playerId":"` + pid + `"}`)
	p.send(`{"type":"nonsense"}`)
	p.expectCloseWith(websocket.ClosePolicyViolation, `unknown message type "nonsense"`)
	st.expect(`{"type":"playerDisconnected","playerId":"` + pid + `"}`)
}
