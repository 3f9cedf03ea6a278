package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul-template/signals"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/nomad/drivers/shared/eventer"
	"github.com/hashicorp/nomad/drivers/shared/executor"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
)

// taskHandle is the driver's view of one running session.
type taskHandle struct {
	taskConfig   *drivers.TaskConfig
	exec         executor.Executor
	pluginClient *plugin.Client
	client       *sessionapi.Client
	runtimeDir   string
	// uid and gid are the task user's: commands run with `nomad alloc
	// exec` start as root in the sandbox and become it.
	uid, gid  int
	pid       int
	logger    hclog.Logger
	eventer   *eventer.Eventer
	startedAt time.Time
	gpus      []string // UUIDs of the assigned GPUs

	mu        sync.RWMutex
	state     sessionapi.State
	procState drivers.TaskState
	completed time.Time
	result    *drivers.ExitResult
	doneCh    chan struct{}
	startedCh chan struct{}
	startErr  error
	startOnce sync.Once
	cleanOnce sync.Once
}

func newTaskHandle(cfg *drivers.TaskConfig, exec executor.Executor, pc *plugin.Client, pid int, runtimeDir string,
	uid, gid int, logger hclog.Logger, ev *eventer.Eventer) *taskHandle {
	return &taskHandle{
		taskConfig: cfg, exec: exec, pluginClient: pc, pid: pid, runtimeDir: runtimeDir, uid: uid, gid: gid,
		client:    sessionapi.NewClient(runtimeDir + "/" + sessionapi.SocketFile),
		logger:    logger.With("alloc_id", cfg.AllocID, "task_name", cfg.Name),
		eventer:   ev,
		procState: drivers.TaskStateRunning,
		doneCh:    make(chan struct{}),
		startedCh: make(chan struct{}),
	}
}

// run waits for the supervisor to exit and records the result.
func (h *taskHandle) run() {
	ps, err := h.exec.Wait(context.Background())
	res := &drivers.ExitResult{}
	switch {
	case err != nil:
		res.Err = fmt.Errorf("wait for session supervisor: %w", err)
		res.ExitCode = -1
	default:
		res.ExitCode, res.Signal, res.OOMKilled = ps.ExitCode, ps.Signal, ps.OOMKilled
	}
	// The supervisor's own account says whether the session failed (a
	// component died) rather than the app simply exiting.
	startErr := fmt.Errorf("session exited before the app started (exit code %d)", res.ExitCode)
	r, rerr := sessionapi.ReadResult(h.runtimeDir)
	switch {
	case rerr == nil:
		if r.AppStarted {
			// The app ran and is already gone (a quick exit can beat the
			// event follower): StartTask succeeds, WaitTask reports the exit.
			startErr = nil
		}
		if r.Error != "" {
			res.Err = errors.New("session failed: " + r.Error)
			if !r.AppStarted {
				startErr = fmt.Errorf("session failed before the app started: %s", r.Error)
			}
		}
		if r.Signal != 0 {
			res.Signal = r.Signal
		}
	case !errors.Is(rerr, os.ErrNotExist):
		h.logger.Warn("session result unreadable", "error", rerr)
	}
	h.mu.Lock()
	h.procState = drivers.TaskStateExited
	h.completed = time.Now()
	h.result = res
	h.mu.Unlock()
	h.finishStart(startErr)
	close(h.doneCh)
}

func (h *taskHandle) finishStart(err error) {
	h.startOnce.Do(func() {
		h.startErr = err
		close(h.startedCh)
	})
}

// waitStarted follows the session's events until the app has started or the
// session has failed, so StartTask can return the real reason. It returns
// the last event seen, where forwarding continues.
func (h *taskHandle) waitStarted(ctx context.Context) (uint64, error) {
	seq := make(chan uint64, 1)
	go func() {
		// The supervisor may still be binding its socket: retry quickly.
		seq <- h.followEvents(ctx, 0, 20*time.Millisecond, func(e sessionapi.Event) bool {
			switch e.Kind {
			case sessionapi.EventAppStarted:
				h.finishStart(nil)
				return true
			case sessionapi.EventComponentFailed:
				h.finishStart(errors.New(e.Message))
				return true
			}
			return false
		})
	}()
	select {
	case <-h.startedCh:
		return <-seq, h.startErr
	case <-ctx.Done():
		return 0, fmt.Errorf("session did not start the app within %s", sessionStartTimeout)
	}
}

// followEvents long-polls the session's events after seq and turns each into
// a Nomad task event, until stop says so, the session ends or ctx is done.
// It returns the last event's seq.
func (h *taskHandle) followEvents(ctx context.Context, after uint64, retry time.Duration, stop func(sessionapi.Event) bool) uint64 {
	for {
		select {
		case <-ctx.Done():
			return after
		case <-h.doneCh:
			return after
		default:
		}
		evs, err := h.client.Events(ctx, after)
		if err != nil {
			select {
			case <-ctx.Done():
				return after
			case <-h.doneCh:
				return after
			case <-time.After(retry):
				continue
			}
		}
		for _, e := range evs {
			after = e.Seq
			h.emit(e)
			if stop != nil && stop(e) {
				return after
			}
		}
		if st, err := h.client.State(ctx); err == nil {
			h.setState(st)
		}
	}
}

// quietEvents are session events Nomad already reports in its own words.
var quietEvents = map[string]bool{sessionapi.EventAppExited: true, sessionapi.EventStopRequested: true}

func (h *taskHandle) emit(e sessionapi.Event) {
	if quietEvents[e.Kind] {
		return
	}
	ann := map[string]string{"kind": e.Kind}
	for k, v := range e.Details {
		ann[k] = v
	}
	_ = h.eventer.EmitEvent(&drivers.TaskEvent{
		TaskID: h.taskConfig.ID, AllocID: h.taskConfig.AllocID, TaskName: h.taskConfig.Name,
		Timestamp: e.Time, Message: e.Message, Annotations: ann,
	})
}

func (h *taskHandle) setState(st sessionapi.State) {
	h.mu.Lock()
	h.state = st
	h.mu.Unlock()
}

// IsRunning reports whether the supervisor is alive.
func (h *taskHandle) IsRunning() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.procState == drivers.TaskStateRunning
}

func (h *taskHandle) exitResult() *drivers.ExitResult {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.result.Copy()
}

// TaskStatus is InspectTask's answer, with the session's components.
func (h *taskHandle) TaskStatus() *drivers.TaskStatus {
	if h.IsRunning() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if st, err := h.client.State(ctx); err == nil {
			h.setState(st)
		}
		cancel()
	}
	// The session numbers its processes in its own PID namespace; the
	// attributes give the node's pids.
	pids := sandboxPIDs(h.pid)
	host := func(p int) int {
		if n, ok := pids[p]; ok {
			return n
		}
		return p
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	attrs := map[string]string{
		"supervisor_pid": strconv.Itoa(h.pid),
		"runtime_dir":    h.runtimeDir,
		"phase":          string(h.state.Phase),
		"display":        h.state.Display,
		"resolution":     h.state.Resolution,
		"streamer_url":   h.state.StreamerURL,
		"stream_ready":   strconv.FormatBool(h.state.StreamReady),
		"players":        strconv.Itoa(h.state.Players),
	}
	if h.state.AppPid != 0 {
		attrs["app_pid"] = strconv.Itoa(host(h.state.AppPid))
	}
	for _, c := range h.state.Components {
		attrs["component."+c.Name] = fmt.Sprintf("%s pid=%d", c.State, host(c.Pid))
	}
	return &drivers.TaskStatus{
		ID: h.taskConfig.ID, Name: h.taskConfig.Name, State: h.procState,
		StartedAt: h.startedAt, CompletedAt: h.completed, ExitResult: h.result.Copy(),
		DriverAttributes: attrs,
	}
}

// stop asks the session to stop the app and waits for the supervisor.
func (h *taskHandle) stop(signal string, timeout time.Duration) error {
	if !h.IsRunning() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := h.client.Stop(ctx, signal, timeout)
	cancel()
	if err == nil {
		t := time.NewTimer(timeout + stopMargin)
		defer t.Stop()
		select {
		case <-h.doneCh:
			return nil
		case <-t.C:
			h.logger.Warn("session did not stop in time; killing it", "timeout", timeout+stopMargin)
		}
	} else {
		h.logger.Warn("session unreachable; stopping it through the executor", "error", err)
	}
	if err := h.exec.Shutdown(signal, timeout); err != nil && !h.pluginClient.Exited() {
		return fmt.Errorf("executor shutdown: %w", err)
	}
	<-h.doneCh
	return nil
}

func (h *taskHandle) signal(name string) error {
	sig, ok := signals.SignalLookup[strings.ToUpper(name)]
	if !ok {
		return fmt.Errorf("signal: %q is not a signal name such as SIGHUP or SIGUSR1", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.client.Signal(ctx, strings.ToUpper(name)); err != nil {
		h.logger.Warn("session unreachable; signalling the supervisor", "error", err)
		return h.exec.Signal(sig)
	}
	return nil
}

// execCommand wraps a command so it runs in the sandbox as the task user,
// with the session's environment.
func (h *taskHandle) execCommand(cmd []string) []string {
	return append([]string{sandboxSelf, "session", "exec",
		"--uid", strconv.Itoa(h.uid), "--gid", strconv.Itoa(h.gid),
		"--env-file", filepath.Join(h.runtimeDir, sessionapi.UserDir, sessionapi.EnvFile), "--"}, cmd...)
}

// cleanup removes what a session leaves when its supervisor could not clean
// up itself (killed outright): its runtime dir. Its display lived in the
// sandbox's /tmp, which is the task dir's.
func (h *taskHandle) cleanup() {
	h.cleanOnce.Do(func() {
		if err := os.RemoveAll(h.runtimeDir); err != nil {
			h.logger.Warn("remove runtime dir", "dir", h.runtimeDir, "error", err)
		}
	})
}
