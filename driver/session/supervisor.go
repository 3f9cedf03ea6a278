package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/audio"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/display"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/logline"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// Timeouts of the supervisor's own steps. The app's stop follows the job's
// kill_timeout instead.
const (
	displayStartTimeout = 30 * time.Second
	audioStartTimeout   = 30 * time.Second
	// failedComponentGrace is how long the app gets to exit after a component
	// it depends on died; the session is failing anyway.
	failedComponentGrace = 5 * time.Second
)

// forwardedSignals are passed on to the app's process group.
var forwardedSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT, syscall.SIGTSTP}

type supervisor struct {
	cfg    *sessionapi.Config
	logger hclog.Logger
	stderr io.Writer
	result *os.File
	store  *stateStore
	stopCh chan sessionapi.StopRequest
	sigCh  chan string

	display *display.Display
	audio   *audio.Stack
	audioMu sync.Mutex // audio is set once the stack is up; restarts read it from the stack's goroutines
	stream  *stream
	app     *exec.Cmd
	appTail *logline.Writer
	appDone chan struct{}
	lc      *lifecycle
	// streamEvents carries signalling events to the supervise loop, which
	// owns the lifecycle timers.
	streamEvents chan signalling.Event
	appState     *os.ProcessState
}

// Run brings the session up, supervises it and tears it down. It returns the
// result the supervisor process should exit with.
//
// state is the state socket's listener and result the result file, both
// opened as root before the supervisor became the task user.
func Run(cfg *sessionapi.Config, state net.Listener, result *os.File, stderr io.Writer) *sessionapi.Result {
	logger := hclog.New(&hclog.LoggerOptions{
		Name: "pixelstream", Output: stderr, Level: hclog.Info,
		DisableTime: true, // Nomad's log shipper and the user's terminal add their own
	})
	s := &supervisor{cfg: cfg, logger: logger, stderr: stderr, result: result, store: newStateStore(cfg.Task.Resolution),
		stopCh: make(chan sessionapi.StopRequest, 1), sigCh: make(chan string, 4),
		lc: newLifecycle(cfg.Task.Durations()), streamEvents: make(chan signalling.Event, 1024),
		appTail: logline.New(nil, "", appTailLines)}

	// Orphans of the app (a launcher script's children) are reparented here
	// so teardown can find and stop them.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

	closeState := s.serveState(state)
	defer closeState()

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)

	if err := s.start(); err != nil {
		s.store.emit(sessionapi.EventComponentFailed, err.Error(), nil)
		s.teardown()
		return s.finish(&sessionapi.Result{ExitCode: 1, Error: err.Error()})
	}
	return s.finish(s.supervise(sigs))
}

func (s *supervisor) start() error {
	// The audio stack needs no display: it starts beside Xvfb, and the two
	// cost the longer of their start-ups, not the sum (the largest part of
	// a cold session's start before the app).
	var audioDone chan audioStarted
	if s.cfg.Task.Audio {
		audioDone = make(chan audioStarted, 1)
		go func() { audioDone <- s.startAudioStack() }()
	}
	res, _ := config.ParseResolution(s.cfg.Task.Resolution)
	ctx, cancel := context.WithTimeout(context.Background(), displayStartTimeout)
	defer cancel()
	d, err := display.Start(ctx, display.Config{
		XvfbPath: s.cfg.XvfbPath, Width: res.Width, Height: res.Height, Depth: s.cfg.Task.Depth,
		AuthFile: s.cfg.UserPath(sessionapi.AuthFile), Log: s.stderr, Logger: s.logger.Named("display"),
	})
	if err != nil {
		// The audio stack, once up, is teardown's to stop.
		_ = s.awaitAudio(audioDone)
		return fmt.Errorf("start display: %w", err)
	}
	s.display = d
	s.store.setComponent(sessionapi.Component{Name: "xvfb", Pid: d.Pid(), State: "running"})
	if s.cfg.Task.Render != config.RenderNone {
		if err := requireGLX(d); err != nil {
			_ = s.awaitAudio(audioDone)
			return err
		}
	}
	s.store.update(func(st *sessionapi.State) { st.Display = d.Name() })
	s.store.emit(sessionapi.EventDisplayReady, fmt.Sprintf("Display %s ready (%s)", d.Name(), res), map[string]string{"display": d.Name()})

	if err := s.awaitAudio(audioDone); err != nil {
		return err
	}

	// Signalling (and TURN) listen before the app starts, so the streamer
	// URL can go into its command line and players can connect at once.
	if err := s.startStream(); err != nil {
		return err
	}
	// The state (and so the driver's task attributes, which anyone who may
	// read the job sees) gets the address without the key.
	streamerAddr := "ws://" + s.stream.signalling.StreamerAddr().String()
	s.store.update(func(st *sessionapi.State) { st.StreamerURL = streamerAddr })
	streamerURL := streamerAddr + "/" + s.stream.key

	env := s.sessionEnv()
	if err := writeEnvFile(s.cfg.UserPath(sessionapi.EnvFile), env); err != nil {
		return err
	}
	return s.startApp(streamerURL, env)
}

// requireGLX refuses a display without the GLX extension for an app that
// renders: NVIDIA's Vulkan and OpenGL drivers query GLX on $DISPLAY and crash
// (SIGSEGV, after "extension GLX missing") when it is absent, which is what
// an Xvfb installed without Mesa's GLX libraries offers.
func requireGLX(d *display.Display) error {
	ok, err := d.HasExtension("GLX")
	if err != nil {
		return fmt.Errorf("check the display for GLX: %w", err)
	}
	if !ok {
		return errors.New(`start display: Xvfb offers no GLX extension, and GPU drivers crash rendering on a display without it: install Mesa's GLX for Xvfb (Debian/Ubuntu: apt-get install libglx-mesa0 libgl1-mesa-dri), or set render = "none" for an app that does not render`)
	}
	return nil
}

// audioStarted is what starting the audio stack came to.
type audioStarted struct {
	stack *audio.Stack
	err   error
	took  time.Duration
}

// startAudioStack starts the PipeWire stack; it runs beside the display's
// start, so it only reports, and awaitAudio publishes.
func (s *supervisor) startAudioStack() audioStarted {
	ctx, cancel := context.WithTimeout(context.Background(), audioStartTimeout)
	defer cancel()
	t0 := time.Now()
	st, err := audio.Start(ctx, audio.Config{
		RuntimeDir: s.cfg.UserPath(sessionapi.AudioDir),
		StateDir:   s.cfg.UserPath(sessionapi.AudioState),
		Log:        s.stderr,
		Logger:     s.logger.Named("audio"),
		OnRestart: func(component string, attempt int, reason string) {
			s.store.emit(sessionapi.EventComponentRestart, fmt.Sprintf("Restarted %s (attempt %d): %s", component, attempt, reason),
				map[string]string{"component": component})
			s.publishAudio()
		},
	})
	return audioStarted{stack: st, err: err, took: time.Since(t0)}
}

// awaitAudio waits for the audio stack's start (nil: the task has no
// audio), keeps the stack for teardown and reports it.
func (s *supervisor) awaitAudio(done <-chan audioStarted) error {
	if done == nil {
		return nil
	}
	r := <-done
	if r.err != nil {
		return fmt.Errorf("start audio: %w", r.err)
	}
	s.audioMu.Lock()
	s.audio = r.stack
	s.audioMu.Unlock()
	s.publishAudio()
	s.store.emit(sessionapi.EventAudioReady, fmt.Sprintf("Audio ready in %s (PipeWire, default sink %s)", r.took.Round(time.Millisecond), audio.SinkName), nil)
	return nil
}

func (s *supervisor) publishAudio() {
	// An audio restart may report from the stack's own goroutine.
	s.audioMu.Lock()
	st := s.audio
	s.audioMu.Unlock()
	if st == nil {
		return
	}
	for _, c := range st.Components() {
		s.store.setComponent(sessionapi.Component{Name: c.Name, Pid: c.PID, State: c.State})
	}
}

// sessionEnv is what the session adds to the task's environment for the app
// and for `nomad alloc exec` shells.
func (s *supervisor) sessionEnv() []string {
	env := s.display.Env()
	if s.audio != nil {
		env = append(env, s.audio.Env()...)
	}
	for k, v := range s.cfg.GPUEnv {
		env = append(env, k+"="+v)
	}
	return append(env, "HOME="+s.cfg.HomeDir)
}

func (s *supervisor) startApp(streamerURL string, sessionEnv []string) error {
	args := s.cfg.Task.AppArgs(streamerURL, s.cfg.GPUArgs...)
	cmd := exec.Command(s.cfg.Executable, args...)
	cmd.Dir = s.cfg.TaskDir
	cmd.Env = mergeEnv(os.Environ(), sessionEnv)
	cmd.Stdin = nil
	// The app's output goes to the task's logs as it is, and its last lines
	// are kept for the startup-timeout report.
	cmd.Stdout = io.MultiWriter(os.Stdout, s.appTail)
	cmd.Stderr = io.MultiWriter(os.Stderr, s.appTail)
	// Children that inherit the app's output must not hold Wait forever.
	cmd.WaitDelay = 2 * time.Second
	// Its own process group, so signals reach a launcher script and the
	// binary it starts alike, and never the supervisor or Xvfb.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start app %s: %w", s.cfg.Executable, err)
	}
	s.app = cmd
	s.appDone = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		s.appState = cmd.ProcessState
		close(s.appDone)
	}()
	pid := cmd.Process.Pid
	s.lc.appStarted(time.Now())
	s.store.setComponent(sessionapi.Component{Name: "app", Pid: pid, State: "running"})
	s.store.update(func(st *sessionapi.State) { st.Phase = sessionapi.PhaseRunning; st.AppPid = pid })
	// No arguments in the event: Nomad shows event details to anyone who may
	// read the job, and arguments may carry secrets.
	s.store.emit(sessionapi.EventAppStarted, fmt.Sprintf("App started (pid %d) on display %s", pid, s.display.Name()),
		map[string]string{"pid": strconv.Itoa(pid), "executable": filepath.Base(s.cfg.Executable), "arg_count": strconv.Itoa(len(args))})
	s.logger.Info("app started", "pid", pid, "executable", s.cfg.Executable, "display", s.display.Name())
	return nil
}

// supervise waits for the app to exit, a component to die, or a stop.
func (s *supervisor) supervise(sigs <-chan os.Signal) *sessionapi.Result {
	for {
		select {
		case <-s.appDone:
			s.teardown()
			return appResult(s.appState)

		case <-s.display.Done():
			s.store.setComponent(sessionapi.Component{Name: "xvfb", Pid: s.display.Pid(), State: "dead"})
			return s.failComponent("xvfb", "Xvfb exited: "+s.display.ExitReason())

		case err := <-s.audioFailed():
			reason := err.Error()
			var ce *audio.ComponentError
			if errors.As(err, &ce) {
				reason = fmt.Sprintf("%s died and could not be restarted: %v", ce.Component, ce.Err)
				if len(ce.LastLines) > 0 {
					reason += "; last output: " + strings.Join(ce.LastLines, " | ")
				}
			}
			return s.failComponent("audio", reason)

		case e := <-s.streamEvents:
			s.onLifecycleEvent(e)

		case <-timerC(s.lc.playerFlush):
			s.store.emit(sessionapi.EventPlayers, s.lc.playerSummary(time.Now()), nil)

		case <-timerC(s.lc.idle):
			return s.endSession(sessionapi.EventIdleTimeout, fmt.Sprintf("Idle timeout: no player connected for %s; ending the session", s.lc.d.Idle))

		case <-timerC(s.lc.warn):
			text := fmt.Sprintf("This session ends in %s (maximum session duration).", s.lc.d.Warning)
			n := s.stream.signalling.Router.WarnPlayers(text, int(s.lc.d.Warning.Seconds()))
			s.store.emit(sessionapi.EventMaxWarning, fmt.Sprintf("Warned %s: session ends in %s", plural(n, "player", "players"), s.lc.d.Warning), nil)

		case <-timerC(s.lc.max):
			return s.endSession(sessionapi.EventMaxDuration, fmt.Sprintf("Max session duration reached (%s); ending the session", s.lc.d.MaxSession))

		case <-timerC(s.lc.startup):
			return s.failStartup()

		case req := <-s.stopCh:
			sig := lookupSignal(req.Signal, syscall.SIGTERM)
			s.store.emit(sessionapi.EventStopRequested, fmt.Sprintf("Stopping app with %s, SIGKILL after %s", signalName(sig), req.Timeout), nil)
			s.stopApp(sig, req.Timeout)
			s.teardown()
			return appResult(s.appState)

		case name := <-s.sigCh:
			s.signalApp(lookupSignal(name, syscall.SIGINT))

		case sig := <-sigs:
			// A signal sent to the supervisor itself (the executor's fallback
			// for stop, or a user's kill) is meant for the app.
			s.signalApp(sig.(syscall.Signal))
		}
	}
}

// failComponent ends the session because a component it depends on died:
// the app is stopped and the task fails with the reason.
func (s *supervisor) failComponent(component, reason string) *sessionapi.Result {
	s.logger.Error("component failed, stopping the session", "component", component, "reason", reason)
	s.store.emit(sessionapi.EventComponentFailed, "Session failed: "+reason, map[string]string{"component": component})
	s.stopApp(syscall.SIGTERM, failedComponentGrace)
	s.teardown()
	r := appResult(s.appState)
	r.Error = reason
	if r.ExitCode == 0 && r.Signal == 0 {
		r.ExitCode = 1
	}
	return r
}

// audioFailed is nil (never ready) without audio.
func (s *supervisor) audioFailed() <-chan error {
	if s.audio == nil {
		return nil
	}
	return s.audio.Failed()
}

func (s *supervisor) signalApp(sig syscall.Signal) {
	if err := syscall.Kill(-s.app.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		s.logger.Warn("signal app", "signal", signalName(sig), "error", err)
	}
}

// stopApp sends sig to the app's group and SIGKILLs it after timeout.
func (s *supervisor) stopApp(sig syscall.Signal, timeout time.Duration) {
	if s.app == nil {
		return
	}
	s.store.update(func(st *sessionapi.State) { st.Phase = sessionapi.PhaseStopping })
	s.signalApp(sig)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.appDone:
	case <-t.C:
		s.logger.Warn("app did not exit in time, killing it", "signal", signalName(sig), "timeout", timeout)
		s.signalApp(syscall.SIGKILL)
		<-s.appDone
	}
}

// teardown stops everything but the app, in reverse start order, after the
// app is gone; it also reaps whatever the app left behind.
func (s *supervisor) teardown() {
	s.store.update(func(st *sessionapi.State) { st.Phase = sessionapi.PhaseStopping })
	if s.app != nil {
		<-s.appDone
		// Leftovers in the app's group, and orphans reparented to us.
		_ = syscall.Kill(-s.app.Process.Pid, syscall.SIGKILL)
	}
	if s.stream != nil {
		s.stream.stop(s.logger)
	}
	if s.audio != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.audio.Stop(ctx); err != nil {
			s.logger.Warn("audio stack did not stop cleanly", "error", err)
		}
		cancel()
		s.publishAudio()
	}
	if s.display != nil {
		if err := s.display.Stop(context.Background()); err != nil {
			s.logger.Warn("display did not stop cleanly", "display", s.display.Name(), "error", err)
		}
		s.store.setComponent(sessionapi.Component{Name: "xvfb", Pid: s.display.Pid(), State: "stopped"})
	}
	// Whatever is still a child of ours now is an orphan the app left.
	killOrphans()
	if err := os.Remove(s.cfg.UserPath(sessionapi.EnvFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logger.Warn("remove session env file", "error", err)
	}
}

// killOrphans SIGKILLs processes reparented to the supervisor (it is a child
// subreaper), then reaps them. It runs after every component has stopped.
func killOrphans() {
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid(pid) == self {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, 0, nil)
		}
	}
}

func ppid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may contain spaces and parentheses; fields start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

func appResult(ps *os.ProcessState) *sessionapi.Result {
	if ps == nil {
		return &sessionapi.Result{ExitCode: 1}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return &sessionapi.Result{ExitCode: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	}
	return &sessionapi.Result{ExitCode: ps.ExitCode()}
}

// finish records the result for the driver and logs it.
func (s *supervisor) finish(r *sessionapi.Result) *sessionapi.Result {
	r.AppStarted = s.app != nil
	s.store.update(func(st *sessionapi.State) { st.Phase = sessionapi.PhaseExited })
	msg := fmt.Sprintf("App exited with code %d", r.ExitCode)
	if r.Signal != 0 {
		msg = fmt.Sprintf("App killed by %s", signalName(syscall.Signal(r.Signal)))
	}
	s.store.emit(sessionapi.EventAppExited, msg, nil)
	if err := sessionapi.WriteResult(s.result, r); err != nil {
		s.logger.Error("driver will not know why the session ended", "error", err)
	}
	if r.Error != "" {
		s.logger.Error("session failed", "error", r.Error)
	} else {
		s.logger.Info("session ended", "exit_code", r.ExitCode, "signal", r.Signal)
	}
	return r
}

func mergeEnv(base, overrides []string) []string {
	keys := map[string]bool{}
	for _, kv := range overrides {
		k, _, _ := strings.Cut(kv, "=")
		keys[k] = true
	}
	out := make([]string, 0, len(base)+len(overrides))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !keys[k] {
			out = append(out, kv)
		}
	}
	return append(out, overrides...)
}

func writeEnvFile(path string, env []string) error {
	if err := os.WriteFile(path, []byte(strings.Join(env, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("write session env file: %w", err)
	}
	return nil
}

func lookupSignal(name string, def syscall.Signal) syscall.Signal {
	if name == "" {
		return def
	}
	if s := unix.SignalNum(strings.ToUpper(name)); s != 0 {
		return s
	}
	if !strings.HasPrefix(strings.ToUpper(name), "SIG") {
		if s := unix.SignalNum("SIG" + strings.ToUpper(name)); s != 0 {
			return s
		}
	}
	return def
}

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return s.String()
}
