package pool

import (
	"math/rand/v2"
	"time"
)

// Tuning is every timing and estimation constant of the pool, in one
// place. Config.Tuning's zero fields take DefaultTuning's values.
type Tuning struct {
	// BlockWait is how long one blocking query waits at Nomad.
	BlockWait time.Duration
	// QueryRetry is the pause after a failed Nomad query.
	QueryRetry time.Duration
	// ReconcileEvery: the pool reconciles at every change of the fleet or
	// the demand, and at least this often.
	ReconcileEvery time.Duration
	// DispatchGrace: a dispatch of this replica that Nomad's children list
	// does not show yet still counts as live for this long.
	DispatchGrace time.Duration
	// OverMaxGrace: a fleet over max_sessions (it was lowered) for this
	// long has a free session stopped, one per round.
	OverMaxGrace time.Duration
	// StateFailures state reads in a row that fail make a session count as
	// starting (not free) until a read works again.
	StateFailures int
	// BackoffMax bounds the pause between dispatches while dispatched
	// sessions end before they were ever ready (1s, 2s, 4s, ... doubling).
	BackoffMax time.Duration
	// ColdDefault is the wait estimate's start time of a session until one
	// start was seen.
	ColdDefault time.Duration
	// RecentEnds is how many session ends the wait estimate looks back on.
	RecentEnds int
	// CallTimeout bounds one state read or claim at a session.
	CallTimeout time.Duration
	// NomadTimeout bounds one dispatch, stop or allocation lookup.
	NomadTimeout time.Duration
}

// DefaultTuning is what a pool runs with unless told otherwise.
func DefaultTuning() Tuning {
	return Tuning{
		BlockWait:      5 * time.Minute,
		QueryRetry:     2 * time.Second,
		ReconcileEvery: 5 * time.Second,
		DispatchGrace:  30 * time.Second,
		OverMaxGrace:   15 * time.Second,
		StateFailures:  2,
		BackoffMax:     5 * time.Minute,
		ColdDefault:    30 * time.Second,
		RecentEnds:     20,
		CallTimeout:    5 * time.Second,
		NomadTimeout:   30 * time.Second,
	}
}

// withDefaults fills t's zero fields from DefaultTuning.
func (t Tuning) withDefaults() Tuning {
	d := DefaultTuning()
	pick := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&t.BlockWait, d.BlockWait)
	pick(&t.QueryRetry, d.QueryRetry)
	pick(&t.ReconcileEvery, d.ReconcileEvery)
	pick(&t.DispatchGrace, d.DispatchGrace)
	pick(&t.OverMaxGrace, d.OverMaxGrace)
	pick(&t.BackoffMax, d.BackoffMax)
	pick(&t.ColdDefault, d.ColdDefault)
	pick(&t.CallTimeout, d.CallTimeout)
	pick(&t.NomadTimeout, d.NomadTimeout)
	if t.StateFailures <= 0 {
		t.StateFailures = d.StateFailures
	}
	if t.RecentEnds < 2 {
		t.RecentEnds = d.RecentEnds
	}
	return t
}

// toDispatch is how many sessions to dispatch now: enough that free and
// starting sessions cover min_free plus every waiting visitor, never past
// max_sessions live, and none while backing off.
func toDispatch(c Counts, minFree, demand, maxSessions int, backingOff bool) int {
	n := minFree + demand - (c.Free + c.Starting)
	if room := maxSessions - c.Live; n > room {
		n = room
	}
	if n < 0 || backingOff {
		return 0
	}
	return n
}

// backoff is the pause after failStreak dispatched sessions in a row ended
// before they were ever ready: 2s, 4s, 8s, ... up to max.
func backoff(failStreak int, max time.Duration) time.Duration {
	if failStreak < 0 {
		failStreak = 0
	}
	return min(max, time.Second<<min(failStreak, 20))
}

// claimable says whether s may be offered to a visitor.
func claimable(s *Session) bool {
	return s.State == Free && s.Ready && !s.claiming
}

// pick chooses one candidate at random (intn is rand.IntN in the pool), so
// replicas rarely race for the same session; nil when there is none.
func pick(cands []*Session, intn func(int) int) *Session {
	if len(cands) == 0 {
		return nil
	}
	if intn == nil {
		intn = rand.IntN
	}
	return cands[intn(len(cands))]
}

// stopVictim is the free session stopped when the fleet is over
// max_sessions: the lowest allocation id, so every replica picks the same.
func stopVictim(sessions map[string]*Session) *Session {
	var victim *Session
	for _, s := range sessions {
		if claimable(s) && (victim == nil || s.AllocID < victim.AllocID) {
			victim = s
		}
	}
	return victim
}

// estimateWait guesses the wait at queue position pos (1 = next): a
// session's start time while the fleet may still grow, otherwise the pace
// of recent session ends plus a start (a fresh session is dispatched for
// the visitor). ok is false while there is nothing to go on.
func estimateWait(pos int, c Counts, maxSessions int, coldAvg, coldDefault time.Duration, ends []time.Time) (time.Duration, bool) {
	cold := coldAvg
	if cold == 0 {
		cold = coldDefault
	}
	if c.Live < maxSessions {
		return cold, coldAvg > 0
	}
	if len(ends) < 2 {
		return 0, false
	}
	per := ends[len(ends)-1].Sub(ends[0]) / time.Duration(len(ends)-1)
	return time.Duration(pos)*per + cold, true
}
