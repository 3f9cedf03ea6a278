package session

import (
	"testing"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// TestPlayerEventsAreCoalesced: the first join or leave is reported at once;
// within the next window they are counted and reported together.
func TestPlayerEventsAreCoalesced(t *testing.T) {
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at      time.Duration
		joined  bool
		players int
		emit    bool
		summary string // when emitted (now or at the flush)
	}{
		{0, true, 1, true, "1 player connected (1 player now)"},
		{time.Second, true, 2, false, ""},
		{2 * time.Second, true, 3, false, ""},
		{3 * time.Second, false, 2, false, "2 players connected, 1 player disconnected (2 players now)"},
		{20 * time.Second, false, 1, true, "1 player disconnected (1 player now)"},
	}
	l := newLifecycle(config.Durations{})
	for i, s := range steps {
		now := t0.Add(s.at)
		l.players = s.players
		emit := l.playerEvent(s.joined, now)
		if emit != s.emit {
			t.Fatalf("step %d: emit = %v, want %v", i, emit, s.emit)
		}
		if emit {
			if got := l.playerSummary(now); got != s.summary {
				t.Fatalf("step %d: %q, want %q", i, got, s.summary)
			}
		} else if s.summary != "" {
			if l.playerFlush == nil {
				t.Fatalf("step %d: no flush scheduled", i)
			}
			if got := l.playerSummary(now); got != s.summary {
				t.Fatalf("step %d flush: %q, want %q", i, got, s.summary)
			}
		}
	}
}

// TestIdleCountdown: it runs from the app's start while nobody watches,
// stops while a player is connected and starts over when the last leaves.
func TestIdleCountdown(t *testing.T) {
	l := newLifecycle(config.Durations{Idle: time.Minute, MaxSession: time.Hour})
	t0 := time.Now()
	l.appStarted(t0)
	defer l.idle.Stop()
	defer l.max.Stop()
	left := func() (float64, bool) {
		v, ok := l.timeLeft()["idle_timeout_left_s"].(float64)
		return v, ok
	}
	if v, ok := left(); !ok || v > 60 || v < 59 {
		t.Fatalf("idle left after start = %v, %v", v, ok)
	}
	l.playersChanged(1, t0.Add(10*time.Second))
	if _, ok := left(); ok {
		t.Fatal("idle countdown runs while a player is connected")
	}
	l.playersChanged(0, time.Now())
	if v, ok := left(); !ok || v < 59 {
		t.Fatalf("idle countdown did not start over: %v, %v", v, ok)
	}
	if v, ok := l.timeLeft()["max_session_left_s"].(float64); !ok || v < 3590 {
		t.Fatalf("max session left = %v, %v", v, ok)
	}
}

func TestLifecycleOff(t *testing.T) {
	l := newLifecycle(config.Durations{})
	l.appStarted(time.Now())
	l.playersChanged(0, time.Now())
	if l.idle != nil || l.max != nil || l.warn != nil || l.startup != nil || len(l.timeLeft()) != 0 {
		t.Fatalf("timers armed without settings: %+v", l.timeLeft())
	}
	if l.d.Stop != config.DefaultStopTimeout {
		t.Fatalf("stop timeout %s, want the default %s", l.d.Stop, config.DefaultStopTimeout)
	}
}
