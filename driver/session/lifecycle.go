package session

import (
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// Timing of the session's own lifecycle.
const (
	playerEventWindow = 10 * time.Second
	appTailLines      = 20
)

// lifecycle holds the timers that let a session end itself: no player for
// idle_timeout, max_session_duration reached (players warned first), or a
// streamer that never identified within startup_timeout. Its methods run
// on the supervise loop, except timeLeft, which /api/status calls, and
// claimChanged, which the signalling server's claim hook calls; the mutex
// guards what those share.
type lifecycle struct {
	d config.Durations

	idle, warn, max, startup *time.Timer
	// playerFlush fires when coalesced player events are due.
	playerFlush *time.Timer

	mu           sync.Mutex
	idleDeadline time.Time // zero while players are connected
	maxDeadline  time.Time

	lastPlayerEvent time.Time
	joins, leaves   int
	players         int

	// pooled: a gateway pool session nobody has claimed yet. It waits for
	// its visitor however long that takes; idle_timeout counts only once
	// it is claimed (and again whenever it returns to the pool, it stops).
	pooled bool
}

func newLifecycle(d config.Durations) *lifecycle {
	if d.Stop == 0 {
		d.Stop = config.DefaultStopTimeout
	}
	return &lifecycle{d: d}
}

// appStarted arms the timers that count from the app's start.
func (l *lifecycle) appStarted(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.d.Idle > 0 {
		l.idle = time.NewTimer(l.d.Idle)
		l.idleDeadline = now.Add(l.d.Idle)
		if l.pooled {
			l.idle.Stop()
			l.idleDeadline = time.Time{}
		}
	}
	if l.d.MaxSession > 0 {
		l.max = time.NewTimer(l.d.MaxSession)
		l.maxDeadline = now.Add(l.d.MaxSession)
		if l.d.Warning > 0 && l.d.Warning < l.d.MaxSession {
			l.warn = time.NewTimer(l.d.MaxSession - l.d.Warning)
		}
	}
	if l.d.Startup > 0 {
		l.startup = time.NewTimer(l.d.Startup)
	}
}

// playersChanged restarts the idle countdown when the last player leaves
// and stops it while anyone is connected. A player who reconnects after a
// network blip is simply a player again: the countdown stops once more.
func (l *lifecycle) playersChanged(n int, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.players = n
	if l.idle == nil || l.pooled {
		return
	}
	l.idle.Stop()
	if n > 0 {
		l.idleDeadline = time.Time{}
		return
	}
	l.idle.Reset(l.d.Idle)
	l.idleDeadline = now.Add(l.d.Idle)
}

func (l *lifecycle) streamerIdentified() {
	if l.startup != nil {
		l.startup.Stop()
		l.startup = nil
	}
}

// claimChanged follows the session's gateway claim: free (and claimed, the
// claim's own timeout frees it) keep the idle countdown stopped, busy starts
// the session's own lifecycle. It may run on any goroutine: timers are safe to
// stop and reset concurrently, and the fields are under l.mu.
func (l *lifecycle) claimChanged(st playerhttp.ClaimState, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case playerhttp.ClaimFree:
		l.pooled = true
		if l.idle != nil {
			l.idle.Stop()
			l.idleDeadline = time.Time{}
		}
	case playerhttp.ClaimBusy:
		// The visitor's player came: from now on the session's own rules
		// apply (while claimed, the claim's timeout governs instead).
		l.pooled = false
		if l.idle != nil && l.players == 0 {
			l.idle.Reset(l.d.Idle)
			l.idleDeadline = now.Add(l.d.Idle)
		}
	}
}

// timeLeft is what /api/status shows of the session's remaining time.
func (l *lifecycle) timeLeft() map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]any{}
	now := time.Now()
	if l.d.Idle > 0 {
		out["idle_timeout_s"] = l.d.Idle.Seconds()
		if !l.idleDeadline.IsZero() {
			out["idle_timeout_left_s"] = max(0, l.idleDeadline.Sub(now).Seconds())
		}
	}
	if l.d.MaxSession > 0 && !l.maxDeadline.IsZero() {
		out["max_session_duration_s"] = l.d.MaxSession.Seconds()
		out["max_session_left_s"] = max(0, l.maxDeadline.Sub(now).Seconds())
	}
	return out
}

// playerEvent counts a join or leave and says whether to emit an event now;
// otherwise a flush is scheduled, so a busy session emits at most one player
// event per window.
func (l *lifecycle) playerEvent(joined bool, now time.Time) (emitNow bool) {
	if joined {
		l.joins++
	} else {
		l.leaves++
	}
	if now.Sub(l.lastPlayerEvent) >= playerEventWindow {
		return true
	}
	if l.playerFlush == nil {
		l.playerFlush = time.NewTimer(playerEventWindow - now.Sub(l.lastPlayerEvent))
	}
	return false
}

// playerSummary is the coalesced player event and resets the counters.
func (l *lifecycle) playerSummary(now time.Time) string {
	var parts []string
	if l.joins > 0 {
		parts = append(parts, plural(l.joins, "player connected", "players connected"))
	}
	if l.leaves > 0 {
		parts = append(parts, plural(l.leaves, "player disconnected", "players disconnected"))
	}
	l.joins, l.leaves = 0, 0
	l.lastPlayerEvent = now
	l.playerFlush = nil
	return fmt.Sprintf("%s (%s now)", strings.Join(parts, ", "), plural(l.players, "player", "players"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// onLifecycleEvent runs on the supervise loop for every signalling event.
func (s *supervisor) onLifecycleEvent(e signalling.Event) {
	now := time.Now()
	switch e.Kind {
	case signalling.StreamerIdentified:
		s.lc.streamerIdentified()
	case signalling.PlayerConnected, signalling.PlayerDisconnected:
		s.lc.playersChanged(e.Players, now)
		if s.lc.playerEvent(e.Kind == signalling.PlayerConnected, now) {
			s.store.emit(sessionapi.EventPlayers, s.lc.playerSummary(now), map[string]string{"players": fmt.Sprint(e.Players)})
		}
	}
}

// claimConfig makes the signalling server a gateway pool session when the
// task has a gateway block. It runs when signalling starts, before the app
// (and so before appStarted arms the idle timer).
func (s *supervisor) claimConfig() playerhttp.ClaimConfig {
	g := s.cfg.Task.Gateway
	if g.Secret == "" && s.cfg.ClaimKey == "" {
		return playerhttp.ClaimConfig{}
	}
	s.lc.mu.Lock()
	s.lc.pooled = true
	s.lc.mu.Unlock()
	cc := playerhttp.ClaimConfig{Secret: g.Secret, AllocID: s.cfg.AllocID, TTL: g.ClaimTTL(), ReturnToPool: g.ReturnToPool, OnChange: s.onClaim}
	if k, err := hex.DecodeString(s.cfg.ClaimKey); err == nil && len(k) == len(cc.Key) {
		copy(cc.Key[:], k)
	}
	return cc
}

// onClaim keeps the lifecycle in step with the claim and reports it as a
// task event that names the visitor and the subject the gateway
// authenticated (never a token).
func (s *supervisor) onClaim(e playerhttp.ClaimEvent) {
	s.lc.claimChanged(e.State, time.Now())
	details := map[string]string{"state": string(e.State)}
	if e.Visitor != "" {
		details["visitor"] = e.Visitor
	}
	if e.Subject != "" {
		details["subject"] = e.Subject
	}
	var msg string
	switch e.State {
	case playerhttp.ClaimClaimed:
		msg = "Claimed by the gateway for visitor " + orDash(e.Visitor)
		if e.Subject != "" {
			msg += " (subject " + e.Subject + ")"
		}
	case playerhttp.ClaimBusy:
		msg = "Visitor " + orDash(e.Visitor) + " is streaming"
	default:
		msg = "Back in the gateway's pool"
		if e.Reason != "" {
			msg += ": " + e.Reason
		}
	}
	s.store.emit(sessionapi.EventClaim, msg, details)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// endSession stops the app because the session decided to end: the task
// completes with exit code 0 and the event says why.
func (s *supervisor) endSession(kind, msg string) *sessionapi.Result {
	s.logger.Info("ending the session", "reason", msg)
	s.store.emit(kind, msg, nil)
	s.stopApp(lookupSignal(s.cfg.Task.StopSignal, syscall.SIGTERM), s.lc.d.Stop)
	s.teardown()
	return &sessionapi.Result{ExitCode: 0}
}

// failStartup fails the task when the streamer never identified.
func (s *supervisor) failStartup() *sessionapi.Result {
	reason := fmt.Sprintf("startup_timeout: the app's streamer did not connect to signalling within %s", s.lc.d.Startup)
	if tail := s.appTail.Tail(); len(tail) > 0 {
		reason += "; the app's last output: " + strings.Join(tail[max(0, len(tail)-10):], " | ")
	} else {
		reason += "; the app printed nothing"
	}
	s.logger.Error("startup timeout", "timeout", s.lc.d.Startup)
	s.store.emit(sessionapi.EventStartupTimeout, "Session failed: "+reason, nil)
	s.stopApp(lookupSignal(s.cfg.Task.StopSignal, syscall.SIGTERM), s.lc.d.Stop)
	s.teardown()
	return &sessionapi.Result{ExitCode: 1, Error: reason}
}
