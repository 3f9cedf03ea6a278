//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// visitorsReport is the part of bench/visitors' -json line these
// benchmarks read.
type visitorsReport struct {
	Visitors, OK, Failed, Queued int
	WallS                        float64 `json:"wall_s"`
	FirstFrameMS                 msDist  `json:"first_frame_ms"`
	HandoverMS                   msDist  `json:"handover_ms"`
	QueueMS                      msDist  `json:"queue_ms"`
	FPS                          msDist  `json:"fps"`
	Freezes                      int
	PageBytes                    msDist            `json:"page_bytes"`
	StageMS                      map[string]msDist `json:"stage_ms"`
	AtMS                         map[string]msDist `json:"at_ms"`
	Errors                       map[string]int
	Candidates                   map[string]int
	Visits                       []struct {
		ArrivedMS  int64              `json:"arrived_unix_ms"`
		AssignedMS int64              `json:"assigned_unix_ms"`
		AtMS       map[string]float64 `json:"at_ms"`
		Error      string             `json:"error"`
	}
}

type msDist struct {
	P50, P95, P99 float64
	N             int
}

func (d msDist) ms() string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f ms | %.0f ms | %.0f ms", d.P50, d.P95, d.P99)
}

// visitorsBin builds the generator once per test binary.
var visitorsBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "visitors-bin")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "visitors")
	if b, err := exec.Command("go", "build", "-o", out, "../bench/visitors").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./bench/visitors: %v\n%s", err, b)
	}
	return out, nil
})

// runVisitors runs the generator with -json and returns its report.
func runVisitors(t *testing.T, url string, args ...string) visitorsReport {
	t.Helper()
	bin, err := visitorsBin()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, append([]string{"-url", url, "-json", "-visits"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var rep visitorsReport
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("bench/visitors %v: %v %v\n%s%s", args, err, jerr, out.String(), errOut.String())
	}
	if rep.Failed > 0 {
		t.Logf("bench/visitors %v: %d of %d failed: %v", args, rep.Failed, rep.Visitors, rep.Errors)
	}
	return rep
}

// TestBenchVisitors measures what visitors feel through the gateway on the
// three-agent cluster, with bench/visitors (pion, no decoding) and sessions
// sending the pre-encoded clip (make clip): warm pool with visitors
// arriving together, the generator against Chromium for 1 and 6 visitors,
// Poisson arrivals for a while, queue hand-over and cold starts with the
// table of where a cold start's time goes. Markdown tables; run it with
// PIXELSTREAM_BENCH=1 (PIXELSTREAM_VISITORS: warm count, default 20;
// PIXELSTREAM_POISSON: "RATE/DURATION", default 0.5/2m; PIXELSTREAM_BENCH_ONLY:
// comma-separated phases warm,chromium,turn,poisson,handover,cold,handover-return).
func TestBenchVisitors(t *testing.T) {
	if os.Getenv("PIXELSTREAM_BENCH") != "1" {
		t.Skip("visitors benchmark: set PIXELSTREAM_BENCH=1 to run it")
	}
	clip := bin("clip.ivf")
	if _, err := os.Stat(clip); err != nil {
		t.Fatalf("%s missing: run `make clip` first", clip)
	}
	if _, err := visitorsBin(); err != nil {
		t.Fatal(err)
	}
	n := 20
	if v, err := strconv.Atoi(os.Getenv("PIXELSTREAM_VISITORS")); err == nil && v > 0 {
		n = v
	}
	rate, dur := 0.5, 2*time.Minute
	if v := os.Getenv("PIXELSTREAM_POISSON"); v != "" {
		r, d, _ := strings.Cut(v, "/")
		rate, _ = strconv.ParseFloat(r, 64)
		dur, _ = time.ParseDuration(d)
	}
	only := map[string]bool{}
	for _, p := range strings.Split(os.Getenv("PIXELSTREAM_BENCH_ONLY"), ",") {
		if p != "" {
			only[p] = true
		}
	}
	phase := func(p string) bool { return len(only) == 0 || only[p] }

	c := startCluster(t)
	c.nomadOut("var", "put", "-force", "nomad/jobs/pixelstream-session", "gateway_secret="+gwSecret)
	c.nomadOut("var", "put", "-force", "nomad/jobs/pixelstream-gateway", "gateway_secret="+gwSecret, "operator_token="+gwOpToken)
	c.nomadOut("job", "run", "-detach", "-var", "pool=true", "-var", "streamer="+bin("streamer"), "-var", "clip="+clip,
		"-var", "idle_timeout=1s", "-var", "cpu=100", "../example/session.nomad.hcl")
	var gp *gateway
	defer c.diagnose(t, &gp)
	pool := func(free, max int) *gateway {
		g := c.runGateway(1, fmt.Sprintf("min_free=%d", free), fmt.Sprintf("max_sessions=%d", max))
		gp = g
		if free > 0 {
			c.server.eventually(10*time.Minute, fmt.Sprintf("%d warm sessions", free), func() bool { return g.count(0, "free") >= free })
		}
		return g
	}
	type row struct{ name, cells string }
	var rows []row
	add := func(name string, r visitorsReport) {
		rows = append(rows, row{name, fmt.Sprintf("%s | %d/%d | %.1f | %d", r.FirstFrameMS.ms(), r.OK, r.Visitors, r.FPS.P50, r.Freezes)})
	}

	var warm *visitorsReport
	var compare []string
	var cold []coldRun
	// The tables are printed however the run ends: a phase that fails
	// leaves the figures of the others.
	defer func() {
		fmt.Println("| visitors through the gateway (3-agent cluster, stand-in sending the pre-encoded clip) | p50 | p95 | p99 | ok | fps p50 | freezes |")
		fmt.Println("|---|---|---|---|---|---|---|")
		for _, r := range rows {
			fmt.Printf("| %s | %s |\n", r.name, r.cells)
		}
		if len(compare) > 0 {
			fmt.Println()
			fmt.Println("| visitors together: moment (p50, ms after arrival) | Chromium | bench/visitors |")
			fmt.Println("|---|---|---|")
			for _, l := range compare {
				fmt.Println(l)
			}
		}
		if warm != nil {
			fmt.Println()
			fmt.Printf("| warm pool, %d visitors together: each stage's own time | p50 | p95 | p99 |\n", n)
			fmt.Println("|---|---|---|---|")
			for _, st := range []string{"page", "assets", "websocket", "config", "offer", "answer", "ice_connected", "dtls_connected", "first_packet", "first_keyframe"} {
				d := warm.StageMS[st]
				fmt.Printf("| %s | %.0f ms | %.0f ms | %.0f ms |\n", st, d.P50, d.P95, d.P99)
			}
		}
		if len(cold) > 0 {
			fmt.Println()
			printColdTable(cold)
		}
	}()
	if phase("warm") {
		g := pool(n, n)
		r := runVisitors(t, g.urls[0]+gwPage, "-n", strconv.Itoa(n), "-watch", "3s")
		warm = &r
		add(fmt.Sprintf("warm pool, %d visitors arriving together", n), r)
	}
	if phase("chromium") {
		g := pool(6, 6)
		b := startChromium(t)
		for _, k := range []int{1, 6} {
			c.server.eventually(5*time.Minute, "6 warm sessions", func() bool { return g.count(0, "free") >= 6 })
			ff, marks := chromiumVisitors(t, b, g.urls[0]+gwPage, k)
			rows = append(rows, row{fmt.Sprintf("Chromium, %d visitor(s) together (first decoded frame)", k), fmt.Sprintf("%s | %d/%d | - | -", ff.ms(), ff.N, k)})
			c.server.eventually(5*time.Minute, "6 warm sessions", func() bool { return g.count(0, "free") >= 6 })
			r := runVisitors(t, g.urls[0]+gwPage, "-n", strconv.Itoa(k), "-watch", "3s")
			add(fmt.Sprintf("bench/visitors, %d visitor(s) together (first complete keyframe)", k), r)
			compare = append(compare, fmt.Sprintf("| %d: page and its script loaded | %.0f ms | %.0f ms |", k, marks["loaded"], r.AtMS["assets"].P50),
				fmt.Sprintf("| %d: signalling answered (Chromium: streamer list; generator: config) | %.0f ms | %.0f ms |", k, marks["listed"], r.AtMS["config"].P50),
				fmt.Sprintf("| %d: WebRTC connected | %.0f ms | %.0f ms |", k, marks["connected"], r.AtMS["dtls_connected"].P50),
				fmt.Sprintf("| %d: first frame (Chromium: decoded; generator: complete keyframe) | %.0f ms | %.0f ms |", k, marks["frame"], r.AtMS["first_keyframe"].P50),
				fmt.Sprintf("| %d: WebRTC connected to first frame | %.0f ms | %.0f ms |", k, marks["frame"]-marks["connected"], r.AtMS["first_keyframe"].P50-r.AtMS["dtls_connected"].P50))
		}
	}
	if phase("turn") {
		// As ?ForceTURN: media only through the session's TURN server.
		g := pool(2, 2)
		r := runVisitors(t, g.urls[0]+gwPage, "-n", "2", "-turn", "-watch", "3s")
		add("relay only (-turn, as ?ForceTURN), 2 visitors together", r)
		if r.OK != 2 || r.Candidates["relay"] != 2 {
			t.Errorf("relay-only visitors: %d ok, candidate types %v, want 2 relay", r.OK, r.Candidates)
		}
	}
	if phase("poisson") {
		g := pool(6, 12)
		r := runVisitors(t, g.urls[0]+gwPage, "-arrival", "poisson", "-rate", fmt.Sprint(rate), "-duration", dur.String(), "-hold", "10s", "-watch", "3s", "-timeout", "3m")
		add(fmt.Sprintf("Poisson, %.2f/s for %s (each watches 10s; pool min_free 6, max 12)", rate, dur), r)
		rows = append(rows, row{"Poisson: time in the queue (queued visitors)", fmt.Sprintf("%s | %d queued | - | -", r.QueueMS.ms(), r.Queued)})
	}
	if phase("handover") {
		stopSessions(t, c) // free ones left by earlier phases would take the queue
		g := pool(2, 2)
		r := runVisitors(t, g.urls[0]+gwPage, "-arrival", "queue", "-n", "6", "-hold", "2s", "-watch", "2s", "-timeout", "5m")
		add(fmt.Sprintf("queue: 6 visitors (%d queued), 2 sessions, each leaves 2s after its first keyframe", r.Queued), r)
		rows = append(rows, row{"queue hand-over: session end (visitor left, idle_timeout 1s, next dispatch) to the next visitor's first keyframe", fmt.Sprintf("%s | %d | - | -", r.HandoverMS.ms(), r.HandoverMS.N)})
	}
	if phase("cold") {
		g := pool(0, 1)
		for i := 0; i < 5; i++ {
			c.server.eventually(3*time.Minute, "the pool to be empty", func() bool { return len(g.sessions(0)) == 0 })
			r := runVisitors(t, g.urls[0]+gwPage, "-n", "1", "-watch", "1s", "-timeout", "3m")
			if r.OK != 1 || len(r.Visits) != 1 {
				t.Fatalf("cold visitor %d: %+v", i, r.Errors)
			}
			cold = append(cold, coldMarks(t, c, r))
		}
	}

	if phase("handover-return") {
		// The same with return_to_pool: a session whose visitor left is
		// free again at once, no new dispatch.
		c.nomadOut("job", "run", "-detach", "-var", "pool=true", "-var", "streamer="+bin("streamer"), "-var", "clip="+clip,
			"-var", "idle_timeout=1s", "-var", "cpu=100", "-var", "return_to_pool=true", "../example/session.nomad.hcl")
		stopSessions(t, c) // the earlier version's would be claimed first
		g := pool(2, 2)
		r := runVisitors(t, g.urls[0]+gwPage, "-arrival", "queue", "-n", "6", "-hold", "2s", "-watch", "2s", "-timeout", "5m")
		add(fmt.Sprintf("queue, return_to_pool: 6 visitors (%d queued), 2 sessions, each leaves 2s after its first keyframe", r.Queued), r)
		rows = append(rows, row{"queue hand-over, return_to_pool: visitor left to the next visitor's first keyframe", fmt.Sprintf("%s | %d | - | -", r.HandoverMS.ms(), r.HandoverMS.N)})
	}
}

// stopSessions stops the gateway (it would dispatch replacements) and
// every session of the pool job, and waits until they are gone.
func stopSessions(t *testing.T, c *cluster) {
	t.Helper()
	_, _ = c.server.nomadErr("job", "stop", "-purge", "pixelstream-gateway")
	var kids []struct{ ID, Status string }
	_ = c.server.api("/v1/jobs?prefix=pixelstream-session/dispatch-", &kids)
	var stopped []string
	for _, k := range kids {
		if k.Status != "dead" {
			_, _ = c.server.nomadErr("job", "stop", "-detach", k.ID)
			stopped = append(stopped, k.ID)
		}
	}
	c.server.eventually(3*time.Minute, "the earlier sessions to stop", func() bool {
		var now []struct{ ID, Status string }
		_ = c.server.api("/v1/jobs?prefix=pixelstream-session/dispatch-", &now)
		for _, k := range now {
			if k.Status != "dead" && slices.Contains(stopped, k.ID) {
				return false
			}
		}
		return true
	})
}

// chromiumVisitors opens k gateway visitors in Chromium at once and
// returns arrival to first decoded frame, and the medians of the page's
// moments (loaded, listed, connected, frame; ms after navigation).
func chromiumVisitors(t *testing.T, b *chromium, url string, k int) (msDist, map[string]float64) {
	t.Helper()
	type marks map[string]float64
	got := make([]marks, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	tag := time.Now().UnixNano()
	for i := 0; i < k; i++ {
		wg.Go(func() {
			var r struct{ NavigatedAt int64 }
			name := fmt.Sprintf("cr%d-%d", tag, i)
			if errs[i] = b.call(3*time.Minute, "open", map[string]any{"name": name, "url": url}, &r); errs[i] != nil {
				return
			}
			var s streamState
			if errs[i] = b.call(3*time.Minute, "play", map[string]any{"name": name, "frames": 3, "timeoutMs": 170000}, &s); errs[i] == nil && s.FirstFrameAt == 0 {
				errs[i] = fmt.Errorf("%s: no frame: %s", name, s)
			}
			m := marks{"frame": float64(s.FirstFrameAt - r.NavigatedAt)}
			for key, at := range map[string]int64{"loaded": s.PageLoadedAt, "listed": s.EventTimes["streamerListMessage"], "connected": s.EventTimes["webRtcConnected"]} {
				if at > 0 {
					m[key] = float64(at - r.NavigatedAt)
				}
			}
			got[i] = m
			_ = b.call(30*time.Second, "close", map[string]any{"name": name}, nil)
		})
	}
	wg.Wait()
	values := map[string][]float64{}
	for i, err := range errs {
		if err != nil {
			t.Logf("Chromium visitor %d: %v", i, err)
			continue
		}
		for k, v := range got[i] {
			values[k] = append(values[k], v)
		}
	}
	q := func(v []float64, p float64) float64 {
		if len(v) == 0 {
			return 0
		}
		sort.Float64s(v)
		return v[min(len(v)-1, int(p*float64(len(v))+0.999999)-1)]
	}
	med := map[string]float64{}
	for k, v := range values {
		med[k] = q(v, .5)
	}
	ff := values["frame"]
	return msDist{P50: q(ff, .5), P95: q(ff, .95), P99: q(ff, .99), N: len(ff)}, med
}

// coldRun is one cold start's moments, in ms after the visitor arrived.
type coldRun map[string]float64

// The moments of a cold start, in order, and where each comes from.
var coldColumns = []struct{ key, label string }{
	{"dispatched", "gateway dispatched the session job (gateway log)"},
	{"received", "Nomad: evaluation and placement, alloc received"},
	{"setup", "Nomad: task setup (alloc dir, executor)"},
	{"display", "driver: Xvfb display ready"},
	{"audio", "driver: audio (dbus, PipeWire) ready"},
	{"signalling", "driver: signalling + TURN listening"},
	{"app", "driver: app started"},
	{"stream", "stand-in: streamer identified (stream ready)"},
	{"started", "Nomad: task started (StartTask returned)"},
	{"registered", "gateway: saw the service registration"},
	{"confirmed", "gateway: Nomad says the allocation runs (blocking query)"},
	{"free", "gateway: the session's claim state says free and ready (blocking read)"},
	{"assigned", "gateway: saw it ready, claimed, told the visitor (queue event)"},
	{"page", "visitor: page loaded"},
	{"websocket", "visitor: signalling WebSocket open"},
	{"offer", "visitor: offer received"},
	{"dtls_connected", "visitor: ICE + DTLS connected"},
	{"first_keyframe", "visitor: first complete keyframe"},
}

var gwLogLine = regexp.MustCompile(`^(\S+) \[INFO\]\s+gateway[.\w]*: (dispatched a session|session registered|session confirmed|session free and ready)[^:]*: .*?(job|alloc)=(\S+)`)

// coldMarks joins one cold visitor's times with the session's task events
// and the gateway's log (one machine, one clock).
func coldMarks(t *testing.T, c *cluster, r visitorsReport) coldRun {
	t.Helper()
	v := r.Visits[0]
	m := coldRun{}
	rel := func(at time.Time) float64 { return float64(at.UnixMilli() - v.ArrivedMS) }
	var allocs []struct {
		ID, JobID  string
		CreateTime int64
	}
	_ = c.server.api("/v1/allocations", &allocs)
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].CreateTime > allocs[j].CreateTime })
	var allocID, jobID string
	for _, a := range allocs {
		if strings.HasPrefix(a.JobID, "pixelstream-session/dispatch-") && a.CreateTime/1e6 >= v.ArrivedMS-1000 {
			allocID, jobID = a.ID, a.JobID
		}
	}
	if allocID == "" {
		t.Fatalf("no session allocation created after the cold visitor arrived")
	}
	var d struct {
		TaskStates map[string]struct {
			Events []struct {
				Type           string
				Time           int64
				DisplayMessage string
			}
		}
	}
	if err := c.server.api("/v1/allocation/"+allocID, &d); err != nil {
		t.Fatal(err)
	}
	for _, e := range d.TaskStates["game"].Events {
		for _, col := range startupColumns {
			if col.event == "" || m[col.key] != 0 {
				continue
			}
			if e.Type == col.event || strings.HasPrefix(e.DisplayMessage, col.event) {
				m[col.key] = rel(time.Unix(0, e.Time))
			}
		}
	}
	for _, al := range c.server.allocs("pixelstream-gateway") {
		if al.ClientStatus != "running" {
			continue
		}
		logs, _ := c.server.nomadErr("alloc", "logs", "-stderr", al.ID)
		for _, l := range strings.Split(logs, "\n") {
			g := gwLogLine.FindStringSubmatch(l)
			if g == nil || (g[4] != jobID && g[4] != allocID) {
				continue
			}
			at, err := time.Parse("2006-01-02T15:04:05.000Z0700", g[1])
			if err != nil {
				continue
			}
			key := map[string]string{"dispatched a session": "dispatched", "session registered": "registered",
				"session confirmed": "confirmed", "session free and ready": "free"}[g[2]]
			m[key] = rel(at)
		}
	}
	if v.AssignedMS > 0 {
		m["assigned"] = float64(v.AssignedMS - v.ArrivedMS)
	}
	for k, at := range v.AtMS {
		m[k] = at
	}
	return m
}

func printColdTable(runs []coldRun) {
	median := func(key string) float64 {
		var v []float64
		for _, r := range runs {
			if x, ok := r[key]; ok && x != 0 {
				v = append(v, x)
			}
		}
		if len(v) == 0 {
			return -1
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	total := median("first_keyframe")
	var firsts []float64
	for _, r := range runs {
		firsts = append(firsts, r["first_keyframe"])
	}
	sort.Float64s(firsts)
	fmt.Printf("| cold start through the gateway (visitor arrives, no free session; median of %d; first keyframe p50 %.0f ms, max %.0f ms) | at (ms) | stage (ms) | share |\n",
		len(runs), total, firsts[len(firsts)-1])
	fmt.Println("|---|---|---|---|")
	// In the order they happened (the gateway logs a dispatch after Nomad
	// answered it, so Nomad's first event can come before that line).
	type mark struct {
		label string
		at    float64
	}
	var marks []mark
	for _, col := range coldColumns {
		if at := median(col.key); at >= 0 {
			marks = append(marks, mark{col.label, at})
		} else {
			fmt.Printf("| %s | - | - | - |\n", col.label)
		}
	}
	sort.SliceStable(marks, func(i, j int) bool { return marks[i].at < marks[j].at })
	prev := 0.0
	for _, m := range marks {
		stage := m.at - prev
		fmt.Printf("| %s | %.0f | %.0f | %.0f%% |\n", m.label, m.at, stage, 100*stage/total)
		prev = m.at
	}
}
