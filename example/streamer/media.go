package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/webrtc/v4"
)

// source produces samples for one track while ctx lives.
type source interface {
	track() webrtc.TrackLocal
	run(ctx context.Context)
}

// mediaHub runs the encoders only while at least one player is connected, as
// Unreal does: an idle session costs no encoding. Every peer gets the same
// tracks, so one encoder serves all players.
type mediaHub struct {
	sources []source

	mu     sync.Mutex
	users  int
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (h *mediaHub) tracks() []webrtc.TrackLocal {
	var out []webrtc.TrackLocal
	for _, s := range h.sources {
		out = append(out, s.track())
	}
	return out
}

func (h *mediaHub) acquire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.users++
	if h.users > 1 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	for _, s := range h.sources {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			s.run(ctx)
		}()
	}
}

func (h *mediaHub) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.users == 0 {
		return
	}
	h.users--
	if h.users > 0 {
		return
	}
	h.cancel()
	h.wg.Wait()
}

// superviseFFmpeg runs ffmpeg with args until ctx ends, handing its stdout
// to consume, and restarts it with backoff when it exits on its own: a
// transient encoder failure must not end the stream for good.
func superviseFFmpeg(ctx context.Context, log hclog.Logger, name string, args []string, consume func(io.Reader) error) {
	backoff := time.Second
	for ctx.Err() == nil {
		started := time.Now()
		err := runFFmpeg(ctx, log, args, consume)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		log.Error(name+" stopped; restarting", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// ffmpegBin is the ffmpeg found at start-up by findFFmpeg.
var ffmpegBin = "ffmpeg"

// findFFmpeg looks ffmpeg up once, at start, so a missing encoder fails the
// task at once rather than at the first player. A task's environment may
// have no PATH, hence Debian's location as the fallback.
func findFFmpeg() error {
	for _, candidate := range []string{"ffmpeg", "/usr/bin/ffmpeg"} {
		if p, err := exec.LookPath(candidate); err == nil {
			ffmpegBin = p
			return nil
		}
	}
	return fmt.Errorf("ffmpeg not found on PATH (%q) nor at /usr/bin/ffmpeg: install Debian's ffmpeg package", os.Getenv("PATH"))
}

// runFFmpeg runs one ffmpeg process until it exits or ctx ends.
func runFFmpeg(ctx context.Context, log hclog.Logger, args []string, consume func(io.Reader) error) error {
	cmd := exec.CommandContext(ctx, ffmpegBin, append([]string{"-hide_banner", "-nostdin", "-loglevel", "error"}, args...)...)
	cmd.Env = os.Environ()
	// Killed with us even on SIGKILL, so no encoder outlives the streamer.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 3 * time.Second
	var stdout io.ReadCloser
	if consume != nil {
		var err error
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return fmt.Errorf("ffmpeg stdout: %w", err)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return fmt.Errorf("ffmpeg stderr: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start ffmpeg: %w", err)
	}
	var tail lastLines
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.Warn("ffmpeg", "line", sc.Text())
			tail.add(sc.Text())
		}
	}()
	var consumeErr error
	if consume != nil {
		consumeErr = consume(stdout)
		// A reader that gave up must not leave ffmpeg blocked on a full pipe.
		_ = stdout.Close()
	}
	<-done
	waitErr := cmd.Wait()
	if consumeErr != nil && ctx.Err() == nil {
		return fmt.Errorf("read ffmpeg output: %w (ffmpeg: %v; %s)", consumeErr, waitErr, tail.String())
	}
	return fmt.Errorf("ffmpeg exited: %v; %s", waitErr, tail.String())
}

// lastLines keeps the last few lines of ffmpeg's stderr for error messages.
type lastLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *lastLines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
	if len(l.lines) > 5 {
		l.lines = l.lines[1:]
	}
}

func (l *lastLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, " | ")
}
