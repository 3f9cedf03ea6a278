package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/display"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// waitLong bounds waits for media: ICE, the encoder's start and a keyframe
// on a loaded two-core CI machine.
const waitLong = 30 * time.Second

// Test stream size: small, so encoding stays cheap.
const testW, testH = 320, 240

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// streamerBinary builds the stand-in once per test run.
func streamerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "standin-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "streamer")
		args := []string{"build", "-o", binPath}
		if os.Getenv("STANDIN_RACE") == "1" {
			args = append(args, "-race") // the stand-in's own data races, not just the test's
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build the stand-in: %v", buildErr)
	}
	return binPath
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install the packages in .ci/apt-streamer.txt and xvfb (%v)", tool, err)
		}
	}
}

func startDisplay(t *testing.T) *display.Display {
	t.Helper()
	requireTools(t, "Xvfb", "ffmpeg")
	if err := display.EnsureSocketDir(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	d, err := display.Start(ctx, display.Config{XvfbPath: "Xvfb", Width: testW, Height: testH, Depth: 24,
		AuthFile: filepath.Join(t.TempDir(), "xauth"), Log: io.Discard})
	if err != nil {
		t.Fatalf("start Xvfb: %v", err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	return d
}

// identified collects the signalling server's StreamerIdentified events.
type identified struct {
	mu  sync.Mutex
	ids []string
	ch  chan struct{}
}

func startSignalling(t *testing.T, streamerListen string, ev *identified, configure ...func(*signalling.Config)) *playerhttp.Signalling {
	t.Helper()
	if streamerListen == "" {
		streamerListen = "127.0.0.1:0"
	}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: io.Discard})
	cfg := signalling.Config{StreamerListen: streamerListen, Logger: logger}
	if ev != nil {
		cfg.Hooks.Event = func(e signalling.Event) {
			if e.Kind != signalling.StreamerIdentified {
				return
			}
			ev.mu.Lock()
			ev.ids = append(ev.ids, e.StreamerID)
			ev.mu.Unlock()
			select {
			case ev.ch <- struct{}{}:
			default:
			}
		}
	}
	for _, f := range configure {
		f(&cfg)
	}
	s, err := playerhttp.Start(cfg, playerhttp.Config{Listen: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatalf("start signalling: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

func newIdentified() *identified { return &identified{ch: make(chan struct{}, 1)} }

// wait returns once n identifications have been seen.
func (ev *identified) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitLong)
	for {
		ev.mu.Lock()
		got := len(ev.ids)
		ev.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ev.ch:
		case <-deadline:
			t.Fatalf("streamer identified %d times, want %d", got, n)
		}
	}
}

// logBuffer collects the stand-in's log and lets tests wait for a line.
type logBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	select {
	case l.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitLine waits for a log line holding every one of parts.
func (l *logBuffer) waitLine(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.After(waitLong)
	for {
		for _, line := range strings.Split(l.String(), "\n") {
			if containsAll(line, parts) {
				return line
			}
		}
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("no log line with %q in the stand-in's output:\n%s", parts, l.String())
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// streamerProc is the stand-in running as its own process, as Nomad runs it.
type streamerProc struct {
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{}
}

func startStreamer(t *testing.T, d *display.Display, url string, env []string, args ...string) *streamerProc {
	t.Helper()
	all := append([]string{"-RenderOffScreen", "-Vulkan", "-PixelStreamingURL=" + url, "-ForceRes", "-AudioMixer"}, args...)
	cmd := exec.Command(streamerBinary(t), all...)
	cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "STANDIN_LOG_LEVEL=debug"}, d.Env()...), env...)
	p := &streamerProc{cmd: cmd, log: &logBuffer{changed: make(chan struct{}, 1)}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the stand-in: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() || testing.Verbose() {
			t.Logf("stand-in output:\n%s", p.log.String())
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit code.
func (p *streamerProc) stop(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(waitLong):
		t.Fatalf("the stand-in did not exit within %v of SIGTERM", waitLong)
	}
	return p.cmd.ProcessState.ExitCode()
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command, which is in parentheses and may hold spaces.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+2:])
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

func alive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	rest := string(stat[bytes.LastIndexByte(stat, ')')+2:])
	return !strings.HasPrefix(rest, "Z")
}

// openDisplay connects the test itself to the X display.
func openDisplay(t *testing.T, d *display.Display) *xgb.Conn {
	t.Helper()
	for _, kv := range d.Env() {
		if v, ok := strings.CutPrefix(kv, "XAUTHORITY="); ok {
			t.Setenv("XAUTHORITY", v)
		}
	}
	conn, err := xgb.NewConnDisplay(d.Name())
	if err != nil {
		t.Fatalf("open display: %v", err)
	}
	return conn
}

// keysDown counts the keys the X server has down.
func keysDown(t *testing.T, d *display.Display) int {
	t.Helper()
	conn := openDisplay(t, d)
	defer conn.Close()
	km, err := xproto.QueryKeymap(conn).Reply()
	if err != nil {
		t.Fatalf("QueryKeymap: %v", err)
	}
	n := 0
	for _, b := range km.Keys {
		n += bits.OnesCount8(b)
	}
	return n
}

// screenPixel reads one pixel straight from the X display.
func screenPixel(t *testing.T, d *display.Display, x, y int) [3]uint8 {
	t.Helper()
	conn := openDisplay(t, d)
	defer conn.Close()
	root := xproto.Setup(conn).DefaultScreen(conn).Root
	img, err := xproto.GetImage(conn, xproto.ImageFormatZPixmap, xproto.Drawable(root), int16(x), int16(y), 1, 1, 0xffffffff).Reply()
	if err != nil {
		t.Fatalf("GetImage: %v", err)
	}
	// Depth 24 ZPixmap: 32-bit little-endian pixels, 0x00RRGGBB.
	return [3]uint8{img.Data[2], img.Data[1], img.Data[0]}
}

// norm is the frontend's quantised coordinate for pixel v of size.
func norm(v, size int) uint16 { return uint16((v*65536 + size - 1) / size) }
