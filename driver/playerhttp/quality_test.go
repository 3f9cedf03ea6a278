package playerhttp

import (
	"encoding/json"
	"testing"
)

// TestStatusPlayerQuality: a player's quality report shows in /api/status
// under its player id.
func TestStatusPlayerQuality(t *testing.T) {
	s := startServer(t, Config{})
	st := newStreamer(t, s, "DefaultStreamer")
	p := newPlayer(t, s, "p")
	pid := subscribe(t, p, st, "DefaultStreamer")
	report, _ := json.Marshal(map[string]any{"fps": 30, "framesDecoded": 90, "candidate": "host"})
	msg, _ := json.Marshal(map[string]string{"type": "stats", "data": string(report)})
	p.send(string(msg))
	p.roundTrip()
	_, body := httpGet(t, httpURL(s, "/api/status"), nil)
	var status struct {
		PlayerQuality map[string]struct {
			FPS       float64 `json:"fps"`
			Candidate string  `json:"candidate"`
		} `json:"player_quality"`
	}
	if err := json.Unmarshal([]byte(body), &status); err != nil {
		t.Fatal(err)
	}
	if q := status.PlayerQuality[pid]; q.FPS != 30 || q.Candidate != "host" {
		t.Fatalf("/api/status player_quality[%s] = %+v (%s)", pid, q, body)
	}
}
