package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// maxClipBytes bounds the clip held in memory: a few seconds of video is
// all the mode needs, and a wrong path must not fill the session's memory.
const maxClipBytes = 64 << 20

// clip is a pre-encoded VP8 stream held in memory (-StandInClip=file.ivf).
// No encoder runs: a session costs the packetising and encryption of its
// players' streams only, so dozens fit on one machine and a benchmark
// measures the project's path rather than ffmpeg. Every player gets a
// track of its own played from the clip's first frame, a keyframe, so its
// first frame leaves the moment its peer connects.
type clip struct {
	frames        []clipFrame
	width, height int
	log           hclog.Logger

	mu      sync.Mutex
	playing map[*webrtc.TrackLocalStaticSample]*clipCursor
	wake    chan struct{}
}

type clipFrame struct {
	data []byte
	dur  time.Duration
}

type clipCursor struct {
	next int
	sent bool
}

// loadClip reads an IVF file of VP8 frames whose first frame is a keyframe.
func loadClip(log hclog.Logger, path string) (*clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("-StandInClip: %w", err)
	}
	defer f.Close()
	c, err := readClip(f)
	if err != nil {
		return nil, fmt.Errorf("-StandInClip=%s: %w", path, err)
	}
	c.log = log
	return c, nil
}

func readClip(r io.Reader) (*clip, error) {
	lr := &io.LimitedReader{R: r, N: maxClipBytes + 1}
	ivf, hdr, err := ivfreader.NewWith(lr)
	if err != nil {
		return nil, fmt.Errorf("not an IVF file: %w", err)
	}
	if string(hdr.FourCC[:]) != "VP80" {
		return nil, fmt.Errorf("codec %q: the stand-in sends VP8 (want an IVF file with fourcc VP80, e.g. made by `make clip`)", string(hdr.FourCC[:]))
	}
	tick := time.Second / frameRate
	if hdr.TimebaseNumerator > 0 && hdr.TimebaseDenominator > 0 {
		tick = time.Second * time.Duration(hdr.TimebaseNumerator) / time.Duration(hdr.TimebaseDenominator)
	}
	c := &clip{width: int(hdr.Width), height: int(hdr.Height), playing: map[*webrtc.TrackLocalStaticSample]*clipCursor{}, wake: make(chan struct{}, 1)}
	var stamps []uint64
	for {
		frame, fh, err := ivf.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("frame %d: %w", len(c.frames), err)
		}
		if lr.N <= 0 {
			return nil, fmt.Errorf("larger than %d MiB: the clip is held in memory, keep it to a few seconds", maxClipBytes>>20)
		}
		c.frames = append(c.frames, clipFrame{data: frame})
		stamps = append(stamps, fh.Timestamp)
	}
	if len(c.frames) == 0 {
		return nil, errors.New("no frames")
	}
	if !vp8Keyframe(c.frames[0].data) {
		return nil, errors.New("the first frame is not a VP8 keyframe: a player could not start on it")
	}
	// Each frame lasts until the next one; the last as long as a frame
	// at the nominal rate, so the loop keeps the clip's pace.
	for i := range c.frames {
		c.frames[i].dur = time.Second / frameRate
		if i+1 < len(stamps) && stamps[i+1] > stamps[i] {
			c.frames[i].dur = time.Duration(stamps[i+1]-stamps[i]) * tick
		}
	}
	return c, nil
}

// vp8Keyframe reads the frame tag's P bit (RFC 6386, 9.1): 0 is a keyframe.
func vp8Keyframe(frame []byte) bool { return len(frame) >= 3 && frame[0]&1 == 0 }

// newTrack is one player's video track.
func (c *clip) newTrack() (*webrtc.TrackLocalStaticSample, error) {
	t, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "pixelstream")
	if err != nil {
		return nil, fmt.Errorf("create video track: %w", err)
	}
	return t, nil
}

// start plays the clip on t from its first frame, looping, until stop.
func (c *clip) start(t *webrtc.TrackLocalStaticSample) {
	c.mu.Lock()
	c.playing[t] = &clipCursor{}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *clip) stop(t *webrtc.TrackLocalStaticSample) {
	c.mu.Lock()
	delete(c.playing, t)
	c.mu.Unlock()
}

// run is the one clock of every player's stream: a single goroutine wakes
// once a frame and writes each track's next frame, so hundreds of players
// cost one timer, not hundreds. A newly started track is served at once.
func (c *clip) run(ctx context.Context) {
	period := time.Second / frameRate
	t := time.NewTimer(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
			c.tick(true)
		case <-t.C:
			t.Reset(period)
			c.tick(false)
		}
	}
}

// tick writes the next frame to every track (fresh: only to the tracks
// that have not had one yet). A track's cursor moves one frame per tick.
func (c *clip) tick(fresh bool) {
	type job struct {
		t     *webrtc.TrackLocalStaticSample
		f     clipFrame
		first bool
	}
	c.mu.Lock()
	jobs := make([]job, 0, len(c.playing))
	for t, cur := range c.playing {
		if fresh && cur.sent {
			continue
		}
		jobs = append(jobs, job{t: t, f: c.frames[cur.next], first: !cur.sent})
		cur.sent = true
		cur.next = (cur.next + 1) % len(c.frames)
	}
	c.mu.Unlock()
	for _, j := range jobs {
		if err := j.t.WriteSample(media.Sample{Data: j.f.data, Duration: j.f.dur}); err != nil {
			c.log.Debug("write clip frame", "error", err)
			continue
		}
		if j.first {
			c.log.Info("first video frame sent", "bytes", len(j.f.data), "source", "clip")
		}
	}
}
