package main

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/display"
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

func startSignalling(t *testing.T, streamerListen string, ev *identified) *signalling.Server {
	t.Helper()
	if streamerListen == "" {
		streamerListen = "127.0.0.1:0"
	}
	cfg := signalling.Config{PlayerListen: "127.0.0.1:0", StreamerListen: streamerListen,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: io.Discard})}
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
	s, err := signalling.New(cfg)
	if err != nil {
		t.Fatalf("signalling.New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("signalling Start: %v", err)
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

// player is a Go stand-in for Epic's browser frontend: the player side of
// signalling, a receive-only peer connection and the data channel.
type player struct {
	t    *testing.T
	name string
	ws   *websocket.Conn
	wsMu sync.Mutex
	pc   *webrtc.PeerConnection

	dcOpen   chan *webrtc.DataChannel
	firstMsg chan []byte

	mu           sync.Mutex
	changed      chan struct{}
	videoPackets int
	keyframes    int
	audioPackets int
	width        int
	height       int
	rec          *ivfwriter.IVFWriter
	recFrames    int
	recKey       bool
	audio        [][]byte
}

func newPlayer(t *testing.T, s *signalling.Server, name, streamerID string) *player {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+s.PlayerAddr().String()+"/", nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("%s: dial signalling: %v", name, err)
	}
	p := &player{t: t, name: name, ws: ws, dcOpen: make(chan *webrtc.DataChannel, 1), firstMsg: make(chan []byte, 1), changed: make(chan struct{}, 1)}
	t.Cleanup(p.close)
	p.send(map[string]any{"type": "subscribe", "streamerId": streamerID})
	go p.readSignalling()
	return p
}

func (p *player) close() {
	_ = p.ws.Close()
	p.mu.Lock()
	pc := p.pc
	p.mu.Unlock()
	if pc != nil {
		_ = pc.Close()
	}
}

func (p *player) send(v any) {
	p.wsMu.Lock()
	defer p.wsMu.Unlock()
	if err := p.ws.WriteJSON(v); err != nil {
		p.t.Logf("%s: send: %v", p.name, err)
	}
}

func (p *player) readSignalling() {
	for {
		_, data, err := p.ws.ReadMessage()
		if err != nil {
			return
		}
		var m struct {
			Type      string                   `json:"type"`
			SDP       string                   `json:"sdp"`
			Candidate *webrtc.ICECandidateInit `json:"candidate"`
			Message   string                   `json:"message"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			p.t.Errorf("%s: signalling sent non-JSON: %s", p.name, data)
			return
		}
		switch m.Type {
		case "offer":
			if err := p.answer(m.SDP); err != nil {
				p.t.Errorf("%s: answer the offer: %v", p.name, err)
			}
		case "iceCandidate":
			p.mu.Lock()
			pc := p.pc
			p.mu.Unlock()
			if pc != nil && m.Candidate != nil {
				if err := pc.AddICECandidate(*m.Candidate); err != nil {
					p.t.Errorf("%s: add the streamer's candidate: %v", p.name, err)
				}
			}
		case "subscribeFailed":
			p.t.Errorf("%s: subscribe failed: %s", p.name, m.Message)
		}
	}
}

func (p *player) answer(sdp string) error {
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.pc = pc
	p.mu.Unlock()
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			p.readVideo(tr)
		} else {
			p.readAudio(tr)
		}
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() { p.dcOpen <- dc })
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case p.firstMsg <- m.Data:
			default:
			}
		})
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			p.send(map[string]any{"type": "iceCandidate", "candidate": c.ToJSON()})
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		return err
	}
	p.send(map[string]any{"type": "answer", "sdp": ans.SDP})
	return nil
}

func (p *player) notify() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func (p *player) readVideo(tr *webrtc.TrackRemote) {
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.videoPackets++
		w, h, key := vp8KeyframeSize(pkt)
		if key {
			p.keyframes++
			p.width, p.height = w, h
		}
		if p.rec != nil {
			if err := p.rec.WriteRTP(pkt); err != nil {
				p.t.Errorf("%s: record video: %v", p.name, err)
			}
			// Frames count from the first keyframe: the writer drops those before it.
			p.recKey = p.recKey || key
			if pkt.Marker && p.recKey {
				p.recFrames++
			}
		}
		p.mu.Unlock()
		p.notify()
	}
}

func (p *player) readAudio(tr *webrtc.TrackRemote) {
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.audioPackets++
		p.audio = append(p.audio, pkt.Payload)
		p.mu.Unlock()
		p.notify()
	}
}

// vp8KeyframeSize reports the picture size when pkt starts a VP8 keyframe.
func vp8KeyframeSize(pkt *rtp.Packet) (int, int, bool) {
	var vp8 codecs.VP8Packet
	if _, err := vp8.Unmarshal(pkt.Payload); err != nil || vp8.S != 1 || vp8.PID != 0 || len(vp8.Payload) < 10 {
		return 0, 0, false
	}
	b := vp8.Payload
	if b[0]&1 != 0 || b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a {
		return 0, 0, false
	}
	w := int(b[6]) | int(b[7]&0x3f)<<8
	h := int(b[8]) | int(b[9]&0x3f)<<8
	return w, h, true
}

// waitUntil waits until cond holds on the player's counters.
func (p *player) waitUntil(what string, cond func(p *player) bool) {
	p.t.Helper()
	deadline := time.After(waitLong)
	for {
		p.mu.Lock()
		ok := cond(p)
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-p.changed:
		case <-deadline:
			p.mu.Lock()
			defer p.mu.Unlock()
			p.t.Fatalf("%s: %s did not happen (video packets %d, keyframes %d, audio packets %d)", p.name, what, p.videoPackets, p.keyframes, p.audioPackets)
		}
	}
}

func (p *player) counts() (video, keyframes, audio int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.videoPackets, p.keyframes, p.audioPackets
}

// channel waits for the data channel the streamer opened.
func (p *player) channel() *webrtc.DataChannel {
	p.t.Helper()
	select {
	case dc := <-p.dcOpen:
		p.dcOpen <- dc
		return dc
	case <-time.After(waitLong):
		p.t.Fatalf("%s: the streamer's data channel did not open", p.name)
		return nil
	}
}

// frame records the stream from its next keyframe for a few frames, decodes
// the recording with ffmpeg and returns the last picture as RGB24.
func (p *player) frame(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "recv.ivf")
	w, err := ivfwriter.New(path, ivfwriter.WithCodec(webrtc.MimeTypeVP8))
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.rec, p.recFrames, p.recKey = w, 0, false
	p.mu.Unlock()
	p.waitUntil("recording 40 frames", func(p *player) bool { return p.recFrames >= 40 })
	p.mu.Lock()
	p.rec = nil
	p.mu.Unlock()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1").Output()
	if err != nil {
		t.Fatalf("decode the received video with ffmpeg: %v", err)
	}
	size := testW * testH * 3
	if len(out) < size || len(out)%size != 0 {
		t.Fatalf("decoded %d bytes, not a whole number of %dx%d frames", len(out), testW, testH)
	}
	return out[len(out)-size:]
}

func pixel(rgb24 []byte, x, y int) [3]uint8 {
	i := (y*testW + x) * 3
	return [3]uint8{rgb24[i], rgb24[i+1], rgb24[i+2]}
}

// near allows for VP8's lossy colour.
func near(got [3]uint8, want rgb) bool {
	d := func(a, b uint8) int { return max(int(a)-int(b), int(b)-int(a)) }
	return d(got[0], want.r) <= 48 && d(got[1], want.g) <= 48 && d(got[2], want.b) <= 48
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
