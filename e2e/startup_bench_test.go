//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchRuns is how many jobs the start-up benchmark measures (the median
// is reported), after one warm-up run that fills the page cache.
const benchRuns = 5

// startupMarks are the moments of one start, in ms after `nomad job run`
// was started. -1 marks a moment that was not seen.
type startupMarks map[string]float64

// The moments, in order: Nomad's task events, the session's own events
// (their Time is the session's clock), when /readyz first answered, and
// the browser's side.
var startupColumns = []struct{ key, label, event string }{
	{"received", "Nomad: alloc received", "Received"},
	{"setup", "Nomad: task setup", "Task Setup"},
	{"display", "Display ready", "Display :"},
	{"audio", "Audio ready", "Audio ready"},
	{"signalling", "Signalling + TURN listening", "Signalling listening"},
	{"app", "App started", "App started"},
	{"started", "Nomad: task started", "Started"},
	{"stream", "Streamer identified (stream ready)", "Stream ready"},
	{"readyz", "/readyz answers 200 (polled every 5 ms)", ""},
	{"page", "Browser opens the page", ""},
	{"loaded", "Page loaded (DOMContentLoaded)", ""},
	{"listed", "Page got the streamer list (signalling done)", ""},
	{"connected", "Page's WebRTC connected", ""},
	{"frame", "First decoded frame in the browser", ""},
}

// TestBenchStartup measures, from `nomad job run` to the first decoded
// frame in Chromium, where the time goes. It prints a Markdown table; run
// it with PIXELSTREAM_BENCH=1.
func TestBenchStartup(t *testing.T) {
	if os.Getenv("PIXELSTREAM_BENCH") != "1" {
		t.Skip("start-up benchmark: set PIXELSTREAM_BENCH=1 to run it")
	}
	a := startAgent(t)
	br := startChromium(t)
	var runs []startupMarks
	for i := 0; i <= benchRuns; i++ {
		m := measureStartup(t, a, br, fmt.Sprintf("bench-%d", i))
		if i > 0 { // run 0 warms the page cache
			runs = append(runs, m)
		}
	}
	printStartupTable(runs)
}

func measureStartup(t *testing.T, a *agent, br *chromium, job string) startupMarks {
	t.Helper()
	spec := demoVariant(t, job, "")
	submit := time.Now()
	since := func(at time.Time) float64 { return float64(at.Sub(submit).Microseconds()) / 1000 }
	a.nomad("job", "run", "-detach", "-var", "streamer="+bin("streamer"), "-var", "resolution=1280x720", spec)

	// The port is known once the allocation is placed, before the task runs.
	var alloc string
	var port int
	pollFast(t, 60*time.Second, "the allocation's http port", func() bool {
		for _, al := range a.allocs(job) {
			if p := a.allocDetail(al.ID).port("http"); p != 0 {
				alloc, port = al.ID, p
				return true
			}
		}
		return false
	})
	var readyz time.Time
	pollFast(t, 60*time.Second, "/readyz to answer 200", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		readyz = time.Now()
		return resp.StatusCode == http.StatusOK
	})
	s := session{job: job, http: port}
	p, status, navigatedAt := br.open(t, job, s.url(false, ""))
	if status != 200 {
		t.Fatalf("%s: page answered %d", job, status)
	}
	st := p.play(t)

	m := startupMarks{}
	for _, c := range startupColumns {
		m[c.key] = -1
	}
	m["readyz"] = since(readyz)
	m["page"] = since(time.UnixMilli(navigatedAt))
	m["frame"] = since(time.UnixMilli(st.FirstFrameAt))
	for key, at := range map[string]int64{"loaded": st.PageLoadedAt, "listed": st.EventTimes["streamerListMessage"],
		"connected": st.EventTimes["webRtcConnected"]} {
		if at > 0 {
			m[key] = since(time.UnixMilli(at))
		}
	}
	for _, e := range a.allocDetail(alloc).TaskStates["game"].Events {
		for _, c := range startupColumns {
			if c.event != "" && m[c.key] < 0 && (e.Type == c.event || strings.HasPrefix(e.DisplayMessage, c.event)) {
				m[c.key] = since(time.Unix(0, e.Time))
			}
		}
	}
	p.close(t)
	a.nomad("job", "stop", "-purge", "-detach", job)
	pollFast(t, 60*time.Second, "the session's processes to end", func() bool {
		return len(sessionProcs(a, alloc)) == 0
	})
	return m
}

// pollFast is eventually with a 5 ms period, for measurements.
func pollFast(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return -1
	}
	return s[len(s)/2]
}

func (m startupMarks) span(from, to string) float64 {
	if m[from] < 0 || m[to] < 0 {
		return -1
	}
	return m[to] - m[from]
}

func printStartupTable(runs []startupMarks) {
	col := func(f func(startupMarks) float64) (med, lo, hi float64) {
		var v []float64
		for _, r := range runs {
			v = append(v, f(r))
		}
		return median(v), slices.Min(v), slices.Max(v)
	}
	row := func(label string, f func(startupMarks) float64) {
		med, lo, hi := col(f)
		fmt.Printf("| %s | %.0f | %.0f–%.0f |\n", label, med, lo, hi)
	}
	fmt.Printf("\n| Start-up, 1280x720 demo job, audio on (median of %d; ms) | median | range |\n|---|---:|---:|\n", len(runs))
	for _, c := range startupColumns {
		key := c.key
		row("since `nomad job run`: "+c.label, func(m startupMarks) float64 { return m[key] })
	}
	for _, s := range []struct{ label, from, to string }{
		{"Nomad: submit to task setup", "", "setup"},
		{"driver: task setup to display ready (executor, supervisor, Xvfb)", "setup", "display"},
		{"driver: display ready to audio ready (dbus, PipeWire, WirePlumber, pipewire-pulse)", "display", "audio"},
		{"driver: audio ready to signalling + TURN listening", "audio", "signalling"},
		{"driver: signalling listening to app started", "signalling", "app"},
		{"**driver: task setup to app started (everything before the app)**", "setup", "app"},
		{"app's own start: app started to streamer identified", "app", "stream"},
		{"player: page opened to first frame", "page", "frame"},
		{"player: page load (Chromium, player.js)", "page", "loaded"},
		{"player: page loaded to streamer list (WebSocket, config, list)", "loaded", "listed"},
		{"player: streamer list to WebRTC connected (subscribe, offer/answer, ICE, DTLS)", "listed", "connected"},
		{"player: WebRTC connected to first frame (app's encoder start, keyframe, decode)", "connected", "frame"},
		{"**total: `nomad job run` to first frame**", "", "frame"},
	} {
		from, to := s.from, s.to
		row(s.label, func(m startupMarks) float64 {
			if from == "" {
				return m[to]
			}
			return m.span(from, to)
		})
	}
}
