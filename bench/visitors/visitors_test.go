package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/rtp"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// session is a real signalling server (with a player token, so the
// visitors' cookies matter) and the stand-in streamer sending a
// pre-encoded clip: one session without Nomad, as the generator sees it
// when pointed at a session's URL.
type session struct {
	sig *playerhttp.Signalling
	url string
}

const testToken = "bench-visitors-token-0123456789"

var (
	prepOnce           sync.Once
	prepDir, prepError = "", error(nil)
)

// prepare builds the stand-in and encodes a small test clip once.
func prepare(t *testing.T) (streamer, clip string) {
	t.Helper()
	prepOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bench-visitors")
		if err != nil {
			prepError = err
			return
		}
		prepDir = dir
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "streamer"), "../../example/streamer").CombinedOutput(); err != nil {
			prepError = fmt.Errorf("build the stand-in: %v\n%s", err, out)
			return
		}
		// What `make clip` does, smaller: VP8, a keyframe a second.
		out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
			"-i", "testsrc2=size=320x180:rate=30", "-t", "2", "-c:v", "libvpx", "-deadline", "realtime",
			"-cpu-used", "8", "-b:v", "300k", "-g", "30", "-keyint_min", "30", "-auto-alt-ref", "0",
			"-f", "ivf", filepath.Join(dir, "clip.ivf")).CombinedOutput()
		if err != nil {
			prepError = fmt.Errorf("encode the test clip with ffmpeg (Debian's ffmpeg package): %v\n%s", err, out)
		}
	})
	if prepError != nil {
		t.Fatal(prepError)
	}
	return filepath.Join(prepDir, "streamer"), filepath.Join(prepDir, "clip.ivf")
}

func startSession(t *testing.T) *session {
	t.Helper()
	streamer, clip := prepare(t)
	identified := make(chan struct{}, 1)
	sig, err := playerhttp.Start(signalling.Config{StreamerListen: "127.0.0.1:0", Logger: hclog.NewNullLogger(),
		Hooks: signalling.Hooks{Event: func(e signalling.Event) {
			if e.Kind == signalling.StreamerIdentified {
				select {
				case identified <- struct{}{}:
				default:
				}
			}
		}}}, playerhttp.Config{Listen: "127.0.0.1:0", PlayerToken: testToken, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sig.Shutdown(context.Background()) })

	var logs bytes.Buffer
	cmd := exec.Command(streamer, "-PixelStreamingURL=ws://"+sig.StreamerAddr().String(), "-StandInClip="+clip)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no DISPLAY: the clip mode needs none
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-exited
		if t.Failed() {
			t.Logf("stand-in streamer log:\n%s", logs.String())
		}
	})
	select {
	case <-identified:
	case err := <-exited:
		t.Fatalf("stand-in exited before identifying: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("stand-in did not identify within 30s\n%s", logs.String())
	}
	return &session{sig: sig, url: "http://" + sig.PlayerAddr().String() + "/?token=" + testToken}
}

// TestVisitorsAgainstSession runs the generator as a user would (-json)
// against one session: every visitor reaches a complete keyframe, each
// stage in order, frames keep coming, and the JSON line carries
// first_frame_ms p50/p95/p99.
func TestVisitorsAgainstSession(t *testing.T) {
	s := startSession(t)
	var out, errOut bytes.Buffer
	code := mainArgs([]string{"-url", s.url, "-n", "3", "-watch", "1s", "-timeout", "60s", "-json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, errOut.String(), out.String())
	}
	var rep struct {
		Visitors, OK, Failed int
		FirstFrameMS         struct{ P50, P95, P99 float64 }  `json:"first_frame_ms"`
		AtMS                 map[string]struct{ P50 float64 } `json:"at_ms"`
		FPS                  struct{ P50 float64 }
		Candidates           map[string]int
		Errors               map[string]int
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || strings.Count(strings.TrimSpace(out.String()), "\n") != 0 {
		t.Fatalf("want one JSON line, got %q (%v)", out.String(), err)
	}
	if rep.Visitors != 3 || rep.OK != 3 || rep.Failed != 0 {
		t.Fatalf("3 visitors: %d ok, %d failed: %v", rep.OK, rep.Failed, rep.Errors)
	}
	if !(rep.FirstFrameMS.P50 > 0 && rep.FirstFrameMS.P50 <= rep.FirstFrameMS.P95 && rep.FirstFrameMS.P95 <= rep.FirstFrameMS.P99) {
		t.Fatalf("first_frame_ms not a distribution: %+v", rep.FirstFrameMS)
	}
	prev := 0.0
	for _, st := range stageNames {
		at, ok := rep.AtMS[st]
		if !ok || at.P50 < prev {
			t.Fatalf("stage %s at %v, before the previous stage (%v ms): %+v", st, at.P50, prev, rep.AtMS)
		}
		prev = at.P50
	}
	// The clip is 30 fps; a visitor that got a keyframe and then little
	// else would show here.
	if rep.FPS.P50 < 15 {
		t.Fatalf("fps p50 %.1f after the first keyframe: frames are not arriving", rep.FPS.P50)
	}
	if rep.Candidates["host"] != 3 {
		t.Fatalf("candidate types %v: want host for all three on loopback", rep.Candidates)
	}
	// The session saw them as players and saw them leave.
	if n := len(s.sig.Router.Status().Players); n != 0 {
		t.Fatalf("%d players still connected after the visitors left", n)
	}
}

// TestVisitorsTable prints the tables without -json, and a visitor that
// cannot get in is reported with the stage it failed in (wrong token).
func TestVisitorsTable(t *testing.T) {
	s := startSession(t)
	var out, errOut bytes.Buffer
	if code := mainArgs([]string{"-url", s.url, "-n", "1", "-watch", "500ms"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"| first_keyframe |", "| arrival to first complete keyframe |", "1 with a keyframe"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, out.String())
		}
	}
	u, _ := url.Parse(s.url)
	u.RawQuery = "token=wrong"
	out.Reset()
	errOut.Reset()
	if code := mainArgs([]string{"-url", u.String(), "-n", "1", "-json"}, &out, &errOut); code != 1 {
		t.Fatalf("wrong token: exit %d, want 1", code)
	}
	if !strings.Contains(out.String(), `"page: http://`) || !strings.Contains(out.String(), "401") {
		t.Fatalf("wrong token: want the page stage's 401 in errors, got %s", out.String())
	}
	if strings.Contains(out.String(), "wrong") {
		t.Fatalf("the token leaked into the report: %s", out.String())
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
		n    int
	}{
		{args: []string{}, err: "-url is required"},
		{args: []string{"-url", "x", "-n", "0"}, err: "want at least one visitor"},
		{args: []string{"-url", "x", "-arrival", "burst"}, err: `-arrival "burst"`},
		{args: []string{"-url", "x", "-rate", "0"}, err: "-rate 0"},
		{args: []string{"-url", "x", "-arrival", "poisson", "-rate", "2", "-duration", "2m"}, n: 240},
		{args: []string{"-url", "x", "-arrival", "poisson", "-rate", "2", "-duration", "2m", "-n", "10"}, n: 10},
		{args: []string{"-url", "x", "-n", "7"}, n: 7},
	} {
		o, err := parseFlags(tc.args, &bytes.Buffer{})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || o.n != tc.n {
			t.Errorf("%v: n=%d err=%v, want n=%d", tc.args, o.n, err, tc.n)
		}
	}
}

// vp8 builds a VP8 RTP payload: descriptor (S bit on the first packet of
// a frame, partition 0) and, on that packet, the frame tag.
func vp8(start, key bool) []byte {
	desc := byte(0)
	if start {
		desc = 0x10
	}
	if !start {
		return []byte{desc, 0xAA}
	}
	tag := byte(0x01) // interframe
	if key {
		tag = 0x00
	}
	return []byte{desc, tag, 0, 0}
}

func TestFrameAssembler(t *testing.T) {
	pkt := func(seq uint16, ts uint32, marker bool, payload []byte) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: payload}
	}
	for _, tc := range []struct {
		name    string
		packets []*rtp.Packet
		want    []frameDone
	}{
		{"one-packet keyframe", []*rtp.Packet{pkt(1, 10, true, vp8(true, true))}, []frameDone{{key: true, packets: 1}}},
		{"three packets in order", []*rtp.Packet{pkt(5, 10, false, vp8(true, false)), pkt(6, 10, false, vp8(false, false)), pkt(7, 10, true, vp8(false, false))}, []frameDone{{packets: 3}}},
		{"reordered", []*rtp.Packet{pkt(7, 10, true, vp8(false, false)), pkt(5, 10, false, vp8(true, true)), pkt(6, 10, false, vp8(false, false))}, []frameDone{{key: true, packets: 3}}},
		{"a packet missing", []*rtp.Packet{pkt(5, 10, false, vp8(true, true)), pkt(7, 10, true, vp8(false, false))}, nil},
		{"sequence wraps", []*rtp.Packet{pkt(65535, 10, false, vp8(true, true)), pkt(0, 10, true, vp8(false, false))}, []frameDone{{key: true, packets: 2}}},
		{"empty payload ignored", []*rtp.Packet{pkt(1, 10, true, nil)}, nil},
		{"two frames", []*rtp.Packet{pkt(1, 10, true, vp8(true, true)), pkt(2, 20, true, vp8(true, false))}, []frameDone{{key: true, packets: 1}, {packets: 1}}},
	} {
		a := newFrameAssembler()
		var got []frameDone
		for _, p := range tc.packets {
			if f, ok := a.push(p); ok {
				got = append(got, f)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: frames %v, want %v", tc.name, got, tc.want)
		}
	}
	// Frames that never complete do not pile up.
	a := newFrameAssembler()
	for i := range 100 {
		a.push(pkt(uint16(2*i), uint32(i), false, vp8(true, true)))
	}
	if len(a.open) > maxOpenFrames {
		t.Fatalf("%d open frames, want at most %d", len(a.open), maxOpenFrames)
	}
}

func TestAssetURLs(t *testing.T) {
	base, _ := url.Parse("http://h:1/dir/?token=x")
	page := `<html><head><script type="module" src="player.abc.js"></script><link rel="stylesheet" href="/s.css">
<link rel="icon" href="data:,"><script src="https://other.example/x.js"></script><script>inline()</script>
<link rel="modulepreload" href="player.abc.js"></head></html>`
	var got []string
	for _, u := range assetURLs(base, []byte(page)) {
		got = append(got, u.String())
	}
	want := []string{"http://h:1/dir/player.abc.js", "http://h:1/s.css"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("assets %v, want %v", got, want)
	}
}
