//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// chromium is Debian's headless Chromium driven by e2e/browser/player.mjs
// through playwright-core: one browser for the whole test, one isolated
// context per page. Calls are JSON lines; the script measures, the test
// asserts.
type chromium struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    chan reply
	stderr *lockedBuffer
	mu     sync.Mutex
	nextID int
}

type reply struct {
	ID     int             `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.buf.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func startChromium(t *testing.T) *chromium {
	t.Helper()
	return startChromiumEnv(t, nil)
}

// startChromiumEnv starts the browser with extra environment variables (a
// HOME whose NSS database trusts a test CA, say).
func startChromiumEnv(t *testing.T, env []string) *chromium {
	t.Helper()
	return startChromiumIn(t, nil, env)
}

// startChromiumIn starts the browser inside a network namespace of the
// test's own (nil: the host's); the test drives it over pipes, so only the
// page's traffic is in the namespace.
func startChromiumIn(t *testing.T, ns *netns, env []string) *chromium {
	t.Helper()
	dir := filepath.Join(repo, "e2e", "browser")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core missing: run `npm --prefix e2e/browser ci` first (%v)", err)
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatalf("Debian's chromium missing: apt-get install chromium (%v)", err)
	}
	c := &chromium{t: t, out: make(chan reply, 16), stderr: &lockedBuffer{}}
	c.cmd = exec.Command("node", filepath.Join(dir, "player.mjs"))
	if ns != nil {
		c.cmd = ns.command("node", filepath.Join(dir, "player.mjs"))
	}
	c.cmd.Dir = dir
	if env != nil {
		c.cmd.Env = append(os.Environ(), env...)
	}
	c.cmd.Stderr = c.stderr
	var err error
	if c.in, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			var r reply
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				fmt.Fprintf(c.stderr, "unparsable line from player.mjs: %s\n", sc.Text())
				continue
			}
			c.out <- r
		}
		close(c.out)
	}()
	// The script's greeting (id 0) says the browser is up.
	select {
	case r, ok := <-c.out:
		if !ok || !r.OK {
			t.Fatalf("chromium did not start: %s\n%s", r.Error, c.stderr.tail(40))
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("chromium did not start within 60s\n%s", c.stderr.tail(40))
	}
	t.Cleanup(func() {
		_ = c.in.Close()
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = c.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("browser log (last 150 lines):\n%s", c.stderr.tail(150))
		}
	})
	return c
}

// call runs one operation in the browser and decodes its result into out.
func (c *chromium) call(timeout time.Duration, op string, args map[string]any, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	req := map[string]any{"id": c.nextID, "op": op}
	for k, v := range args {
		req[k] = v
	}
	b, _ := json.Marshal(req)
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("browser %s: write request: %w", op, err)
	}
	deadline := time.After(timeout)
	for {
		select {
		case r, ok := <-c.out:
			if !ok {
				return fmt.Errorf("browser %s: player.mjs exited\n%s", op, c.stderr.tail(40))
			}
			if r.ID != c.nextID {
				continue // the late answer to an earlier call that timed out
			}
			if !r.OK {
				return fmt.Errorf("browser %s: %s", op, r.Error)
			}
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(r.Result, out); err != nil {
				return fmt.Errorf("browser %s: decode %s: %w", op, r.Result, err)
			}
			return nil
		case <-deadline:
			return fmt.Errorf("browser %s: no answer within %s", op, timeout)
		}
	}
}

// page is one player page in its own browser context.
type page struct {
	c    *chromium
	name string
}

// streamState is the page's view of the stream (see streamState in player.mjs).
type streamState struct {
	Presented        int              `json:"presented"`
	FirstFrameAt     int64            `json:"firstFrameAt"`
	LastFrameAt      int64            `json:"lastFrameAt"`
	TotalVideoFrames int              `json:"totalVideoFrames"`
	FramesDecoded    int              `json:"framesDecoded"`
	VideoWidth       int              `json:"videoWidth"`
	VideoHeight      int              `json:"videoHeight"`
	Paused           bool             `json:"paused"`
	HasStream        bool             `json:"hasStream"`
	Events           []string         `json:"events"`
	EventTimes       map[string]int64 `json:"eventTimes"`
	Peers            []string         `json:"peers"`
	PageLoadedAt     int64            `json:"pageLoadedAt"`
	Now              int64            `json:"now"`
}

func (s streamState) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (s streamState) saw(event string) bool {
	for _, e := range s.Events {
		if e == event {
			return true
		}
	}
	return false
}

// open loads url in a fresh context and returns the HTTP status of the page
// and when navigation started (Unix ms).
func (c *chromium) open(t *testing.T, name, url string) (*page, int, int64) {
	t.Helper()
	var r struct {
		Status      int   `json:"status"`
		NavigatedAt int64 `json:"navigatedAt"`
	}
	if err := c.call(60*time.Second, "open", map[string]any{"name": name, "url": url}, &r); err != nil {
		t.Fatal(err)
	}
	return &page{c: c, name: name}, r.Status, r.NavigatedAt
}

func (p *page) close(t *testing.T) {
	t.Helper()
	if err := p.c.call(30*time.Second, "close", map[string]any{"name": p.name}, nil); err != nil {
		t.Error(err)
	}
}

// play waits until the page presents frames of decoded video.
func (p *page) play(t *testing.T) streamState {
	t.Helper()
	s, ok := p.playing(t)
	if !ok {
		t.Fatalf("page %s does not play within 60s: %s", p.name, s)
	}
	return s
}

func (p *page) playing(t *testing.T) (streamState, bool) {
	t.Helper()
	var s streamState
	if err := p.c.call(70*time.Second, "play", map[string]any{"name": p.name, "frames": 3, "timeoutMs": 60000}, &s); err != nil {
		t.Fatal(err)
	}
	return s, s.Presented >= 3 && s.VideoWidth > 0
}

func (p *page) state(t *testing.T) streamState {
	t.Helper()
	var s streamState
	if err := p.c.call(30*time.Second, "state", map[string]any{"name": p.name}, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// advances waits until both the decoder and the video element have moved n
// frames past from, and returns the state that shows it.
func (p *page) advances(t *testing.T, from streamState, n int, within time.Duration, what string) streamState {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := p.state(t)
		if s.Presented >= from.Presented+n && s.FramesDecoded >= from.FramesDecoded+n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("page %s: video did not advance %d frames within %s %s: from %s to %s", p.name, n, within, what, from, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sample returns the average colour around each point of the video.
func (p *page) sample(t *testing.T, points ...[2]int) [][3]int {
	t.Helper()
	var out [][3]int
	if err := p.c.call(30*time.Second, "sample", map[string]any{"name": p.name, "points": points, "r": 2}, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitColour polls the video until the point shows the colour.
func (p *page) waitColour(t *testing.T, at [2]int, want colour, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := p.sample(t, at)[0]
		if want.matches(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("page %s: %s: pixel %v is %v after %s, want %s", p.name, what, at, got, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *page) click(t *testing.T, x, y int) {
	t.Helper()
	if err := p.c.call(30*time.Second, "click", map[string]any{"name": p.name, "x": x, "y": y}, nil); err != nil {
		t.Fatal(err)
	}
}

func (p *page) key(t *testing.T, key string) {
	t.Helper()
	if err := p.c.call(30*time.Second, "key", map[string]any{"name": p.name, "key": key}, nil); err != nil {
		t.Fatal(err)
	}
}

type candidatePair struct {
	State         string `json:"state"`
	PairState     string `json:"pairState"`
	Nominated     bool   `json:"nominated"`
	LocalType     string `json:"localType"`
	LocalProtocol string `json:"localProtocol"`
	RelayProtocol string `json:"relayProtocol"`
	LocalURL      string `json:"localUrl"`
	RemoteType    string `json:"remoteType"`
	RemoteAddress string `json:"remoteAddress"`
}

func (p *page) pairs(t *testing.T) []candidatePair {
	t.Helper()
	var out []candidatePair
	if err := p.c.call(30*time.Second, "pairs", map[string]any{"name": p.name}, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

type audioLevel struct {
	RMS                   float64 `json:"rms"`
	Samples               int     `json:"samples"`
	TrackState            string  `json:"trackState"`
	TrackMuted            bool    `json:"trackMuted"`
	ContextState          string  `json:"contextState"`
	StatsAudioLevel       float64 `json:"statsAudioLevel"`
	StatsTotalAudioEnergy float64 `json:"statsTotalAudioEnergy"`
}

func (p *page) audio(t *testing.T) audioLevel {
	t.Helper()
	var out audioLevel
	if err := p.c.call(30*time.Second, "audio", map[string]any{"name": p.name, "ms": 1500}, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// websocket opens a WebSocket to url from inside the page.
func (p *page) websocket(t *testing.T, url string) (opened bool, code int) {
	t.Helper()
	var r struct {
		Opened bool `json:"opened"`
		Code   int  `json:"code"`
	}
	if err := p.c.call(30*time.Second, "websocket", map[string]any{"name": p.name, "url": url}, &r); err != nil {
		t.Fatal(err)
	}
	return r.Opened, r.Code
}

// ended waits until the page shows that its stream ended.
func (p *page) ended(t *testing.T) streamState {
	t.Helper()
	var s streamState
	if err := p.c.call(50*time.Second, "ended", map[string]any{"name": p.name, "timeoutMs": 40000}, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// colour is an expected colour with a per-channel tolerance, for pixels
// that went through VP8 and back.
type colour struct {
	name string
	rgb  [3]int
	tol  int
}

var (
	red        = colour{"red #FF0000 (reference patch)", [3]int{255, 0, 0}, 60}
	green      = colour{"green #00FF00 (click marker)", [3]int{0, 255, 0}, 60}
	blue       = colour{"blue #0000FF (key seen)", [3]int{0, 0, 255}, 60}
	keyIdle    = colour{"grey #606060 (no key yet)", [3]int{0x60, 0x60, 0x60}, 30}
	background = colour{"background #202020", [3]int{0x20, 0x20, 0x20}, 30}
)

func (c colour) matches(got [3]int) bool {
	for i := range got {
		if d := got[i] - c.rgb[i]; d > c.tol || d < -c.tol {
			return false
		}
	}
	return true
}

func (c colour) String() string { return fmt.Sprintf("%s ±%d", c.name, c.tol) }

// session is one running demo job (example/demo.nomad.hcl, or a variant of
// it with its own name, resolution and player token).
type session struct {
	job, alloc    string
	width, height int
	token         string
	http, turn    int
	display       string // ":N", from the session's "Display :N ready" event
}

// demoVariant writes example/demo.nomad.hcl under another job name, with
// an auth block when token is set.
func demoVariant(t *testing.T, job, token string) string {
	t.Helper()
	return demoVariantWith(t, job, token, "", "")
}

// demoVariantWith is demoVariant with config lines added to the task's
// config block and stanzas (an artifact, say) added to the task.
func demoVariantWith(t *testing.T, job, token, config, task string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "example", "demo.nomad.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	replace := func(old, new string) {
		if !strings.Contains(src, old) {
			t.Fatalf("example/demo.nomad.hcl no longer contains %q; update demoVariant", old)
		}
		src = strings.Replace(src, old, new, 1)
	}
	replace(`job "pixelstream-demo"`, fmt.Sprintf("job %q", job))
	if token != "" {
		replace(`turn_port  = "turn"`, fmt.Sprintf("turn_port  = \"turn\"\n        auth {\n          token = %q\n        }", token))
	}
	if config != "" {
		replace(`turn_port  = "turn"`, "turn_port  = \"turn\"\n"+config)
	}
	if task != "" {
		replace("      resources {", task+"\n      resources {")
	}
	path := filepath.Join(t.TempDir(), job+".nomad.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// submitSession runs a demo variant without waiting for it.
func submitSession(t *testing.T, a *agent, job string, width, height int, token string) *session {
	t.Helper()
	a.nomad("job", "run", "-detach", "-var", "streamer="+bin("streamer"),
		"-var", fmt.Sprintf("resolution=%dx%d", width, height), demoVariant(t, job, token))
	return &session{job: job, width: width, height: height, token: token}
}

// wait waits until the session's stream is ready and reads its ports and
// display.
func (s *session) wait(t *testing.T, a *agent) {
	t.Helper()
	s.alloc = a.waitAlloc(s.job, "running").ID
	d := a.allocDetail(s.alloc)
	s.http, s.turn = d.port("http"), d.port("turn")
	if s.http == 0 || s.turn == 0 {
		t.Fatalf("allocation %s lacks the http or turn port: %+v", s.alloc, d.AllocatedResources)
	}
	a.waitReady(s.http, "")
	a.eventually(30*time.Second, "the session's display event", func() bool {
		for _, e := range a.allocDetail(s.alloc).TaskStates["game"].Events {
			if m := displayEvent.FindStringSubmatch(e.DisplayMessage); m != nil {
				s.display = m[1]
				return true
			}
		}
		return false
	})
}

// dumpLogs logs the tail of the session's output: the app's (stdout) and
// the supervisor's with its display, audio, signalling and TURN (stderr).
func (s *session) dumpLogs(t *testing.T, a *agent) {
	if s.alloc == "" {
		return
	}
	for _, stream := range []string{"-stdout", "-stderr"} {
		out, err := a.nomadErr("alloc", "logs", stream, "-tail", "-n", "40", s.alloc, "game")
		t.Logf("%s %s (%v):\n%s", s.job, stream, err, out)
	}
}

var displayEvent = regexp.MustCompile(`^Display (:\d+) ready`)

// url is the player page with the frontend set to connect and play by
// itself, muted (autoplay), with the mouse in hovering mode so a click
// lands where the pointer is (locked mode needs a pointer lock).
func (s *session) url(withToken bool, extra string) string {
	q := "?AutoConnect=true&AutoPlayVideo=true&StartVideoMuted=true&HoveringMouse=true" + extra
	if withToken {
		q += "&token=" + s.token
	}
	return fmt.Sprintf("http://127.0.0.1:%d/%s", s.http, q)
}

// allocDetail is the part of /v1/allocation/<id> the browser tests read.
type allocDetail struct {
	ID                 string
	ClientStatus       string
	AllocatedResources struct {
		Shared struct {
			Ports []struct {
				Label string
				Value int
			}
		}
	}
	TaskStates map[string]struct {
		State    string
		Restarts int
		Events   []taskEvent
	}
}

type taskEvent struct {
	Type           string
	Time           int64 // Unix ns; the session's own time for its events
	DisplayMessage string
}

func (a *agent) allocDetail(id string) allocDetail {
	a.t.Helper()
	var d allocDetail
	if err := a.api("/v1/allocation/"+id, &d); err != nil {
		a.t.Fatal(err)
	}
	return d
}

func (d allocDetail) port(label string) int {
	for _, p := range d.AllocatedResources.Shared.Ports {
		if p.Label == label {
			return p.Value
		}
	}
	return 0
}

// proc is a process of a session, with the command line it had, so a
// recycled pid is not mistaken for a survivor.
type proc struct {
	pid  int
	args string
}

func (p proc) survives() bool {
	return alive(p.pid) && strings.Join(cmdline(p.pid), " ") == p.args
}

// sessionProcs lists the session's processes: its supervisor, everything
// below it, and anything else whose environment points into the session's
// runtime dir (a daemon that left the tree would still be found).
func sessionProcs(a *agent, allocID string) []proc {
	rt := filepath.Join(a.dir, "rt", allocID[:8]+"-")
	parent := map[int]int{}
	super := 0
	for _, pid := range allPids() {
		parent[pid] = ppid(pid)
		args := cmdline(pid)
		if len(args) > 1 && args[1] == "session" && strings.Contains(strings.Join(args, " "), rt) {
			super = pid
		}
	}
	in := map[int]bool{}
	if super != 0 {
		in[super] = true
		for changed := true; changed; {
			changed = false
			for pid, pp := range parent {
				if !in[pid] && in[pp] {
					in[pid], changed = true, true
				}
			}
		}
	}
	for pid := range parent {
		if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil && bytes.Contains(env, []byte(rt)) {
			in[pid] = true
		}
	}
	var out []proc
	for pid := range in {
		if args := cmdline(pid); len(args) > 0 {
			out = append(out, proc{pid, strings.Join(args, " ")})
		}
	}
	return out
}

func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// Points of the stand-in's scene (example/streamer/README.md): the reference
// patch is 64x64 at (112,32), the key block 64x64 at (208,32); clicks go
// below the middle band (the session's name in large type), away from the
// moving bar at the bottom, for both sizes the tests use (640x480, 512x384).
var (
	refPatch   = [2]int{144, 64}
	keyBlock   = [2]int{240, 64}
	clickPoint = [2]int{400, 320}
	farPoint   = [2]int{440, 360} // background, even with the marker at clickPoint
)

const playerToken = "e2e-browser-token-0123456789"

// TestBrowserSessions is issue 5's "what the e2e tests must show", through
// a real agent and Debian's headless Chromium. One agent and one browser
// serve every scenario; the subtests run in order and build on each other
// (the pages opened early keep playing through the crash and the stop).
func TestBrowserSessions(t *testing.T) {
	a := startAgent(t)
	br := startChromium(t)
	parent := t
	// Two sessions on the node: the open demo, and one that needs a token.
	one := submitSession(t, a, "stream-one", 640, 480, "")
	two := submitSession(t, a, "stream-two", 512, 384, playerToken)
	step := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			a.t = t
			defer func() {
				a.t = parent
				if t.Failed() {
					for _, s := range []*session{one, two} {
						s.dumpLogs(t, a)
					}
				}
			}()
			f(t)
		})
	}

	one.wait(t, a)
	two.wait(t, a)

	var p1, p2, p3 *page

	step("video: the page plays the job's resolution and the stand-in's picture", func(t *testing.T) {
		var status int
		p1, status, _ = br.open(t, "one-a", one.url(false, ""))
		if status != 200 {
			t.Fatalf("player page answered %d", status)
		}
		s := p1.play(t)
		if s.VideoWidth != one.width || s.VideoHeight != one.height {
			t.Errorf("video is %dx%d, the job's resolution is %dx%d", s.VideoWidth, s.VideoHeight, one.width, one.height)
		}
		p1.advances(t, s, 30, 30*time.Second, "while playing")
		got := p1.sample(t, refPatch, farPoint)
		if !red.matches(got[0]) {
			t.Errorf("reference patch at %v is %v, want %s", refPatch, got[0], red)
		}
		if !background.matches(got[1]) {
			t.Errorf("background at %v is %v, want %s", farPoint, got[1], background)
		}
	})

	step("input: a click puts the marker there and a key press shows", func(t *testing.T) {
		requirePage(t, p1)
		before := p1.sample(t, clickPoint, keyBlock)
		if green.matches(before[0]) || !keyIdle.matches(before[1]) {
			t.Fatalf("before any input: click point %v, key block %v; want background and %s", before[0], before[1], keyIdle)
		}
		p1.click(t, clickPoint[0], clickPoint[1])
		p1.waitColour(t, clickPoint, green, 15*time.Second, "marker after the click")
		if got := p1.sample(t, farPoint)[0]; !background.matches(got) {
			t.Errorf("40 px from the click the video is %v, want %s: the marker is not where the click was", got, background)
		}
		p1.key(t, "KeyA")
		p1.waitColour(t, keyBlock, blue, 15*time.Second, "key block after pressing A")
	})

	step("audio: the received track is not silent", func(t *testing.T) {
		requirePage(t, p1)
		lvl := p1.audio(t)
		t.Logf("audio: %+v", lvl)
		// The stand-in plays a 440 Hz sine at ffmpeg's default amplitude
		// (1/8 full scale, RMS about 0.09); silence is 0.
		if lvl.RMS < 0.01 {
			t.Fatalf("received audio is silent through WebAudio: %+v", lvl)
		}
	})

	step("relay only: ForceTURN plays over a TURN relay pair", func(t *testing.T) {
		var status int
		p2, status, _ = br.open(t, "one-relay", one.url(false, "&ForceTURN=true"))
		if status != 200 {
			t.Fatalf("player page answered %d", status)
		}
		s, ok := p2.playing(t)
		if !ok {
			t.Logf("candidate pairs: %+v", p2.pairs(t))
			t.Logf("TURN metrics:\n%s", metrics(t, one.http, "pixelstream_turn"))
			t.Fatalf("page with ForceTURN does not play within 60s: %s", s)
		}
		p2.advances(t, s, 30, 30*time.Second, "over the relay")
		pairs := p2.pairs(t)
		relayed := false
		for _, pr := range pairs {
			relayed = relayed || (pr.State == "connected" && pr.LocalType == "relay")
		}
		if !relayed {
			t.Fatalf("no connected peer uses a relay candidate: %+v", pairs)
		}
		t.Logf("selected pairs: %+v", pairs)
		// The session's own TURN server carried the media.
		relayedBytes := metrics(t, one.http, `pixelstream_turn_relayed_bytes_total{direction="peer_to_client"}`)
		if f := strings.Fields(relayedBytes); len(f) != 2 || f[1] == "0" {
			t.Errorf("the session's TURN server relayed no media to the player: %q", relayedBytes)
		}
	})

	step("two players at once on one session", func(t *testing.T) {
		requirePage(t, p1)
		requirePage(t, p2)
		s1, s2 := p1.state(t), p2.state(t)
		p1.advances(t, s1, 30, 30*time.Second, "with a second player")
		p2.advances(t, s2, 30, 30*time.Second, "with a second player")
		// Both watch the same display: the first player's click shows for the second.
		if got := p2.sample(t, clickPoint, refPatch); !green.matches(got[0]) || !red.matches(got[1]) {
			t.Fatalf("second player sees %v at the click point and %v at the patch, want %s and %s", got[0], got[1], green, red)
		}
	})

	step("access: a token is required for the page and the WebSocket", func(t *testing.T) {
		noToken, status, _ := br.open(t, "two-no-token", two.url(false, ""))
		if status != 401 {
			t.Errorf("page without the token answered %d, want 401", status)
		}
		wsURL := fmt.Sprintf("ws://127.0.0.1:%d/", two.http)
		if opened, code := noToken.websocket(t, wsURL); opened {
			t.Errorf("WebSocket without the token opened (close code %d)", code)
		}
		noToken.close(t)
		if _, resp, err := websocket.DefaultDialer.Dial(wsURL, nil); err == nil || resp == nil || resp.StatusCode != 401 {
			t.Errorf("WebSocket upgrade without the token: response %v, error %v; want HTTP 401", resp, err)
		}
		var p *page
		p, status, _ = br.open(t, "two-token", two.url(true, ""))
		if status != 200 {
			t.Fatalf("page with the token answered %d", status)
		}
		p.play(t)
		p3 = p
	})

	step("two sessions on one node: own display, own ports, both play", func(t *testing.T) {
		requirePage(t, p1)
		requirePage(t, p3)
		if one.display == two.display || one.http == two.http || one.turn == two.turn {
			t.Errorf("sessions share a display or a port: one %s http %d turn %d, two %s http %d turn %d",
				one.display, one.http, one.turn, two.display, two.http, two.turn)
		}
		s1, s3 := p1.state(t), p3.state(t)
		if s3.VideoWidth != two.width || s3.VideoHeight != two.height {
			t.Errorf("second session's video is %dx%d, its job says %dx%d", s3.VideoWidth, s3.VideoHeight, two.width, two.height)
		}
		p1.advances(t, s1, 30, 30*time.Second, "beside another session")
		p3.advances(t, s3, 30, 30*time.Second, "beside another session")
		// Its own display: the patch is there, the first session's marker is not.
		if got := p3.sample(t, refPatch, clickPoint); !red.matches(got[0]) || !background.matches(got[1]) {
			t.Errorf("second session shows %v at the patch and %v at the first session's click point, want %s and %s",
				got[0], got[1], red, background)
		}
	})

	step("recovery: the streams play on through an agent and plugin crash", func(t *testing.T) {
		requirePage(t, p1)
		requirePage(t, p3)
		s1, s3 := p1.state(t), p3.state(t)
		if pid := a.kill9(); pid == 0 {
			t.Fatal("plugin process not found")
		}
		p1.advances(t, s1, 60, 30*time.Second, "while the agent and plugin are dead")
		p3.advances(t, s3, 60, 30*time.Second, "while the agent and plugin are dead")
		a.start()
		for _, s := range []*session{one, two} {
			al := a.waitAlloc(s.job, "running")
			if al.ID != s.alloc || al.TaskStates["game"].Restarts != 0 {
				t.Errorf("%s: allocation %s with %d restarts after the agent restart, want %s with 0",
					s.job, al.ID, al.TaskStates["game"].Restarts, s.alloc)
			}
		}
		p1.advances(t, p1.state(t), 30, 30*time.Second, "after the agent restart")
		p3.advances(t, p3.state(t), 30, 30*time.Second, "after the agent restart")
	})

	step("stop: nomad job stop ends the stream in the browser and leaves nothing", func(t *testing.T) {
		requirePage(t, p1)
		procs := sessionProcs(a, one.alloc)
		var names []string
		for _, p := range procs {
			names = append(names, filepath.Base(strings.Fields(p.args)[0]))
		}
		for _, want := range []string{"nomad-driver-pixelstream", "Xvfb", "pipewire", "wireplumber", "streamer"} {
			if !slices.Contains(names, want) {
				t.Fatalf("the running session's processes %v lack %s; the leftover check would prove nothing", names, want)
			}
		}
		rtDirs, _ := filepath.Glob(filepath.Join(a.dir, "rt", one.alloc[:8]+"-*"))
		if len(rtDirs) != 1 {
			t.Fatalf("want one runtime dir of the session, found %v", rtDirs)
		}

		n := strings.TrimPrefix(one.display, ":")
		displayFiles := map[string]uint64{}
		// The session's /tmp is its task dir's tmp/ (its sandbox's root).
		tmp := filepath.Join(a.dir, "data", "alloc", one.alloc, "game", "tmp")
		socket := filepath.Join(tmp, ".X11-unix", "X"+n)
		id, ok := inode(socket)
		if !ok {
			t.Fatalf("the running session's display socket %s is missing; the leftover check would prove nothing", socket)
		}
		displayFiles[socket] = id
		// Xvfb -displayfd writes no lock file; should one appear, it must go too.
		if id, ok := inode(filepath.Join(tmp, ".X"+n+"-lock")); ok {
			displayFiles[filepath.Join(tmp, ".X"+n+"-lock")] = id
		}

		stopAt := time.Now()
		a.nomad("job", "stop", "-detach", one.job)
		for _, p := range []*page{p1, p2} {
			if p == nil {
				continue
			}
			s := p.ended(t)
			if !s.saw("webRtcDisconnected") && !s.saw("webRtcFailed") {
				t.Errorf("page %s did not notice the end of the stream: %s", p.name, s)
			}
			t.Logf("page %s noticed the end %s after the stop: events %v, peers %v", p.name,
				time.Since(stopAt).Round(time.Millisecond), s.Events, s.Peers)
		}
		a.waitAlloc(one.job, "complete")
		t.Logf("allocation complete %s after the stop", time.Since(stopAt).Round(time.Millisecond))
		for _, e := range a.allocDetail(one.alloc).TaskStates["game"].Events {
			if at := time.Unix(0, e.Time); at.After(stopAt.Add(-time.Second)) {
				t.Logf("  %+8s  %s: %s", at.Sub(stopAt).Round(time.Millisecond), e.Type, e.DisplayMessage)
			}
		}
		frozen := p1.state(t)
		a.eventually(30*time.Second, "the session's processes to exit", func() bool {
			for _, p := range procs {
				if p.survives() {
					return false
				}
			}
			return true
		})
		for p, id := range displayFiles {
			if now, ok := inode(p); ok && now == id {
				t.Errorf("display file %s left behind", p)
			}
		}
		a.eventually(30*time.Second, "the session's runtime dir to be removed", func() bool {
			_, err := os.Stat(rtDirs[0])
			return os.IsNotExist(err)
		})
		if s := p1.state(t); s.Presented != frozen.Presented {
			t.Errorf("page still presents frames after the session ended: %d then %d", frozen.Presented, s.Presented)
		}
		// The other session is untouched.
		if p3 != nil {
			p3.advances(t, p3.state(t), 30, 30*time.Second, "after the other session stopped")
		}
	})
}

func requirePage(t *testing.T, p *page) {
	t.Helper()
	if p == nil {
		t.Skip("the page this step needs was not opened (an earlier step failed)")
	}
}

// metrics returns the session's Prometheus lines that start with prefix.
func metrics(t *testing.T, port int, prefix string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func inode(path string) (uint64, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ino, true
}
