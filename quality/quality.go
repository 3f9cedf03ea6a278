// Package quality is the contract for the stream quality players see: the
// report the player page sends the session every few seconds (the data of
// a "stats" signalling message, which the streamer never sees), the
// one-line summary a session puts in its task events when a player
// leaves, and the per-session aggregate a session gives the gateway in
// its /api/claim answer. The page, the session and the gateway all use
// these definitions; none has a copy of its own.
package quality

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// MaxReportBytes bounds one report's JSON text; a real one is ~300 bytes.
const MaxReportBytes = 2048

// MinInterval is the shortest gap between two reports a session accepts
// from one player; the page sends one every ReportEvery. Reports that come
// faster are dropped, not stored.
const MinInterval = time.Second

// ReportEvery is how often the player page reports.
const ReportEvery = 5 * time.Second

// maxCount bounds counters (frames, packets: 2^53, exact in a float64 and
// far beyond any stream's life); maxMS bounds durations (a year).
const (
	maxCount = 1 << 53
	maxMS    = 365 * 24 * 3600 * 1000
)

// Candidate types of the selected ICE candidate pair's local side.
var candidates = map[string]bool{"": true, "host": true, "srflx": true, "prflx": true, "relay": true}

// Report is the player's view of its stream, cumulative since the stream
// began (as RTCInboundRtpStreamStats counts), except FPS and BitrateKbps,
// which cover the last interval. Field names are the page's JSON.
type Report struct {
	PlayedMS        float64 `json:"playedMs"` // since the first decoded frame
	FramesDecoded   float64 `json:"framesDecoded"`
	FramesDropped   float64 `json:"framesDropped"`
	FPS             float64 `json:"fps"`
	FreezeCount     float64 `json:"freezeCount"`
	FreezeMS        float64 `json:"freezeMs"` // total freeze duration
	JitterMS        float64 `json:"jitterMs"`
	PacketsLost     float64 `json:"packetsLost"`
	PacketsReceived float64 `json:"packetsReceived"`
	RTTMS           float64 `json:"rttMs"` // selected candidate pair's current round trip
	BitrateKbps     float64 `json:"bitrateKbps"`
	Candidate       string  `json:"candidate"` // host, srflx, prflx, relay; "" before ICE picked a pair
}

// Parse reads a report and checks every field: JSON object, known fields
// only, numbers finite and within bounds, a known candidate type. The
// error names the field and what would be right.
func Parse(data []byte) (Report, error) {
	var r Report
	if len(data) > MaxReportBytes {
		return r, fmt.Errorf("%d bytes, at most %d", len(data), MaxReportBytes)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Report{}, fmt.Errorf("want a JSON object of the report's fields: %w", err)
	}
	if dec.More() {
		return Report{}, errors.New("want one JSON object, got more after it")
	}
	for _, f := range []struct {
		name string
		v    float64
		max  float64
	}{
		{"playedMs", r.PlayedMS, maxMS}, {"framesDecoded", r.FramesDecoded, maxCount},
		{"framesDropped", r.FramesDropped, maxCount}, {"fps", r.FPS, 1000},
		{"freezeCount", r.FreezeCount, maxCount}, {"freezeMs", r.FreezeMS, maxMS},
		{"jitterMs", r.JitterMS, maxMS}, {"packetsLost", r.PacketsLost, maxCount},
		{"packetsReceived", r.PacketsReceived, maxCount}, {"rttMs", r.RTTMS, maxMS},
		{"bitrateKbps", r.BitrateKbps, 1e9},
	} {
		// packetsLost may be negative in RTCP (duplicates); a report of it is
		// clamped, not refused.
		if f.name == "packetsLost" && f.v < 0 && f.v >= -maxCount {
			r.PacketsLost = 0
			continue
		}
		if math.IsNaN(f.v) || f.v < 0 || f.v > f.max {
			return Report{}, fmt.Errorf("field %s: %v, want a number from 0 to %g", f.name, f.v, f.max)
		}
	}
	if !candidates[r.Candidate] {
		return Report{}, fmt.Errorf("field candidate: %q, want host, srflx, prflx or relay", truncate(r.Candidate, 20))
	}
	return r, nil
}

// Summary is the line a session's task events get when a player leaves:
// "played 4m12s, 59.8 fps, 0 freezes, relay". played is how long the
// player watched: its last report's playedMs plus the time since.
func (r Report) Summary(played time.Duration) string {
	fps := 0.0
	if s := played.Seconds(); s > 0 {
		fps = min(r.FramesDecoded/s, 1000)
	}
	freezes := fmt.Sprintf("%.0f freezes", r.FreezeCount)
	if r.FreezeCount == 1 {
		freezes = "1 freeze"
	}
	if r.FreezeMS > 0 {
		freezes += fmt.Sprintf(" (%s)", (time.Duration(r.FreezeMS) * time.Millisecond).Round(100*time.Millisecond))
	}
	out := fmt.Sprintf("played %s, %.1f fps, %s", played.Round(time.Second), fps, freezes)
	if r.PacketsReceived > 0 {
		out += fmt.Sprintf(", %.1f%% loss", 100*r.PacketsLost/(r.PacketsLost+r.PacketsReceived))
	}
	if r.Candidate != "" {
		out += ", " + r.Candidate
	}
	return out
}

// Session is what a session tells the gateway about its players' quality
// (the "quality" field of GET /api/claim): the latest report of each
// connected player, summed or averaged.
type Session struct {
	Players         int     `json:"players"`          // players that reported
	FPS             float64 `json:"fps"`              // mean of their latest fps
	RTTMS           float64 `json:"rtt_ms"`           // mean of their latest RTT
	Freezes         float64 `json:"freezes"`          // sum of their freeze counts
	FreezeMS        float64 `json:"freeze_ms"`        // sum of their freeze durations
	PacketsLost     float64 `json:"packets_lost"`     // sum
	PacketsReceived float64 `json:"packets_received"` // sum
	Relay           int     `json:"relay"`            // players whose media goes through TURN
}

// Aggregate sums the latest reports of a session's players.
func Aggregate(reports []Report) Session {
	var s Session
	for _, r := range reports {
		s.Players++
		s.FPS += r.FPS
		s.RTTMS += r.RTTMS
		s.Freezes += r.FreezeCount
		s.FreezeMS += r.FreezeMS
		s.PacketsLost += r.PacketsLost
		s.PacketsReceived += r.PacketsReceived
		if r.Candidate == "relay" {
			s.Relay++
		}
	}
	if s.Players > 0 {
		s.FPS /= float64(s.Players)
		s.RTTMS /= float64(s.Players)
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Merge combines the aggregates of several sessions (a node's): sums add,
// means are weighted by players.
func Merge(a, b Session) Session {
	out := Session{Players: a.Players + b.Players, Freezes: a.Freezes + b.Freezes, FreezeMS: a.FreezeMS + b.FreezeMS,
		PacketsLost: a.PacketsLost + b.PacketsLost, PacketsReceived: a.PacketsReceived + b.PacketsReceived, Relay: a.Relay + b.Relay}
	if out.Players > 0 {
		wa, wb := float64(a.Players), float64(b.Players)
		out.FPS = (a.FPS*wa + b.FPS*wb) / (wa + wb)
		out.RTTMS = (a.RTTMS*wa + b.RTTMS*wb) / (wa + wb)
	}
	return out
}
