package signalling

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func statsMsg(t *testing.T, report string) string {
	t.Helper()
	b, err := json.Marshal(map[string]string{"type": "stats", "data": report})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPlayerQualityReports: a player's stats message never reaches the
// streamer, shows in /api/status by player id and in the
// pixelstream_player_* metrics, a second one within a second is dropped,
// and the player's leave event carries the summary line.
func TestPlayerQualityReports(t *testing.T) {
	events := newEventLog()
	s := startServer(t, Config{Hooks: Hooks{Event: events.hook}})
	st := newStreamer(t, s, "DefaultStreamer")
	events.next(t) // streamer identified
	p := newPlayer(t, s, "p")
	pid := subscribe(t, p, st, "DefaultStreamer")
	events.next(t) // player connected

	p.send(statsMsg(t, `{"playedMs":4000,"framesDecoded":240,"framesDropped":1,"fps":59.8,"freezeCount":1,"freezeMs":300,"jitterMs":4,"packetsLost":2,"packetsReceived":998,"rttMs":12,"bitrateKbps":2500,"candidate":"relay"}`))
	p.send(statsMsg(t, `{"playedMs":4100,"framesDecoded":999999,"candidate":"host"}`)) // too soon: dropped
	p.roundTrip()
	st.roundTrip() // the streamer got nothing before its pong: no stats

	if q := s.PlayerQuality()[pid]; q.FPS != 59.8 || q.Candidate != "relay" || q.FramesDecoded != 240 {
		t.Fatalf("PlayerQuality()[%s] = %+v", pid, q)
	}
	metrics := metricsText(t, s)
	for _, want := range []string{
		"pixelstream_player_reports_total 1", "pixelstream_player_reports_dropped_total 1",
		"pixelstream_player_frames_decoded_total 240", "pixelstream_player_freezes_total 1",
		"pixelstream_player_packets_lost_total 2", `pixelstream_player_connected{candidate="relay"} 1`,
		"pixelstream_player_fps_count 1", "pixelstream_player_rtt_seconds_count 1",
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	if q := s.Quality(); q.Players != 1 || q.Relay != 1 || q.FPS != 59.8 {
		t.Fatalf("Quality() = %+v", q)
	}

	p.ws.Close()
	ev := events.next(t)
	if ev.Kind != PlayerDisconnected || !strings.HasPrefix(ev.Quality, "played 4s, ") || !strings.HasSuffix(ev.Quality, "1 freeze (300ms), 0.2% loss, relay") {
		t.Fatalf("leave event %+v, want the summary line", ev)
	}
	if n := testutil.ToFloat64(s.quality.m.candidates.WithLabelValues("relay")); n != 0 {
		t.Fatalf("relay players %v after the player left", n)
	}
	if q := s.Quality(); q.Players != 0 {
		t.Fatalf("Quality() after leaving = %+v", q)
	}
}

// TestPlayerQualityBadReports: a malformed report closes that player with
// a reason naming the field, and a bystander keeps being served.
func TestPlayerQualityBadReports(t *testing.T) {
	for _, tc := range []struct{ name, msg, reason string }{
		{"data not a string", `{"type":"stats","data":{"fps":1}}`, "stats message field data must be a string"},
		{"negative fps", statsMsg(t, `{"fps":-1}`), "stats message field data: field fps: -1, want a number from 0 to 1000"},
		{"unknown candidate", statsMsg(t, `{"candidate":"x"}`), `stats message field data: field candidate: "x", want host, srflx, prflx or relay`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{})
			st := newStreamer(t, s, "DefaultStreamer")
			bystander, attacker := newPlayer(t, s, "bystander"), newPlayer(t, s, "attacker")
			subscribe(t, bystander, st, "DefaultStreamer")
			attacker.send(tc.msg)
			code, reason := attacker.expectClose()
			if code != 1007 || reason != tc.reason {
				t.Fatalf("closed with %d %q, want 1007 %q", code, reason, tc.reason)
			}
			bystander.roundTrip()
			st.roundTrip()
		})
	}
}
