// Package pool keeps the gateway's view of the session fleet and its warm
// pool: which sessions exist (Nomad's service registrations, by blocking
// query), which of them are free (each session's own /api/claim state),
// how many more to dispatch (min_free plus waiting visitors, never past
// max_sessions), and claiming one for a visitor. Claims are atomic at the
// session, so replicas of the gateway share nothing.
package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/metrics"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/nomad"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/sessiontls"
	"github.com/pixelstream/nomad-driver-pixelstream/quality"
)

// Session states as the gateway sees them: Starting, and the session's
// own claim states.
const (
	Starting = "starting" // registered, streamer not ready or state unknown yet
	Free     = string(claim.Free)
	Claimed  = string(claim.Claimed)
	Busy     = string(claim.Busy)
)

// Session is one registered session.
type Session struct {
	AllocID string `json:"alloc_id"`
	NodeID  string `json:"node_id"`
	JobID   string `json:"job_id"`
	Addr    string `json:"address"`
	State   string `json:"state"`
	Ready   bool   `json:"ready"`
	Visitor string `json:"visitor,omitempty"` // the visitor's pseudonym
	Subject string `json:"subject,omitempty"`
	Address string `json:"visitor_address,omitempty"` // the visitor's address's pseudonym
	Claim   string `json:"-"`                         // the claim id: with the key, the player token
	// Quality is what the session last said of its players' stream quality.
	Quality *quality.Session `json:"quality,omitempty"`

	claiming bool      // a claim of this replica is in flight
	failures int       // state reads in a row that failed
	seen     time.Time // first registration seen
	// own: Nomad confirmed the allocation is a live child of the session
	// job in the gateway's namespace. Until then the registration is not
	// polled, claimed, counted or proxied to: anyone may register the
	// service name.
	own      bool
	checking bool // an allocation lookup is in flight
	foreign  bool // Nomad said no: never asked again
}

// Assignment is a session claimed for one visitor.
type Assignment struct {
	Session Session
	Token   string
	Expires time.Time
}

// ErrNoSession means no free session could be claimed now.
var ErrNoSession = errors.New("no free session")

// Config configures a pool.
type Config struct {
	// TLS reaches sessions over HTTPS (nil: plain HTTP).
	TLS          *sessiontls.Dialer
	Job          string
	Namespace    string
	Service      string
	Secret       string
	MinFree      int
	MaxSessions  int
	StateEvery   time.Duration
	DispatchMeta map[string]string
	Logger       hclog.Logger
	Metrics      *metrics.Metrics
	// Self is this replica's allocation id ($NOMAD_ALLOC_ID) and Peers the
	// gateway's own service name: of the replicas registered there, the one
	// with the lowest allocation id dispatches and trims, the others only
	// claim, so replicas never race each other into the job. Without Self
	// (run by hand) this replica always dispatches.
	Self  string
	Peers string
	// Tuning: timings and estimates (policy.go); zero fields take defaults.
	Tuning Tuning
}

// Pool is the fleet view and the dispatcher.
type Pool struct {
	cfg   Config
	nomad *nomad.Client
	hc    *http.Client
	lc    *http.Client // blocking state reads
	log   hclog.Logger
	m     *metrics.Metrics

	mu       sync.Mutex
	sessions map[string]*Session  // by alloc id
	children map[string]time.Time // live dispatched children, by job id: when first known
	childIdx uint64
	synced   bool // the service watch has answered once
	kids     bool // the children watch has answered once
	demand   int  // visitors waiting for a session
	changed  chan struct{}
	ends     []time.Time          // recent session ends and returns to the pool
	coldAvg  time.Duration        // dispatch to free, smoothed
	started  map[string]time.Time // dispatched, not yet free once
	kick     chan struct{}
	// Sessions that ended before they were ever ready (a broken job, a
	// node that cannot run it) back the dispatches off, so a fleet that
	// cannot start does not become a dispatch storm.
	failStreak int
	holdUntil  time.Time
	leader     bool      // this replica dispatches (see Config.Self)
	overSince  time.Time // when the fleet went over max_sessions
}

// New returns a pool; Run starts it.
func New(cfg Config, nc *nomad.Client) *Pool {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	cfg.Tuning = cfg.Tuning.withDefaults()
	return &Pool{cfg: cfg, nomad: nc, log: cfg.Logger, m: cfg.Metrics, leader: cfg.Self == "" || cfg.Peers == "",
		hc: &http.Client{Timeout: cfg.Tuning.CallTimeout, Transport: sessionTransport(cfg.TLS, 4, 30*time.Second, 0)},
		// Blocking state reads: bounded by their context, not a client timeout.
		lc:       &http.Client{Transport: sessionTransport(cfg.TLS, 2, 2*claim.MaxWait, claim.MaxWait+5*time.Second)},
		sessions: map[string]*Session{}, children: map[string]time.Time{},
		changed: make(chan struct{}), started: map[string]time.Time{}, kick: make(chan struct{}, 1)}
}

// Run watches Nomad and the sessions until ctx ends.
func (p *Pool) Run(ctx context.Context) {
	go p.watchServices(ctx)
	go p.watchChildren(ctx)
	go p.followStates(ctx)
	if !p.leader {
		go p.watchPeers(ctx)
	}
	p.reconcileLoop(ctx)
}

// Changed is closed at the next change of the fleet.
func (p *Pool) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func (p *Pool) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
	p.updateGaugesLocked()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// SetDemand tells the pool how many visitors wait for a session, so it
// dispatches for them too (up to max_sessions).
func (p *Pool) SetDemand(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.demand != n {
		p.demand = n
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// Sessions lists the known sessions, by alloc id.
func (p *Pool) Sessions() []Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Session, 0, len(p.sessions))
	for _, s := range p.sessions {
		if s.own {
			out = append(out, *s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AllocID < out[j].AllocID })
	return out
}

// Lookup returns a live session by alloc id.
func (p *Pool) Lookup(allocID string) (Session, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.sessions[allocID]
	if !ok || !p.liveLocked(s, time.Now()) {
		return Session{}, false
	}
	return *s, true
}

// liveLocked says whether a registered session's job is still live. A
// registration can outlive its job for a while (a lost node's allocations),
// and such a session must neither count nor be handed out. A registration
// seen moments ago may be ahead of the job list.
func (p *Pool) liveLocked(s *Session, _ time.Time) bool {
	if !s.own {
		return false
	}
	_, ok := p.children[s.JobID]
	return ok
}

// verify asks Nomad whether s's allocation is what its registration says:
// a running allocation of a live child of the session job, in the gateway's
// namespace, on the node named. Only then does the gateway talk to it.
// Nomad registers a session's service as its task starts, before the
// client reports the allocation running: an allocation of the gateway's
// own job that is not running yet is watched with blocking queries, so
// the gateway trusts it the moment it runs (a cold start waits for that).
func (p *Pool) verify(ctx context.Context, s Session) {
	var index uint64
	for {
		wait := time.Duration(0)
		if index > 0 {
			wait = p.cfg.Tuning.BlockWait
		}
		actx, cancel := context.WithTimeout(ctx, p.cfg.Tuning.NomadTimeout+wait)
		al, next, err := p.nomad.AllocationAfter(actx, s.AllocID, index, wait)
		cancel()
		if !p.verified(s, al, err) || ctx.Err() != nil {
			return
		}
		index = next
	}
}

// verified applies one allocation lookup; true means look again (the
// allocation is the gateway's own but not running yet, and the session is
// still registered).
func (p *Pool) verified(s Session, al *nomad.Allocation, err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, ok := p.sessions[s.AllocID]
	if !ok {
		return false
	}
	cur.checking = false
	var apiErr *nomad.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
		err = errors.New("no such allocation in Nomad")
	case err != nil:
		p.log.Warn("checking a session's allocation failed; will retry", "alloc", s.AllocID, "error", err)
		return false
	}
	if err == nil {
		err = ownAllocation(al, s, p.cfg.Job, p.cfg.Namespace)
	}
	if errors.Is(err, errNotRunning) {
		if al.ClientStatus != "pending" {
			return false // complete, failed, lost: its registration goes too
		}
		cur.checking = true // a blocking query follows it until it runs
		return true
	}
	if err != nil {
		cur.foreign = true
		p.m.ForeignRegistrations.Inc()
		p.log.Warn("ignoring a registration of the session service that is not this gateway's session", "service", p.cfg.Service,
			"alloc", s.AllocID, "job", s.JobID, "reason", err)
		return false
	}
	cur.own = true
	p.log.Info("session confirmed: a running allocation of the session job", "alloc", s.AllocID)
	p.notifyLocked()
	return false
}

// ownAllocation says why al is not the gateway's session s claims to be,
// or nil when it is.
func ownAllocation(al *nomad.Allocation, s Session, job, namespace string) error {
	switch {
	case al.ID != s.AllocID:
		return fmt.Errorf("allocation %q answered for %q", al.ID, s.AllocID)
	case al.Namespace != namespace:
		return fmt.Errorf("allocation is in namespace %q, not %q", al.Namespace, namespace)
	case al.JobID != s.JobID || al.Job.ID != s.JobID:
		return fmt.Errorf("allocation belongs to job %q, the registration says %q", al.JobID, s.JobID)
	case al.Job.ParentID != job || !al.Job.Dispatched:
		return fmt.Errorf("job %q is not a dispatched child of %q", al.JobID, job)
	case al.NodeID != s.NodeID:
		return fmt.Errorf("allocation runs on node %q, the registration says %q", al.NodeID, s.NodeID)
	case al.ClientStatus != "running":
		return fmt.Errorf("%w: %s", errNotRunning, al.ClientStatus)
	}
	return nil
}

// errNotRunning is an allocation of the gateway's own job that is not (or
// not yet) running: not a foreign one.
var errNotRunning = errors.New("allocation is not running")

// Forget marks a session the gateway could not reach as not ready, so no
// visitor is sent to it until its state reads work again.
func (p *Pool) Forget(allocID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.sessions[allocID]; ok {
		s.Ready = false
		s.State = Starting
		p.notifyLocked()
	}
}

// Counts is the fleet by state; Live counts dispatched children that have
// not ended, registered or not.
type Counts struct {
	Starting int `json:"starting"`
	Free     int `json:"free"`
	Claimed  int `json:"claimed"`
	Busy     int `json:"busy"`
	Live     int `json:"live"`
}

// Counts returns the fleet by state.
func (p *Pool) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.countsLocked()
}

func (p *Pool) countsLocked() Counts {
	c := Counts{Live: len(p.children)}
	registered := 0
	now := time.Now()
	for _, s := range p.sessions {
		if !p.liveLocked(s, now) {
			continue
		}
		registered++
		switch {
		case claimable(s):
			c.Free++
		case s.State == Claimed || s.claiming:
			c.Claimed++
		case s.State == Busy:
			c.Busy++
		default:
			c.Starting++
		}
	}
	if unregistered := c.Live - registered; unregistered > 0 {
		c.Starting += unregistered
	}
	if c.Live < registered {
		c.Live = registered
	}
	return c
}

func (p *Pool) updateGaugesLocked() {
	c := p.countsLocked()
	p.m.Sessions.WithLabelValues(Starting).Set(float64(c.Starting))
	p.m.Sessions.WithLabelValues(Free).Set(float64(c.Free))
	p.m.Sessions.WithLabelValues(Claimed).Set(float64(c.Claimed))
	p.m.Sessions.WithLabelValues(Busy).Set(float64(c.Busy))
}

// EstimateWait guesses how long the visitor at position pos (1 = next)
// waits: a dispatch's start time while the fleet may grow, otherwise the
// recent pace of sessions ending. ok is false while there is nothing to
// go on.
func (p *Pool) EstimateWait(pos int) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return estimateWait(pos, p.countsLocked(), p.cfg.MaxSessions, p.coldAvg, p.cfg.Tuning.ColdDefault, p.ends)
}

func (p *Pool) recordEndLocked(now time.Time) {
	p.ends = append(p.ends, now)
	if n := p.cfg.Tuning.RecentEnds; len(p.ends) > n {
		p.ends = p.ends[len(p.ends)-n:]
	}
}

// follow runs Nomad blocking queries until ctx ends, handing each answer and
// its index to apply: no polling, Nomad answers when something changed. A
// failed query is retried after retry from index 0.
func follow[T any](ctx context.Context, log hclog.Logger, what string, retry time.Duration,
	query func(ctx context.Context, index uint64) (T, uint64, error), apply func(T, uint64)) {
	var idx uint64
	for ctx.Err() == nil {
		v, next, err := query(ctx, idx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("Nomad query failed; retrying", "query", what, "error", err)
			sleepCtx(ctx, retry)
			idx = 0
			continue
		}
		if next < idx {
			next = 0 // the index went backwards (a new leader): start over
		}
		idx = next
		apply(v, idx)
	}
}

func (p *Pool) watchServices(ctx context.Context) {
	follow(ctx, p.log, "service "+p.cfg.Service, p.cfg.Tuning.QueryRetry,
		func(ctx context.Context, idx uint64) ([]nomad.Registration, uint64, error) {
			return p.nomad.Services(ctx, p.cfg.Service, idx, p.cfg.Tuning.BlockWait)
		},
		func(regs []nomad.Registration, _ uint64) { p.applyServices(regs) })
}

func (p *Pool) applyServices(regs []nomad.Registration) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range regs {
		if r.AllocID == "" || r.Port == 0 {
			continue
		}
		if r.Namespace != "" && p.cfg.Namespace != "" && r.Namespace != p.cfg.Namespace {
			continue
		}
		seen[r.AllocID] = true
		addr := joinHostPort(r.Address, r.Port)
		if s, ok := p.sessions[r.AllocID]; ok {
			if s.JobID != r.JobID || s.NodeID != r.NodeID {
				// Not what Nomad confirmed: check again before talking to it.
				s.JobID, s.NodeID, s.own, s.foreign, s.State, s.Ready = r.JobID, r.NodeID, false, false, Starting, false
			}
			s.Addr = addr
			continue
		}
		p.sessions[r.AllocID] = &Session{AllocID: r.AllocID, NodeID: r.NodeID, JobID: r.JobID, Addr: addr, State: Starting, seen: now}
		p.log.Info("session registered; checking its allocation", "alloc", r.AllocID, "job", r.JobID, "node", r.NodeID, "address", addr)
	}
	for id, s := range p.sessions {
		if !seen[id] {
			// The registration went: the session ended, or its node is
			// gone (Nomad deregisters a lost allocation's services).
			p.log.Info("session gone", "alloc", id, "state", s.State)
			if s.State == Claimed || s.State == Busy {
				p.recordEndLocked(now)
			}
			delete(p.sessions, id)
		}
	}
	p.synced = true
	p.notifyLocked()
}

// watchPeers follows the gateway's own registrations: the replica with the
// lowest allocation id is the one that dispatches.
func (p *Pool) watchPeers(ctx context.Context) {
	follow(ctx, p.log, "service "+p.cfg.Peers, p.cfg.Tuning.QueryRetry,
		func(ctx context.Context, idx uint64) ([]nomad.Registration, uint64, error) {
			return p.nomad.Services(ctx, p.cfg.Peers, idx, p.cfg.Tuning.BlockWait)
		},
		func(regs []nomad.Registration, _ uint64) { p.applyPeers(regs) })
}

func (p *Pool) applyPeers(regs []nomad.Registration) {
	lowest, self := "", false
	for _, r := range regs {
		self = self || r.AllocID == p.cfg.Self
		if lowest == "" || r.AllocID < lowest {
			lowest = r.AllocID
		}
	}
	leader := self && lowest == p.cfg.Self
	p.mu.Lock()
	if leader != p.leader {
		p.log.Info("dispatching replica changed", "this_replica_dispatches", leader, "replicas", len(regs))
		p.leader = leader
		p.notifyLocked()
	}
	p.mu.Unlock()
}

func (p *Pool) watchChildren(ctx context.Context) {
	follow(ctx, p.log, "children of job "+p.cfg.Job, p.cfg.Tuning.QueryRetry,
		func(ctx context.Context, idx uint64) ([]nomad.JobStub, uint64, error) {
			return p.nomad.Children(ctx, p.cfg.Job, idx, p.cfg.Tuning.BlockWait)
		},
		p.applyChildren)
}

func (p *Pool) applyChildren(jobs []nomad.JobStub, idx uint64) {
	p.mu.Lock()
	now := time.Now()
	live := map[string]time.Time{}
	for _, j := range jobs {
		if j.Status == "dead" {
			continue
		}
		if t, ok := p.children[j.ID]; ok {
			live[j.ID] = t
		} else {
			live[j.ID] = now
		}
	}
	// A dispatch of ours not in the list yet still counts for a while.
	for id, t := range p.children {
		if _, ok := live[id]; !ok && now.Sub(t) < p.cfg.Tuning.DispatchGrace && !listed(jobs, id) {
			live[id] = t
		}
	}
	// Ours that ended without ever being free: back off.
	for id := range p.started {
		if _, ok := live[id]; !ok && listed(jobs, id) {
			delete(p.started, id)
			p.failStreak++
			pause := backoff(p.failStreak, p.cfg.Tuning.BackoffMax)
			p.holdUntil = now.Add(pause)
			p.log.Warn("a dispatched session ended before it was ever ready; backing off", "job", id,
				"failures_in_a_row", p.failStreak, "next_dispatch_in", pause)
		}
	}
	p.children = live
	p.childIdx = idx
	p.kids = true
	p.notifyLocked()
	p.mu.Unlock()
}

func listed(jobs []nomad.JobStub, id string) bool {
	for _, j := range jobs {
		if j.ID == id {
			return true
		}
	}
	return false
}

// followStates keeps one blocking reader per registered session: a
// session's change of state or readiness (streamer identified, claimed,
// busy, free again) reaches the pool when it happens, not at the next
// poll, which is what a cold start and a queue hand-over wait for.
func (p *Pool) followStates(ctx context.Context) {
	following := map[string]context.CancelFunc{}
	defer func() {
		for _, stop := range following {
			stop()
		}
	}()
	for {
		changed := p.Changed()
		p.mu.Lock()
		for id, s := range p.sessions {
			if !s.own {
				// Anyone may register the service name: Nomad confirms the
				// allocation first. A registration whose job is not a live
				// child is not even looked up.
				if _, child := p.children[s.JobID]; child && !s.checking && !s.foreign {
					s.checking = true
					go p.verify(ctx, *s)
				}
				continue
			}
			if _, ok := following[id]; !ok {
				fctx, stop := context.WithCancel(ctx)
				following[id] = stop
				go p.followState(fctx, id)
			}
		}
		p.mu.Unlock()
		for id, stop := range following {
			p.mu.Lock()
			_, live := p.sessions[id]
			p.mu.Unlock()
			if !live {
				stop()
				delete(following, id)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(p.cfg.StateEvery): // allocations that were not running yet are asked again
		}
	}
}

// followState reads one session's claim state with blocking GETs (each
// returns at a change, or after claim.MaxWait). A session that answers at
// once with the index it was given (one without blocking reads) is read
// again after StateEvery. A session that does not answer yet (registered
// by Nomad before its player port listens: a refused connection, cheap)
// is tried again every 25 ms, doubling up to 100 ms until it first
// answers, StateEvery after that: the first answer is what a cold start
// waits for.
func (p *Pool) followState(ctx context.Context, allocID string) {
	const firstRetry, startingRetry = 25 * time.Millisecond, 100 * time.Millisecond
	var index uint64
	retry, answered := firstRetry, false
	for ctx.Err() == nil {
		p.mu.Lock()
		cur, ok := p.sessions[allocID]
		var target Session
		if ok {
			target = *cur
		}
		p.mu.Unlock()
		if !ok {
			return
		}
		started := time.Now()
		st, err := p.stateCall(ctx, target, index)
		if ctx.Err() != nil {
			return
		}
		p.applyState(allocID, st, err)
		switch {
		case err != nil:
			sleepCtx(ctx, retry)
			if answered {
				retry = min(2*retry, p.cfg.StateEvery)
			} else {
				retry = min(2*retry, startingRetry)
			}
			continue
		case st.Index == 0, st.Index == index && time.Since(started) < claim.MaxWait/2:
			sleepCtx(ctx, p.cfg.StateEvery)
		}
		retry, answered = firstRetry, true
		index = st.Index
	}
}

// applyState takes one answer (or error) of a session's state read.
func (p *Pool) applyState(allocID string, st *claim.Response, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, ok := p.sessions[allocID]
	if !ok || cur.claiming || !cur.own {
		return
	}
	before := *cur
	if err != nil {
		cur.failures++
		if cur.failures >= p.cfg.Tuning.StateFailures {
			cur.Ready = false
			cur.State = Starting
		}
	} else {
		cur.failures = 0
		cur.Ready, cur.State, cur.Visitor, cur.Subject, cur.Address, cur.Claim, cur.Quality = st.Ready, string(st.State), st.Visitor, st.Subject, st.Address, st.Claim, st.Quality
		if cur.State == "" {
			cur.State = Starting
		}
		if cur.State == Free && cur.Ready && (before.State != Free || !before.Ready) {
			p.log.Info("session free and ready", "alloc", allocID)
		}
		if cur.State == Free && cur.Ready {
			if t, ok := p.started[cur.JobID]; ok {
				p.observeColdLocked(time.Since(t))
				delete(p.started, cur.JobID)
			}
			if before.State == Busy || before.State == Claimed {
				p.recordEndLocked(time.Now()) // returned to the pool
			}
		}
	}
	if before.State != cur.State || before.Ready != cur.Ready {
		p.notifyLocked()
	}
}

func (p *Pool) observeColdLocked(d time.Duration) {
	p.failStreak = 0
	p.holdUntil = time.Time{}
	if p.coldAvg == 0 {
		p.coldAvg = d
		return
	}
	p.coldAvg = (p.coldAvg*3 + d) / 4
}

// Holding returns the session a visitor (by pseudonym) or a JWT subject
// already holds, claimed or busy, so a second page load gets the same
// session instead of a second one.
func (p *Pool) Holding(visitor, subject string) (*Assignment, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for _, s := range p.sessions {
		if s.Claim == "" || (s.State != Claimed && s.State != Busy) || !p.liveLocked(s, now) {
			continue
		}
		if (visitor != "" && s.Visitor == visitor) || (subject != "" && s.Subject == subject) {
			return &Assignment{Session: *s, Token: p.token(*s), Expires: now.Add(time.Minute)}, true
		}
	}
	return nil, false
}

// ClaimsFrom counts the live claims made for visitors at one address
// (by pseudonym), across every replica: the sessions say whose they are.
func (p *Pool) ClaimsFrom(address string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	now := time.Now()
	for _, s := range p.sessions {
		if s.Address == address && (s.State == Claimed || s.State == Busy) && p.liveLocked(s, now) {
			n++
		}
	}
	return n
}

// token is the player token of s's current claim.
func (p *Pool) token(s Session) string {
	return claim.PlayerToken(claim.SessionKey(p.cfg.Secret, s.AllocID), s.Claim)
}

// Token is the player token of claim id on the session in alloc.
func (p *Pool) Token(allocID, claimID string) string {
	return claim.PlayerToken(claim.SessionKey(p.cfg.Secret, allocID), claimID)
}

// Claim reserves a free, ready session for the visitor req names.
// Candidates are tried in random order, so replicas rarely race for the
// same one; a race costs one 409 and the next candidate.
func (p *Pool) Claim(ctx context.Context, req claim.Request) (*Assignment, error) {
	tried := map[string]bool{}
	for {
		p.mu.Lock()
		var cands []*Session
		now := time.Now()
		for _, s := range p.sessions {
			if claimable(s) && !tried[s.AllocID] && p.liveLocked(s, now) {
				cands = append(cands, s)
			}
		}
		s := pick(cands, nil)
		if s == nil {
			p.mu.Unlock()
			return nil, ErrNoSession
		}
		s.claiming = true
		target := *s
		p.notifyLocked()
		p.mu.Unlock()
		tried[target.AllocID] = true

		body, _ := json.Marshal(req)
		st, err := p.claimCall(ctx, http.MethodPost, target, body)

		p.mu.Lock()
		cur, ok := p.sessions[target.AllocID]
		if ok {
			cur.claiming = false
		}
		var result string
		switch {
		case err == nil:
			result = "ok"
			if ok {
				cur.State, cur.Visitor, cur.Subject, cur.Address, cur.Claim = Claimed, req.Visitor, req.Subject, req.Address, st.Claim
			}
		case errors.Is(err, errConflict):
			result = "conflict"
			if ok {
				cur.State = Claimed
			}
		case errors.Is(err, errNotReady):
			result = "not_ready"
			if ok {
				cur.Ready = false
			}
		default:
			result = "error"
			if ok {
				cur.Ready, cur.State = false, Starting
			}
		}
		p.m.Claims.WithLabelValues(result).Inc()
		p.notifyLocked()
		p.mu.Unlock()
		if err == nil {
			ttl := time.Duration(st.ExpiresInS * float64(time.Second))
			target.State, target.Visitor, target.Subject, target.Address, target.Claim = Claimed, req.Visitor, req.Subject, req.Address, st.Claim
			return &Assignment{Session: target, Token: p.token(target), Expires: time.Now().Add(ttl)}, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p.log.Debug("claim refused; trying the next session", "alloc", target.AllocID, "error", err)
	}
}

var (
	errConflict = errors.New("session already claimed")
	errNotReady = errors.New("session not ready")
)

// claimCall sends one claim request to s, signed with s's own key (the
// fleet secret never leaves the gateway), and checks that the answer is
// signed by the holder of that key.
// stateCall is a blocking GET of a session's claim state.
func (p *Pool) stateCall(ctx context.Context, s Session, index uint64) (*claim.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, claim.MaxWait+5*time.Second)
	defer cancel()
	return p.call(ctx, p.lc, http.MethodGet, s, "?"+claim.IndexParam+"="+strconv.FormatUint(index, 10), nil)
}

func (p *Pool) claimCall(ctx context.Context, method string, s Session, body []byte) (*claim.Response, error) {
	return p.call(ctx, p.hc, method, s, "", body)
}

func (p *Pool) call(ctx context.Context, hc *http.Client, method string, s Session, query string, body []byte) (*claim.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.cfg.TLS.Scheme()+"://"+s.Addr+claim.Path+query, rd)
	if err != nil {
		return nil, err
	}
	key := claim.SessionKey(p.cfg.Secret, s.AllocID)
	nonce := claim.Authorize(req, key, body, time.Now())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("claim %s: %w", s.Addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, claim.ResponseLimit))
	if err != nil {
		return nil, fmt.Errorf("claim %s: read answer: %w", s.Addr, err)
	}
	var st claim.Response
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("claim %s: %d, answer not JSON: %w", s.Addr, resp.StatusCode, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, fmt.Errorf("claim %s: 401 %s (does the session's gateway block have this gateway's secret?)", s.Addr, st.Error)
	}
	if err := claim.VerifyResponse(resp.Header, key, nonce, resp.StatusCode, b); err != nil {
		return nil, fmt.Errorf("claim %s (alloc %s): %w", s.Addr, s.AllocID, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if method == http.MethodPost && st.Claim == "" {
			return nil, fmt.Errorf("claim %s: no claim id in the answer", s.Addr)
		}
		return &st, nil
	case http.StatusConflict:
		return nil, errConflict
	case http.StatusServiceUnavailable:
		return nil, errNotReady
	default:
		return nil, fmt.Errorf("claim %s: %d %s", s.Addr, resp.StatusCode, st.Error)
	}
}

// reconcileLoop dispatches sessions whenever the fleet or the demand
// changes, and at least every few seconds.
func (p *Pool) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.Tuning.ReconcileEvery)
	defer t.Stop()
	for {
		p.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-t.C:
		}
	}
}

// reconcile dispatches what is missing: free sessions (and sessions on
// their way) for min_free plus every waiting visitor, never more than
// max_sessions live children. Free sessions beyond min_free are kept as
// long as the fleet is within max_sessions (warm capacity costs a dispatch
// to rebuild); past it (max_sessions lowered), free ones are stopped, one
// per round. Claimed and busy sessions are never stopped by the gateway.
func (p *Pool) reconcile(ctx context.Context) {
	p.mu.Lock()
	if !p.synced || !p.kids || !p.leader {
		p.mu.Unlock()
		return // not before both watches have answered (a blind pool would over-dispatch); only the dispatching replica
	}
	c := p.countsLocked()
	if c.Live <= p.cfg.MaxSessions {
		p.overSince = time.Time{}
	} else if p.overSince.IsZero() {
		p.overSince = time.Now()
	}
	// Over max_sessions for a while (it was lowered): stop a free one.
	if victim := stopVictim(p.sessions); c.Live > p.cfg.MaxSessions && victim != nil && time.Since(p.overSince) > p.cfg.Tuning.OverMaxGrace {
		victim.Ready, victim.State = false, Starting // no claims while it stops
		job := victim.JobID
		p.notifyLocked()
		p.mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, p.cfg.Tuning.NomadTimeout)
		err := p.nomad.StopJob(sctx, job)
		cancel()
		if err != nil {
			p.log.Warn("stopping a session above max_sessions failed", "job", job, "error", err)
		} else {
			p.log.Info("stopped a free session above max_sessions", "job", job)
		}
		return
	}
	n := toDispatch(c, p.cfg.MinFree, p.demand, p.cfg.MaxSessions, time.Now().Before(p.holdUntil))
	live := c.Live
	// Replicas that see the same fleet send the same idempotency tokens, and
	// Nomad keeps one dispatch for each: the token names the index of the
	// children list the decision was made from (it only grows, so a token
	// never matches an old, ended dispatch) and the slot.
	view := strconv.FormatUint(p.childIdx, 10)
	p.mu.Unlock()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		meta := map[string]string{}
		for k, v := range p.cfg.DispatchMeta {
			meta[k] = v
		}
		// Replicas with the same view send the same token, and Nomad keeps
		// one dispatch for them.
		token := p.cfg.Job + "@" + view + "#" + strconv.Itoa(live+i+1)
		dctx, cancel := context.WithTimeout(ctx, p.cfg.Tuning.NomadTimeout)
		resp, err := p.nomad.Dispatch(dctx, p.cfg.Job, meta, token)
		cancel()
		if err != nil {
			p.m.DispatchFailures.Inc()
			p.log.Error("dispatch failed", "job", p.cfg.Job, "error", err)
			return
		}
		p.m.Dispatches.Inc()
		p.log.Info("dispatched a session", "job", resp.DispatchedJobID)
		p.mu.Lock()
		now := time.Now()
		if _, ok := p.children[resp.DispatchedJobID]; !ok {
			p.children[resp.DispatchedJobID] = now
			p.started[resp.DispatchedJobID] = now
		}
		p.notifyLocked()
		p.mu.Unlock()
	}
}

// sessionTransport is a transport to sessions: TLS when d is set.
func sessionTransport(d *sessiontls.Dialer, perHost int, idle, responseHeader time.Duration) *http.Transport {
	tr := &http.Transport{MaxIdleConnsPerHost: perHost, IdleConnTimeout: idle, ResponseHeaderTimeout: responseHeader}
	if d != nil {
		tr.DialTLSContext = d.DialTLSContext
	}
	return tr
}

func joinHostPort(host string, port int) string {
	if bytes.ContainsRune([]byte(host), ':') {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
