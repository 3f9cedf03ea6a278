package audio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Component states reported by Components.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateRestarting = "restarting"
	StateFailed     = "failed"
	StateStopped    = "stopped"
)

// Component is a snapshot of one daemon of the stack.
type Component struct {
	Name     string
	PID      int // 0 when not running
	Restarts int // restarts since Start
	State    string
	// ReadyIn is how long its last start took, from spawn to ready.
	ReadyIn time.Duration
}

// ComponentError says which component failed and what it printed last.
type ComponentError struct {
	Component string
	Err       error
	LastLines []string
}

func (e *ComponentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", e.Component, e.Err)
	if len(e.LastLines) == 0 {
		b.WriteString("; it printed nothing (no output)")
		return b.String()
	}
	fmt.Fprintf(&b, "; its last output:")
	for _, l := range e.LastLines {
		b.WriteString("\n[" + e.Component + "] " + l)
	}
	return b.String()
}

func (e *ComponentError) Unwrap() error { return e.Err }

type component struct {
	spec       componentSpec
	name       string
	ring       *ring
	proc       *proc
	restarts   int
	history    []time.Time // restart times, pruned to the window
	state      string
	readyIn    time.Duration
	dependents []*component
}

// Stack is one session's running audio stack.
type Stack struct {
	cfg settings
	lay layout
	out *lineWriter

	mu      sync.Mutex // guards the components' proc/state/counters and busAddr
	comps   []*component
	busAddr string

	exits     chan *proc
	stopReq   chan struct{}
	quit      chan struct{} // closed when the supervisor has returned
	failed    chan error
	runCtx    context.Context
	cancelRun context.CancelFunc
	stopOnce  sync.Once
	stopErr   error
	hasFailed bool
}

// Start brings up dbus, pipewire, wireplumber and pipewire-pulse in that
// order, each once its socket answers, and then supervises them. On error
// nothing it started is left running and the runtime dir is removed.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	set, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("audio config: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s := &Stack{
		cfg:       set,
		lay:       newLayout(set.RuntimeDir, set.StateDir),
		out:       &lineWriter{w: set.Log},
		exits:     make(chan *proc, 2*len(specs)),
		stopReq:   make(chan struct{}),
		quit:      make(chan struct{}),
		failed:    make(chan error, 1),
		runCtx:    runCtx,
		cancelRun: cancel,
	}
	byName := map[string]*component{}
	for _, sp := range specs {
		c := &component{spec: sp, name: sp.name, ring: newRing(ringLines), state: StateStopped}
		s.comps = append(s.comps, c)
		byName[sp.name] = c
	}
	for _, c := range s.comps {
		for _, d := range c.spec.dependents {
			c.dependents = append(c.dependents, byName[d])
		}
	}

	if err := makeRuntimeDir(s.lay.runtime, set.Credential); err != nil {
		cancel()
		close(s.quit)
		return nil, fmt.Errorf("start audio: %w", err)
	}
	if err := s.lay.writeConfig(set.Credential); err != nil {
		cancel()
		close(s.quit)
		_ = os.RemoveAll(s.lay.runtime)
		return nil, fmt.Errorf("start audio: %w", err)
	}
	t0 := time.Now()
	for _, c := range s.comps {
		if err := s.startComponent(ctx, c); err != nil {
			s.shutdown()
			cancel()
			close(s.quit)
			return nil, fmt.Errorf("start audio: %w", err)
		}
	}
	s.cfg.Logger.Debug("audio stack ready", "runtime_dir", s.lay.runtime, "duration", time.Since(t0))
	go s.supervise()
	return s, nil
}

// startComponent spawns c and waits until it is ready. On failure the
// process is stopped and the error names c with its last output.
func (s *Stack) startComponent(ctx context.Context, c *component) error {
	s.setState(c, StateStarting)
	l, err := c.spec.launch(s)
	if err != nil {
		return &ComponentError{Component: c.name, Err: err}
	}
	t0 := time.Now()
	p, err := spawn(procSpec{
		comp:   c,
		bin:    l.bin,
		args:   l.args,
		env:    s.daemonEnv(),
		cred:   s.cfg.Credential,
		extra:  l.extra,
		out:    s.out,
		onExit: s.notifyExit,
	})
	if l.started != nil {
		l.started(err == nil)
	}
	if err != nil {
		s.setState(c, StateFailed)
		return &ComponentError{Component: c.name, Err: fmt.Errorf("run %s: %w", l.bin, err)}
	}
	s.mu.Lock()
	c.proc = p
	s.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	if err := l.ready(rctx, p); err != nil {
		if _, kerr := p.stop(s.cfg.StopTimeout); kerr != nil {
			s.cfg.Logger.Error("cannot stop component", "component", c.name, "error", kerr)
		}
		s.setState(c, StateFailed)
		return &ComponentError{Component: c.name, Err: err, LastLines: c.ring.last()}
	}
	s.mu.Lock()
	c.state = StateRunning
	c.readyIn = time.Since(t0)
	s.mu.Unlock()
	s.cfg.Logger.Debug("component ready", "component", c.name, "pid", p.pid, "duration", time.Since(t0))
	return nil
}

func (s *Stack) setState(c *component, state string) {
	s.mu.Lock()
	c.state = state
	s.mu.Unlock()
}

// notifyExit hands a process exit to the supervisor; after the supervisor
// has returned nobody listens, and the exit needs no handling.
func (s *Stack) notifyExit(p *proc) {
	select {
	case s.exits <- p:
	case <-s.quit:
	}
}

// Failed receives one error, a *ComponentError, when a component died and
// could not be kept alive within the restart budget. It is never closed.
func (s *Stack) Failed() <-chan error { return s.failed }

// Components returns the state of each daemon, in start order.
func (s *Stack) Components() []Component {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Component, 0, len(s.comps))
	for _, c := range s.comps {
		pc := Component{Name: c.name, Restarts: c.restarts, State: c.state, ReadyIn: c.readyIn}
		if c.proc != nil && !c.proc.done() {
			pc.PID = c.proc.pid
		}
		out = append(out, pc)
	}
	return out
}

// RuntimeDir is the stack's private XDG_RUNTIME_DIR.
func (s *Stack) RuntimeDir() string { return s.lay.runtime }

// Stop stops pipewire-pulse, wireplumber, pipewire and dbus in that order
// (SIGTERM, then SIGKILL after StopTimeout each) and removes the runtime dir.
// ctx bounds only how long Stop waits; the shutdown itself always runs to the
// end. Calling Stop again returns the first result.
func (s *Stack) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.cancelRun()
		close(s.stopReq)
	})
	select {
	case <-s.quit:
		return s.stopErr
	case <-ctx.Done():
		return fmt.Errorf("stop audio: %w", ctx.Err())
	}
}

// shutdown stops every component in reverse start order and removes the
// runtime dir. Runs on the supervisor goroutine (or in Start before it exists).
func (s *Stack) shutdown() {
	var errs []error
	for i := len(s.comps) - 1; i >= 0; i-- {
		c := s.comps[i]
		s.mu.Lock()
		p := c.proc
		s.mu.Unlock()
		if p == nil {
			continue
		}
		t0 := time.Now()
		killed, err := p.stop(s.cfg.StopTimeout)
		s.cfg.Logger.Debug("component stopped", "component", c.name, "pid", p.pid, "duration", time.Since(t0))
		if killed {
			s.cfg.Logger.Warn("component ignored SIGTERM, killed", "component", c.name, "pid", p.pid)
		}
		if err != nil {
			errs = append(errs, err)
		}
		s.setState(c, StateStopped)
	}
	if err := os.RemoveAll(s.lay.runtime); err != nil {
		errs = append(errs, fmt.Errorf("remove runtime dir: %w", err))
	}
	s.stopErr = errors.Join(errs...)
}
