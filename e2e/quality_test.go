//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// leaveSummary is the task event a session writes when a player that
// reported its stream quality leaves.
var leaveSummary = regexp.MustCompile(`^Player (\d+) played (\d+m)?\d+s, (\d+\.\d) fps, \d+ freezes?( \([^)]*\))?(, \d+\.\d% loss)?, (host|srflx|prflx|relay)$`)

// TestPlayerQualityReport: a headless Chromium player's own WebRTC stats
// reach the session (the page's stats reports): /metrics counts them,
// /api/status shows them for the player, and when the player leaves the
// session's task events get its one-line summary.
func TestPlayerQualityReport(t *testing.T) {
	a := startAgent(t)
	br := startChromium(t)
	s := submitSession(t, a, "quality", 640, 480, "")
	defer func() {
		if t.Failed() {
			s.dumpLogs(t, a)
		}
	}()
	s.wait(t, a)
	p, status, _ := br.open(t, "quality", s.url(false, ""))
	if status != 200 {
		t.Fatalf("player page answered %d", status)
	}
	p.play(t)

	metric := func(name string) float64 {
		for _, l := range strings.Split(metrics(t, s.http, name), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == name {
				v, _ := strconv.ParseFloat(f[1], 64)
				return v
			}
		}
		return 0
	}
	// Two reports: the first a second after the first frame, the next
	// five seconds later.
	a.eventually(60*time.Second, "the player's quality reports in the session's /metrics", func() bool {
		return metric("pixelstream_player_reports_total") >= 2 && metric("pixelstream_player_frames_decoded_total") > 0
	})
	if n := metric("pixelstream_player_fps_count"); n < 1 {
		t.Fatalf("pixelstream_player_fps has %v observations after a report with frames", n)
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/status", s.http))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var st struct {
		PlayerQuality map[string]struct {
			FPS       float64 `json:"fps"`
			Frames    float64 `json:"framesDecoded"`
			Candidate string  `json:"candidate"`
		} `json:"player_quality"`
	}
	if err := json.Unmarshal(body, &st); err != nil || len(st.PlayerQuality) != 1 {
		t.Fatalf("/api/status player_quality: %s (%v)", body, err)
	}
	var player string
	for id, q := range st.PlayerQuality {
		player = id
		if q.Frames <= 0 || q.Candidate == "" {
			t.Fatalf("/api/status player %s: %+v, want decoded frames and a candidate type", id, q)
		}
	}

	p.close(t)
	var summary string
	a.eventually(30*time.Second, "the player's quality summary in the task events", func() bool {
		for _, e := range a.allocDetail(s.alloc).TaskStates["game"].Events {
			if strings.HasPrefix(e.DisplayMessage, "Player "+player+" played ") {
				summary = e.DisplayMessage
				return true
			}
		}
		return false
	})
	m := leaveSummary.FindStringSubmatch(summary)
	if m == nil {
		t.Fatalf("leave event %q, want %s", summary, leaveSummary)
	}
	if fps, _ := strconv.ParseFloat(m[3], 64); fps < 5 {
		t.Fatalf("leave event %q: %v fps for a stream that played", summary, fps)
	}
	t.Logf("leave event: %s", summary)
}
