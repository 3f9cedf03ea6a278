package pool

import (
	"errors"
	"testing"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/gateway/nomad"
)

func TestOwnAllocation(t *testing.T) {
	reg := Session{AllocID: "a1", JobID: "pixelstream-session/dispatch-1", NodeID: "n1"}
	good := func() *nomad.Allocation {
		al := &nomad.Allocation{ID: "a1", Namespace: "default", NodeID: "n1", JobID: reg.JobID, ClientStatus: "running"}
		al.Job.ID, al.Job.ParentID, al.Job.Dispatched = reg.JobID, "pixelstream-session", true
		return al
	}
	for _, tc := range []struct {
		name    string
		mod     func(*nomad.Allocation)
		ok      bool
		retried bool // not running yet: asked again, not marked foreign
	}{
		{"the gateway's own", func(*nomad.Allocation) {}, true, false},
		{"another namespace", func(a *nomad.Allocation) { a.Namespace = "other" }, false, false},
		{"another job", func(a *nomad.Allocation) { a.JobID, a.Job.ID = "evil", "evil" }, false, false},
		{"not a child", func(a *nomad.Allocation) { a.Job.ParentID = "other-parent" }, false, false},
		{"registered, not dispatched", func(a *nomad.Allocation) { a.Job.Dispatched = false }, false, false},
		{"another node", func(a *nomad.Allocation) { a.NodeID = "n2" }, false, false},
		{"another allocation", func(a *nomad.Allocation) { a.ID = "a2" }, false, false},
		{"pending", func(a *nomad.Allocation) { a.ClientStatus = "pending" }, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			al := good()
			tc.mod(al)
			err := ownAllocation(al, reg, "pixelstream-session", "default")
			if (err == nil) != tc.ok || errors.Is(err, errNotRunning) != tc.retried {
				t.Fatalf("ownAllocation: %v; want ok %v, retried %v", err, tc.ok, tc.retried)
			}
		})
	}
}

func TestToDispatch(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		c                          Counts
		minFree, demand, max, want int
		backingOff                 bool
	}{
		{"empty fleet fills min_free", Counts{}, 2, 0, 10, 2, false},
		{"free sessions count", Counts{Free: 1, Live: 1}, 2, 0, 10, 1, false},
		{"starting sessions count", Counts{Starting: 2, Live: 2}, 2, 0, 10, 0, false},
		{"waiting visitors add", Counts{Busy: 3, Live: 3}, 1, 4, 10, 5, false},
		{"never past max_sessions", Counts{Busy: 9, Live: 9}, 1, 4, 10, 1, false},
		{"at max_sessions", Counts{Busy: 10, Live: 10}, 1, 4, 10, 0, false},
		{"over max_sessions", Counts{Free: 2, Live: 12}, 1, 0, 10, 0, false},
		{"backing off", Counts{}, 2, 3, 10, 0, true},
	} {
		if got := toDispatch(tc.c, tc.minFree, tc.demand, tc.max, tc.backingOff); got != tc.want {
			t.Errorf("%s: toDispatch = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	max := 5 * time.Minute
	for streak, want := range map[int]time.Duration{-1: time.Second, 0: time.Second, 1: 2 * time.Second, 3: 8 * time.Second,
		8: 256 * time.Second, 9: max, 1000: max} {
		if got := backoff(streak, max); got != want {
			t.Errorf("backoff(%d) = %s, want %s", streak, got, want)
		}
	}
}

func TestPickAndStopVictim(t *testing.T) {
	free := func(id string) *Session { return &Session{AllocID: id, State: Free, Ready: true} }
	sessions := map[string]*Session{
		"c": free("c"), "b": free("b"),
		"a": {AllocID: "a", State: Free, Ready: false},                // not ready
		"0": {AllocID: "0", State: Busy, Ready: true},                 // taken
		"1": {AllocID: "1", State: Free, Ready: true, claiming: true}, // being claimed here
	}
	var cands []*Session
	for _, s := range sessions {
		if claimable(s) {
			cands = append(cands, s)
		}
	}
	if len(cands) != 2 {
		t.Fatalf("%d claimable, want b and c", len(cands))
	}
	if pick(nil, nil) != nil {
		t.Fatal("pick of no candidates")
	}
	for i := range cands {
		if got := pick(cands, func(int) int { return i }); got != cands[i] {
			t.Fatalf("pick(%d) = %v", i, got)
		}
	}
	if v := stopVictim(sessions); v == nil || v.AllocID != "b" {
		t.Fatalf("stop victim %v, want the free session with the lowest alloc id (b)", v)
	}
}

func TestEstimateWait(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	ends := []time.Time{t0, t0.Add(10 * time.Second), t0.Add(20 * time.Second)}
	for _, tc := range []struct {
		name    string
		pos     int
		c       Counts
		coldAvg time.Duration
		ends    []time.Time
		want    time.Duration
		ok      bool
	}{
		{"room to grow, no start seen", 1, Counts{Live: 1}, 0, nil, 30 * time.Second, false},
		{"room to grow, starts seen", 3, Counts{Live: 1}, 12 * time.Second, nil, 12 * time.Second, true},
		{"full, no ends yet", 1, Counts{Live: 4}, 12 * time.Second, ends[:1], 0, false},
		{"full, one end every 10s", 2, Counts{Live: 4}, 12 * time.Second, ends, 32 * time.Second, true},
	} {
		got, ok := estimateWait(tc.pos, tc.c, 4, tc.coldAvg, 30*time.Second, tc.ends)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: estimateWait = %s %v, want %s %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
