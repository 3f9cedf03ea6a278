// Command streamer is a stand-in for an Unreal Engine app with the Pixel
// Streaming plugin. It takes Unreal's command line, draws a live scene into
// $DISPLAY, streams that display (VP8, and Opus from the session's audio
// when PULSE_SERVER is set) to every player that signalling connects, and
// injects the players' mouse and keyboard input back into the display.
// README.md describes the scene's layout, which tests rely on.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	log := hclog.New(&hclog.LoggerOptions{
		Name:   "stand-in-streamer",
		Output: os.Stderr,
		Level:  hclog.LevelFromString(os.Getenv("STANDIN_LOG_LEVEL")),
	})
	if err := serve(log, args); err != nil {
		log.Error("stand-in streamer failed", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func serve(log hclog.Logger, args []string) error {
	opts, err := parseArgs(args)
	if err != nil {
		return err
	}
	if len(opts.Ignored) > 0 {
		log.Debug("ignoring arguments the stand-in has no use for", "args", strings.Join(opts.Ignored, " "))
	}
	if opts.Codec != "" && opts.Codec != "vp8" {
		log.Warn("the stand-in encodes VP8 only; -PixelStreamingEncoderCodec is not honoured", "asked", opts.Codec)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()
	var wg sync.WaitGroup
	// Background work ends with ctx; wait for it (ffmpeg stopped) on every return.
	defer func() {
		cancel(nil)
		wg.Wait()
	}()

	var (
		hub              = &mediaHub{}
		cl               *clip
		onData           = func(string, []byte) {}
		onLeave          = func(string) {}
		display, logSize = os.Getenv("DISPLAY"), ""
	)
	if opts.Clip != "" {
		// The clip mode needs neither ffmpeg nor a display: no scene is
		// drawn, and input is injected only when a display is there.
		if cl, err = loadClip(log.Named("clip"), opts.Clip); err != nil {
			return err
		}
		logSize = fmt.Sprintf("%dx%d", cl.width, cl.height)
		if opts.Width > 0 && (opts.Width != cl.width || opts.Height != cl.height) {
			log.Warn("-ResX/-ResY differ from the clip's size; sending the clip as it is", "asked", fmt.Sprintf("%dx%d", opts.Width, opts.Height), "clip", logSize)
		}
		if display != "" {
			inj, err := newInjector(log.Named("input"), display, cl.width, cl.height)
			if err != nil {
				return err
			}
			defer inj.close()
			onData, onLeave = inj.handle, inj.releaseAll
		}
		log.Info("sending a pre-encoded clip from memory; no encoder, no audio track", "clip", opts.Clip, "frames", len(cl.frames))
		wg.Go(func() { cl.run(sigCtx) })
	} else {
		if err := findFFmpeg(); err != nil {
			return err
		}
		if display == "" {
			return errors.New("DISPLAY is not set: the stand-in draws into and streams the session's X display (or give -StandInClip=file.ivf)")
		}
		sc, err := newScene(log.Named("scene"), display)
		if err != nil {
			return err
		}
		w, h := streamSize(log, opts, sc)
		logSize = fmt.Sprintf("%dx%d", w, h)
		inj, err := newInjector(log.Named("input"), display, w, h)
		if err != nil {
			return err
		}
		defer inj.close()
		onData, onLeave = inj.handle, inj.releaseAll

		video, err := newVideoSource(log.Named("video"), display, w, h)
		if err != nil {
			return err
		}
		hub.sources = []source{video}
		if os.Getenv("PULSE_SERVER") != "" && !opts.NoSound {
			audio, err := newAudioSource(log.Named("audio"))
			if err != nil {
				return err
			}
			hub.sources = append(hub.sources, audio)
			wg.Go(func() { playTone(sigCtx, log.Named("tone")) })
			sc.onClick = clickTone(sigCtx, log.Named("click-tone"))
		} else {
			log.Info("no audio track: PULSE_SERVER is not set or -nosound was given")
		}
		wg.Go(func() {
			sc.run(sigCtx)
			if sigCtx.Err() == nil {
				cancel(errors.New("the X display is gone"))
			}
		})
	}

	client := &signalClient{url: opts.URL, id: opts.ID, log: log.Named("signalling"),
		reconnect: opts.ReconnectInterval, keepAlive: opts.KeepAliveInterval}
	pm, err := newPeerManager(log.Named("peers"), client.send, hub, onData, onLeave)
	if err != nil {
		return fmt.Errorf("set up WebRTC: %w", err)
	}
	pm.clip = cl
	client.players = pm

	log.Info("starting", "streamer_id", opts.ID, "signalling", opts.URL, "display", display, "size", logSize)
	client.run(sigCtx)
	pm.closeAll()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// streamSize is -ResX x -ResY when it fits the display, as Unreal's
// -ForceRes window would be; VP8 in 4:2:0 needs even sizes.
func streamSize(log hclog.Logger, opts options, sc *scene) (int, int) {
	sw, sh := sc.size()
	w, h := sw, sh
	if opts.Width > 0 {
		w, h = min(opts.Width, sw), min(opts.Height, sh)
		if w != opts.Width || h != opts.Height {
			log.Warn("-ResX/-ResY larger than the display; streaming the display's size", "asked", fmt.Sprintf("%dx%d", opts.Width, opts.Height), "display", fmt.Sprintf("%dx%d", sw, sh))
		}
	}
	if w%2 != 0 || h%2 != 0 {
		log.Warn("odd stream size rounded down to even for VP8", "size", fmt.Sprintf("%dx%d", w, h))
		w, h = w&^1, h&^1
	}
	return w, h
}
