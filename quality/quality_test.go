package quality

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
	}{
		{"full report", `{"playedMs":252000,"framesDecoded":15070,"framesDropped":2,"fps":59.8,"freezeCount":0,"freezeMs":0,"jitterMs":3.2,"packetsLost":1,"packetsReceived":90000,"rttMs":1.5,"bitrateKbps":2900,"candidate":"relay"}`, ""},
		{"empty object", `{}`, ""},
		{"negative loss clamped", `{"packetsLost":-3}`, ""},
		{"not an object", `[1,2]`, "want a JSON object"},
		{"two objects", `{}{}`, "more after it"},
		{"unknown field", `{"fps":1,"sdp":"x"}`, `unknown field "sdp"`},
		{"negative", `{"fps":-1}`, "field fps: -1"},
		{"too large", `{"framesDecoded":1e300}`, "field framesDecoded"},
		{"beyond float64", `{"framesDecoded":1e400}`, "want a JSON object"},
		{"2^64-1", `{"packetsReceived":18446744073709551615}`, "field packetsReceived"},
		{"fps absurd", `{"fps":5000}`, "field fps"},
		{"bad candidate", `{"candidate":"evil"}`, "field candidate"},
		{"string number", `{"fps":"60"}`, "want a JSON object"},
		{"oversize", `{"candidate":"` + strings.Repeat("a", MaxReportBytes) + `"}`, "at most 2048"},
	} {
		_, err := Parse([]byte(tc.in))
		if tc.err == "" && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestSummary(t *testing.T) {
	r := Report{FramesDecoded: 15072, FreezeCount: 0, PacketsReceived: 1000, Candidate: "relay"}
	if got, want := r.Summary(252*time.Second), "played 4m12s, 59.8 fps, 0 freezes, 0.0% loss, relay"; got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
	r = Report{FramesDecoded: 300, FreezeCount: 1, FreezeMS: 450, Candidate: "host"}
	if got, want := r.Summary(10*time.Second), "played 10s, 30.0 fps, 1 freeze (500ms), host"; got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
	if got := (Report{}).Summary(0); got != "played 0s, 0.0 fps, 0 freezes" {
		t.Fatalf("empty summary %q", got)
	}
}

func TestAggregate(t *testing.T) {
	s := Aggregate([]Report{{FPS: 60, RTTMS: 10, FreezeCount: 1, Candidate: "relay"}, {FPS: 30, RTTMS: 20, FreezeCount: 2, Candidate: "host"}})
	if s.Players != 2 || s.FPS != 45 || s.RTTMS != 15 || s.Freezes != 3 || s.Relay != 1 {
		t.Fatalf("aggregate %+v", s)
	}
	if s := Aggregate(nil); s.Players != 0 || s.FPS != 0 {
		t.Fatalf("empty aggregate %+v", s)
	}
}

// FuzzParse: no input panics, and whatever Parse accepts is within bounds.
func FuzzParse(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"fps":0}`, `{"fps":1000}`, `{"framesDecoded":9007199254740992}`,
		`{"packetsReceived":9223372036854775808}`, `{"packetsReceived":18446744073709551615}`,
		`{"packetsLost":-9007199254740992}`, `{"candidate":"relay"}`, strings.Repeat("[", MaxReportBytes)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		for _, v := range []float64{r.PlayedMS, r.FramesDecoded, r.FramesDropped, r.FPS, r.FreezeCount, r.FreezeMS, r.JitterMS, r.PacketsLost, r.PacketsReceived, r.RTTMS, r.BitrateKbps} {
			if v < 0 || v > 1<<53 {
				t.Fatalf("accepted out-of-bounds value %v in %q", v, data)
			}
		}
		_ = r.Summary(time.Duration(r.PlayedMS) * time.Millisecond)
	})
}

func TestMerge(t *testing.T) {
	m := Merge(Session{Players: 1, FPS: 60, RTTMS: 10, Relay: 1, PacketsLost: 1}, Session{Players: 3, FPS: 20, RTTMS: 30, PacketsReceived: 9})
	if m.Players != 4 || m.FPS != 30 || m.RTTMS != 25 || m.Relay != 1 || m.PacketsLost != 1 || m.PacketsReceived != 9 {
		t.Fatalf("merge %+v", m)
	}
	if m := Merge(Session{}, Session{}); m.FPS != 0 || m.Players != 0 {
		t.Fatalf("empty merge %+v", m)
	}
}
