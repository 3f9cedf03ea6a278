package session

import (
	"testing"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
)

// TestPoolSessionIdleCountdown: an unclaimed pool session does not count
// down idle_timeout; a claim starts the session's own lifecycle, and a
// session returned to the pool stops counting again.
func TestPoolSessionIdleCountdown(t *testing.T) {
	l := newLifecycle(config.Durations{Idle: time.Minute})
	l.pooled = true // what claimConfig sets for a task with a gateway block
	t0 := time.Now()
	l.appStarted(t0)
	defer l.idle.Stop()
	left := func() (float64, bool) {
		v, ok := l.timeLeft()["idle_timeout_left_s"].(float64)
		return v, ok
	}
	steps := []struct {
		name    string
		do      func()
		running bool
	}{
		{"free after start", func() {}, false},
		{"no player, still free", func() { l.playersChanged(0, time.Now()) }, false},
		{"claimed: the claim's timeout governs", func() { l.claimChanged(playerhttp.ClaimClaimed, time.Now()) }, false},
		{"busy: the visitor's player", func() {
			l.playersChanged(1, time.Now())
			l.claimChanged(playerhttp.ClaimBusy, time.Now())
		}, false},
		{"the visitor left", func() { l.playersChanged(0, time.Now()) }, true},
		{"returned to the pool", func() { l.claimChanged(playerhttp.ClaimFree, time.Now()) }, false},
	}
	for _, s := range steps {
		s.do()
		if _, ok := left(); ok != s.running {
			t.Fatalf("%s: idle countdown running = %v, want %v", s.name, ok, s.running)
		}
	}
	select {
	case <-l.idle.C:
		t.Fatal("the idle timer fired for a pool session")
	default:
	}
}
