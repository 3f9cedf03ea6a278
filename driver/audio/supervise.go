package audio

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// supervise owns every change to the running stack after Start: restarts,
// failure and shutdown all happen on this goroutine, so they never race.
func (s *Stack) supervise() {
	defer close(s.quit)
	for {
		select {
		case <-s.stopReq:
			s.shutdown()
			return
		case p := <-s.exits:
			if p.intentional.Load() || s.stale(p) {
				continue
			}
			if s.hasFailed {
				// The session is already failing; the exit is only recorded.
				s.cfg.Logger.Debug("component down after the stack failed", "component", p.comp.name, "reason", p.describeExit())
				s.setState(p.comp, StateFailed)
				continue
			}
			s.heal(p.comp, p.describeExit())
		}
	}
}

// stale reports an exit of a process that is no longer the component's
// current one (already replaced by a restart).
func (s *Stack) stale(p *proc) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return p.comp.proc != p
}

// heal restarts c (and what depends on it) with backoff, within the budget.
func (s *Stack) heal(c *component, reason string) {
	s.cfg.Logger.Warn("audio component died", "component", c.name, "reason", reason)
	s.setState(c, StateRestarting)
	for {
		attempt := s.attemptsInWindow(c) + 1
		if attempt > s.cfg.MaxRestarts {
			s.fail(c, reason)
			return
		}
		if !s.pause(s.backoff(attempt)) {
			return
		}
		// When PipeWire dies, WirePlumber exits too and its exit may be
		// reported first; the earliest dead component is the one to charge.
		if d := s.earliestDead(); d != nil && s.index(d) < s.index(c) {
			c, reason = d, d.proc.describeExit()
			s.setState(c, StateRestarting)
			continue
		}
		s.mu.Lock()
		c.history = append(c.history, time.Now())
		c.restarts++
		s.mu.Unlock()
		withIt, err := s.restartFrom(c)
		if err == nil {
			msg := reason
			if len(withIt) > 0 {
				msg += "; restarted with it: " + strings.Join(withIt, ", ")
			}
			s.cfg.Logger.Info("audio component restarted", "component", c.name, "attempt", attempt, "reason", msg)
			if s.cfg.OnRestart != nil {
				s.cfg.OnRestart(c.name, attempt, msg)
			}
			return
		}
		if s.stopping() {
			return
		}
		// A restart that does not come up counts as another death; it may
		// be a dependent that failed to come back, which is then the one charged.
		var ce *ComponentError
		if errors.As(err, &ce) {
			c = s.comps[s.indexOf(ce.Component)]
			err = ce.Err
		}
		reason = fmt.Sprintf("restart failed: %v", err)
		s.cfg.Logger.Warn("audio component restart failed", "component", c.name, "error", err)
	}
}

// restartFrom stops the running dependents of c, then starts c and every
// later component that is not running, in start order. It returns the names
// of the components restarted along with c.
func (s *Stack) restartFrom(c *component) ([]string, error) {
	for i := len(c.dependents) - 1; i >= 0; i-- {
		d := c.dependents[i]
		s.mu.Lock()
		p := d.proc
		s.mu.Unlock()
		if p != nil && !p.done() {
			if _, err := p.stop(s.cfg.StopTimeout); err != nil {
				return nil, &ComponentError{Component: d.name, Err: err, LastLines: d.ring.last()}
			}
		}
		s.setState(d, StateRestarting)
	}
	var withIt []string
	for i := s.index(c); i < len(s.comps); i++ {
		x := s.comps[i]
		s.mu.Lock()
		running := x.proc != nil && !x.proc.done()
		s.mu.Unlock()
		if x != c && running {
			continue
		}
		if err := s.startComponent(s.runCtx, x); err != nil {
			return withIt, err
		}
		if x != c {
			withIt = append(withIt, x.name)
		}
	}
	return withIt, nil
}

func (s *Stack) fail(c *component, reason string) {
	s.hasFailed = true
	s.mu.Lock()
	for _, x := range s.comps {
		// Dependents that went down with c stay down with it.
		if x == c || (x.proc != nil && x.proc.done() && !x.proc.intentional.Load()) {
			x.state = StateFailed
		}
	}
	s.mu.Unlock()
	err := &ComponentError{
		Component: c.name,
		Err: fmt.Errorf("died (%s) after %d restarts within %v: giving up",
			reason, s.cfg.MaxRestarts, s.cfg.RestartWindow),
		LastLines: c.ring.last(),
	}
	s.cfg.Logger.Error("audio component cannot be kept alive", "component", c.name, "reason", reason)
	s.failed <- err // capacity 1, and fail runs at most once
}

// attemptsInWindow counts c's restarts within the window, forgetting older ones.
func (s *Stack) attemptsInWindow(c *component) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff := time.Now().Add(-s.cfg.RestartWindow)
	kept := c.history[:0]
	for _, t := range c.history {
		if t.After(cutoff) {
			kept = append(kept, t)
		}
	}
	c.history = kept
	return len(kept)
}

func (s *Stack) backoff(attempt int) time.Duration {
	d := s.cfg.backoffBase
	for i := 1; i < attempt && d < s.cfg.backoffMax; i++ {
		d *= 2
	}
	return min(d, s.cfg.backoffMax)
}

// pause waits d, or returns false at once when Stop was called.
func (s *Stack) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stopReq:
		return false
	}
}

func (s *Stack) stopping() bool {
	select {
	case <-s.stopReq:
		return true
	default:
		return false
	}
}

// earliestDead returns the first component, in start order, whose process
// died on its own.
func (s *Stack) earliestDead() *component {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.comps {
		if c.proc != nil && c.proc.done() && !c.proc.intentional.Load() {
			return c
		}
	}
	return nil
}

func (s *Stack) index(c *component) int { return s.indexOf(c.name) }

func (s *Stack) indexOf(name string) int {
	for i, c := range s.comps {
		if c.name == name {
			return i
		}
	}
	return 0
}
