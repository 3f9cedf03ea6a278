package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

const (
	// toneHz is the stand-in's "game sound", a steady sine.
	toneHz = 440
	// monitorSource is the pulse source the stand-in captures: what the
	// default sink plays, as Unreal's AudioMixer submix capture would get.
	monitorSource = "@DEFAULT_MONITOR@"
	opusRate      = 48000
)

// playTone plays the tone into the session's default sink until ctx ends.
func playTone(ctx context.Context, log hclog.Logger) {
	args := []string{
		"-re", "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=%d", toneHz, opusRate), "-ac", "2",
		"-f", "pulse", "-name", "pixelstream-stand-in", "stand-in tone",
	}
	log.Info("playing tone into the default sink", "hz", toneHz)
	superviseFFmpeg(ctx, log, "tone player", args, nil)
}

// beepHz and beepLength make the click tone: short and higher than the
// steady tone, so a click is heard in the stream.
const (
	beepHz     = 880
	beepLength = 150 * time.Millisecond
)

// clickTone returns an onClick for the scene that plays a short tone into
// the default sink, one at a time (clicks during a tone are not queued).
func clickTone(ctx context.Context, log hclog.Logger) func() {
	var playing atomic.Bool
	return func() {
		if !playing.CompareAndSwap(false, true) {
			return
		}
		go func() {
			defer playing.Store(false)
			args := []string{"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=%d:duration=%g", beepHz, opusRate, beepLength.Seconds()),
				"-ac", "2", "-f", "pulse", "-name", "pixelstream-stand-in-click", "stand-in click"}
			// runFFmpeg reports every exit; a tone that played is one too.
			log.Debug("click tone played", "result", runFFmpeg(ctx, log, args, nil))
		}()
	}
}

// audioSource captures the default sink's monitor and encodes Opus for one
// track shared by every player.
type audioSource struct {
	log hclog.Logger
	t   *webrtc.TrackLocalStaticSample
}

func newAudioSource(log hclog.Logger) (*audioSource, error) {
	t, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: opusRate, Channels: 2}, "audio", "pixelstream")
	if err != nil {
		return nil, fmt.Errorf("create audio track: %w", err)
	}
	return &audioSource{log: log, t: t}, nil
}

func (a *audioSource) track() webrtc.TrackLocal { return a.t }

func (a *audioSource) run(ctx context.Context) {
	// One 20 ms Opus packet per Ogg page, so every page is one sample.
	args := []string{
		"-probesize", "32", "-analyzeduration", "0", "-fflags", "nobuffer",
		"-f", "pulse", "-sample_rate", fmt.Sprint(opusRate), "-channels", "2", "-fragment_size", "3840", "-i", monitorSource,
		"-c:a", "libopus", "-b:a", "96k", "-application", "lowdelay", "-frame_duration", "20",
		"-page_duration", "20000", "-f", "ogg", "pipe:1",
	}
	a.log.Info("audio encoder starting", "source", monitorSource, "codec", "opus")
	superviseFFmpeg(ctx, a.log, "audio encoder", args, a.pump)
	a.log.Info("audio encoder stopped")
}

func (a *audioSource) pump(r io.Reader) error {
	ogg, _, err := oggreader.NewWith(r)
	if err != nil {
		return fmt.Errorf("read Ogg Opus header: %w", err)
	}
	var last uint64
	first := true
	for {
		page, hdr, err := ogg.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("read Ogg page: %w", err)
		}
		if bytes.HasPrefix(page, []byte("OpusTags")) {
			continue
		}
		d := 20 * time.Millisecond
		if !first && hdr.GranulePosition > last {
			d = time.Duration(hdr.GranulePosition-last) * time.Second / opusRate
		}
		last = hdr.GranulePosition
		if err := a.t.WriteSample(media.Sample{Data: page, Duration: d}); err != nil {
			return fmt.Errorf("write audio sample: %w", err)
		}
		if first {
			a.log.Info("first audio packet sent")
			first = false
		}
	}
}
