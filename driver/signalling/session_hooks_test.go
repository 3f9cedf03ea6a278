package signalling

import (
	"encoding/json"
	"testing"
)

// TestWarnPlayersAndStatusExtra: the session can warn connected players and
// add its own fields to /api/status; streamers get no warning.
func TestWarnPlayersAndStatusExtra(t *testing.T) {
	s := startServer(t, Config{Hooks: Hooks{StatusExtra: func() map[string]any {
		return map[string]any{"max_duration_left_s": 42, "player_count": "must not override"}
	}}})
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

	resp, body := httpGet(t, httpURL(s, "/api/status"), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/api/status: %d", resp.StatusCode)
	}
	var status map[string]any
	if err := json.Unmarshal([]byte(body), &status); err != nil {
		t.Fatal(err)
	}
	if status["max_duration_left_s"] != float64(42) || status["player_count"] != float64(2) {
		t.Fatalf("/api/status = %s", body)
	}
}
