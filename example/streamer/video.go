package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// frameRate is the capture and encode rate.
const frameRate = 30

// videoSource grabs the X display with ffmpeg, encodes VP8 and writes the
// frames to one track shared by every player.
type videoSource struct {
	log           hclog.Logger
	display       string
	width, height int
	t             *webrtc.TrackLocalStaticSample
}

func newVideoSource(log hclog.Logger, display string, width, height int) (*videoSource, error) {
	t, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "pixelstream")
	if err != nil {
		return nil, fmt.Errorf("create video track: %w", err)
	}
	return &videoSource{log: log, display: display, width: width, height: height, t: t}, nil
}

func (v *videoSource) track() webrtc.TrackLocal { return v.t }

// ffmpegArgs: realtime libvpx with no look-ahead (latency), a keyframe every
// second (a player joining a running stream starts within a second, since
// the shared encoder cannot serve one player's keyframe request alone), and
// a bitrate that scales with the picture. No input probing: x11grab's format
// is known, and probing costs about half a second before the first frame.
func (v *videoSource) ffmpegArgs() []string {
	size := fmt.Sprintf("%dx%d", v.width, v.height)
	bitrate := max(v.width*v.height*3, 200_000)
	return []string{
		"-probesize", "32", "-analyzeduration", "0", "-fflags", "nobuffer",
		"-f", "x11grab", "-draw_mouse", "0", "-framerate", strconv.Itoa(frameRate), "-video_size", size, "-i", v.display + "+0,0",
		"-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-lag-in-frames", "0", "-error-resilient", "1",
		"-g", strconv.Itoa(frameRate), "-keyint_min", strconv.Itoa(frameRate),
		"-b:v", strconv.Itoa(bitrate), "-maxrate", strconv.Itoa(bitrate * 3 / 2), "-bufsize", strconv.Itoa(bitrate / 2),
		"-pix_fmt", "yuv420p", "-f", "ivf", "pipe:1",
	}
}

func (v *videoSource) run(ctx context.Context) {
	v.log.Info("video encoder starting", "size", fmt.Sprintf("%dx%d", v.width, v.height), "codec", "vp8", "fps", frameRate)
	superviseFFmpeg(ctx, v.log, "video encoder", v.ffmpegArgs(), v.pump)
	v.log.Info("video encoder stopped")
}

// pump moves IVF frames from ffmpeg to the track, timed by the IVF
// timestamps so the receiver's clock follows the capture clock.
func (v *videoSource) pump(r io.Reader) error {
	ivf, hdr, err := ivfreader.NewWith(r)
	if err != nil {
		return fmt.Errorf("read IVF header: %w", err)
	}
	tick := time.Second / frameRate
	if hdr.TimebaseNumerator > 0 && hdr.TimebaseDenominator > 0 {
		tick = time.Second * time.Duration(hdr.TimebaseNumerator) / time.Duration(hdr.TimebaseDenominator)
	}
	var last uint64
	first := true
	for {
		frame, fh, err := ivf.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("read IVF frame: %w", err)
		}
		d := time.Second / frameRate
		if !first && fh.Timestamp > last {
			d = time.Duration(fh.Timestamp-last) * tick
		}
		last = fh.Timestamp
		if err := v.t.WriteSample(media.Sample{Data: frame, Duration: d}); err != nil {
			return fmt.Errorf("write video sample: %w", err)
		}
		if first {
			v.log.Info("first video frame sent", "bytes", len(frame))
			first = false
		}
	}
}
