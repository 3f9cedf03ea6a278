package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/audio"
)

// audioUser runs the PipeWire stack when the tests run as root, as the
// driver's own audio tests do (useradd --system --create-home pixelstream).
const audioUser = "pixelstream"

func startAudio(t *testing.T) *audio.Stack {
	t.Helper()
	requireTools(t, "pipewire", "wireplumber", "pipewire-pulse", "dbus-daemon")
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup(audioUser)
		if err != nil {
			t.Fatalf("tests run as root and start PipeWire as %q, which does not exist: %v (useradd --system --create-home %s)", audioUser, err, audioUser)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	base, err := os.MkdirTemp("/tmp", "psa-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	logs.changed = make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	s, err := audio.Start(ctx, audio.Config{RuntimeDir: filepath.Join(base, "rt"), StateDir: filepath.Join(base, "state"),
		Log: &logs, Logger: hclog.NewNullLogger(), Credential: cred})
	if err != nil {
		t.Fatalf("start the audio stack: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

// TestAudioTrackCarriesTheTone: with the session's audio on, players get an
// Opus track, and what it carries, decoded, is the stand-in's 440 Hz tone
// taken from the PipeWire sink's monitor.
func TestAudioTrackCarriesTheTone(t *testing.T) {
	d := startDisplay(t)
	a := startAudio(t)
	ev := newIdentified()
	sig := startSignalling(t, "", ev)
	st := startStreamer(t, d, "ws://"+sig.StreamerAddr().String(), a.Env(), "-PixelStreamingID=with-audio")
	ev.wait(t, 1)

	p := newPlayer(t, sig, "player", "with-audio")
	st.log.waitLine(t, "first audio packet sent")
	// Two seconds of 20 ms packets, after the capture has settled.
	p.waitUntil("audio packets", func(p *player) bool { return p.audioPackets >= 150 })
	p.mu.Lock()
	payloads := p.audio[50:]
	p.mu.Unlock()

	path := filepath.Join(t.TempDir(), "recv.ogg")
	w, err := oggwriter.New(path, 48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, pl := range payloads {
		if err := w.WriteRTP(&rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(i * 960)}, Payload: pl}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pcm, err := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-i", path, "-f", "s16le", "-ac", "1", "-ar", "48000", "pipe:1").Output()
	if err != nil {
		t.Fatalf("decode the received audio: %v", err)
	}
	samples := make([]int16, len(pcm)/2)
	if err := binary.Read(bytes.NewReader(pcm), binary.LittleEndian, samples); err != nil {
		t.Fatal(err)
	}
	rms, hz := analyse(samples)
	t.Logf("received audio: %d samples, RMS %.0f, %.0f Hz", len(samples), rms, hz)
	if rms < 1000 {
		t.Fatalf("received audio is near silent (RMS %.0f)", rms)
	}
	if math.Abs(hz-toneHz) > 0.05*toneHz {
		t.Fatalf("received audio is at %.0f Hz, want the %d Hz tone", hz, toneHz)
	}
}

// analyse returns the RMS and, from zero crossings, the frequency.
func analyse(s []int16) (rms, hz float64) {
	var sum float64
	crossings := 0
	for i, v := range s {
		sum += float64(v) * float64(v)
		if i > 0 && (s[i-1] < 0) != (v < 0) {
			crossings++
		}
	}
	if len(s) == 0 {
		return 0, 0
	}
	return math.Sqrt(sum / float64(len(s))), float64(crossings) / 2 / (float64(len(s)) / 48000)
}
