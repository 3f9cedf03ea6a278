package playerhttp

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// A pool session belongs to a gateway: it starts free, the gateway reserves
// it for one visitor with POST /api/claim and hands the visitor the
// one-time player token the claim returns. The reservation is atomic here,
// at the session, so any number of gateway replicas can share a pool
// without sharing state: a second claim gets 409. The wire contract (route,
// bodies, the per-session key and request signatures) is package claim's.

// ClaimState is where a pool session is in its life with a gateway.
type ClaimState = claim.State

// The claim states /api/status and /api/claim report.
const (
	ClaimFree    = claim.Free
	ClaimClaimed = claim.Claimed
	ClaimBusy    = claim.Busy
)

// DefaultClaimTTL is how long a claim waits for its visitor's player.
const DefaultClaimTTL = config.DefaultClaimTimeout

// ClaimConfig turns claims on. The zero value (no secret) leaves the server
// as it was.
type ClaimConfig struct {
	// Secret is the fleet secret. The server derives this session's claim
	// key from it and AllocID (claim.SessionKey) and keeps only the key;
	// never logged. A session under the driver gets Key instead: the
	// driver derives it, so the fleet secret never enters the session.
	Secret string
	// Key is this session's claim key (claim.SessionKey), when the caller
	// derived it; Secret, when set, takes its place.
	Key claim.Key
	// AllocID is the session's Nomad allocation id: the gateway derives
	// the same key from the allocation it finds in Nomad.
	AllocID string
	// TTL is how long a claim waits for its visitor's player before the
	// session is free again; 0 means DefaultClaimTTL.
	TTL time.Duration
	// ReturnToPool frees the session when its visitor's last player leaves;
	// otherwise the session stays the visitor's (a reload gets back in) and
	// its own lifecycle (idle_timeout) ends it.
	ReturnToPool bool
	// OnChange reports every state change, with the visitor and the
	// subject the gateway named. It must not block.
	OnChange func(ClaimEvent)
}

// ClaimEvent is one change of a pool session's state.
type ClaimEvent struct {
	State   ClaimState
	Visitor string
	Subject string
	// Reason says why a claimed session became free again ("" otherwise).
	Reason string
}

// claims is the session's claim state. The token is kept only as a hash, so
// nothing that dumps the server's memory in a log can show it.
type claims struct {
	cfg      ClaimConfig // Secret cleared: the key is all the session keeps
	verifier *claim.Verifier
	cookie   string // per-session cookie name: one gateway origin fronts many sessions

	mu       sync.Mutex
	state    ClaimState
	token    [32]byte // sha256 of the current player token; valid unless free
	claimID  string   // names the claim; the player token derives from it
	visitor  string
	subject  string
	address  string
	players  int
	expiry   *time.Timer
	claimGen uint64 // invalidates an expiry timer that fired after a change
	// index counts changes of state and readiness; changed is closed at
	// the next one (blocking GETs wait on it).
	index   uint64
	changed chan struct{}
}

// bumpLocked marks a change for blocking reads. Callers hold c.mu.
func (c *claims) bumpLocked() {
	c.index++
	close(c.changed)
	c.changed = make(chan struct{})
}

// readinessChanged wakes blocking reads when the streamer comes or goes.
func (c *claims) readinessChanged() {
	c.mu.Lock()
	c.bumpLocked()
	c.mu.Unlock()
}

// waitChange waits until the index is past index, at most wait.
func (c *claims) waitChange(r *http.Request, index uint64, wait time.Duration) {
	c.mu.Lock()
	cur, ch := c.index, c.changed
	c.mu.Unlock()
	if cur != index {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-r.Context().Done():
	}
}

// newClaims makes the claim state when cfg has a secret; the server feeds
// it player counts (Server.Event) and adds its state to /api/status.
func newClaims(cfg ClaimConfig) (*claims, error) {
	if cfg.Secret == "" && cfg.Key == (claim.Key{}) {
		return nil, nil
	}
	if cfg.AllocID == "" {
		return nil, errors.New("claim: a pool session needs its allocation id (its claim key is derived from the secret and the allocation id)")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultClaimTTL
	}
	key := cfg.Key
	if cfg.Secret != "" {
		key = claim.SessionKey(cfg.Secret, cfg.AllocID)
	}
	cfg.Secret, cfg.Key = "", claim.Key{}
	return &claims{cfg: cfg, verifier: claim.NewVerifier(key), state: ClaimFree,
		cookie: "pixelstream_claim_" + randomID(6), changed: make(chan struct{}), index: 1}, nil
}

// State is the session's claim state.
func (c *claims) State() ClaimState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// ClaimState reports the pool state, or "" when the session has no gateway.
func (s *Server) ClaimState() ClaimState {
	if s.claims == nil {
		return ""
	}
	return s.claims.State()
}

// claim reserves a free session; it fails when the session is not free.
func (c *claims) claim(req claim.Request) (claimID string, err error) {
	c.mu.Lock()
	if c.state != ClaimFree {
		st := c.state
		c.mu.Unlock()
		return "", fmt.Errorf("session is %s", st)
	}
	claimID = randomID(16)
	c.token = sha256.Sum256([]byte(claim.PlayerToken(c.verifier.Key(), claimID)))
	c.claimID = claimID
	visitor, subject := req.Visitor, req.Subject
	c.state, c.visitor, c.subject, c.address = ClaimClaimed, visitor, subject, req.Address
	c.bumpLocked()
	c.claimGen++
	gen := c.claimGen
	c.expiry = time.AfterFunc(c.cfg.TTL, func() { c.expire(gen) })
	ev := ClaimEvent{State: ClaimClaimed, Visitor: visitor, Subject: subject}
	c.mu.Unlock()
	c.notify(ev)
	return claimID, nil
}

// expire frees a claim whose visitor never connected.
func (c *claims) expire(gen uint64) {
	c.mu.Lock()
	if c.claimGen != gen || c.state != ClaimClaimed {
		c.mu.Unlock()
		return
	}
	ev := c.freeLocked(fmt.Sprintf("the visitor's player did not connect within %s", c.cfg.TTL))
	c.mu.Unlock()
	c.notify(ev)
}

// freeLocked returns the session to the pool; the old token stops working.
func (c *claims) freeLocked(reason string) ClaimEvent {
	ev := ClaimEvent{State: ClaimFree, Visitor: c.visitor, Subject: c.subject, Reason: reason}
	c.state, c.visitor, c.subject, c.address, c.claimID = ClaimFree, "", "", "", ""
	c.token = [32]byte{}
	c.bumpLocked()
	c.claimGen++
	if c.expiry != nil {
		c.expiry.Stop()
		c.expiry = nil
	}
	return ev
}

func (c *claims) playersChanged(n int) {
	c.mu.Lock()
	c.players = n
	var ev *ClaimEvent
	switch {
	case n > 0 && c.state == ClaimClaimed:
		c.state = ClaimBusy
		c.bumpLocked()
		if c.expiry != nil {
			c.expiry.Stop()
			c.expiry = nil
		}
		ev = &ClaimEvent{State: ClaimBusy, Visitor: c.visitor, Subject: c.subject}
	case n == 0 && c.state == ClaimBusy && c.cfg.ReturnToPool:
		e := c.freeLocked("the visitor left")
		ev = &e
	}
	c.mu.Unlock()
	if ev != nil {
		c.notify(*ev)
	}
}

func (c *claims) notify(ev ClaimEvent) {
	if c.cfg.OnChange != nil {
		c.cfg.OnChange(ev)
	}
}

// admits says whether r carries the current player token, from ?token=, an
// Authorization: Bearer header (what a proxying gateway adds), or this
// session's claim cookie.
func (c *claims) admits(r *http.Request) (fromQuery, ok bool) {
	c.mu.Lock()
	st, want := c.state, c.token
	c.mu.Unlock()
	if st == ClaimFree {
		return false, false
	}
	try := func(t string) bool {
		have := sha256.Sum256([]byte(t))
		return t != "" && subtle.ConstantTimeCompare(want[:], have[:]) == 1
	}
	if t := r.URL.Query().Get("token"); t != "" {
		return true, try(t)
	}
	if t, ok := bearer(r); ok && try(t) {
		return false, true
	}
	if ck, err := r.Cookie(c.cookie); err == nil && try(ck.Value) {
		return false, true
	}
	return false, false
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

// claimGate puts a pool session's page, REST API and player WebSocket
// behind the claim's token. Health, readiness and metrics stay open for
// Nomad's checks; /api/claim checks the gateway's signature itself.
func (s *Server) claimGate(next http.Handler) http.Handler {
	c := s.claims
	if c == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics", claim.Path:
			if !signalling.IsUpgrade(r) {
				next.ServeHTTP(w, r)
				return
			}
		}
		fromQuery, ok := c.admits(r)
		if !ok {
			s.reject(signalling.ReasonUnauthorized)
			s.log.Info("refused request without this session's claim token", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="pixelstream"`)
			http.Error(w, "401 unauthorized: this session belongs to a gateway's pool; open the gateway's URL to get a session", http.StatusUnauthorized)
			return
		}
		if fromQuery {
			// The page's WebSocket cannot set headers: the cookie carries
			// the token from the page (redirect route) to its upgrade.
			http.SetCookie(w, &http.Cookie{Name: c.cookie, Value: r.URL.Query().Get("token"), Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		}
		next.ServeHTTP(w, r)
	})
}

// apiClaim serves claim.Path: GET reports the state to the gateway, POST
// reserves the session. Both need a fresh request signed with this
// session's key; the answer is signed over the request's nonce.
func (s *Server) apiClaim(w http.ResponseWriter, r *http.Request) {
	c := s.claims
	if c == nil {
		writeJSON(w, http.StatusNotFound, claim.Response{Error: "this session is not in a gateway's pool (task config has no gateway block)"})
		return
	}
	body, nonce, err := c.verifier.Verify(w, r)
	if err != nil {
		s.reject(signalling.ReasonUnauthorized)
		s.log.Info("refused claim request", "remote", r.RemoteAddr, "reason", err)
		writeJSON(w, http.StatusUnauthorized, claim.Response{Error: "claims need a fresh request signed with this session's key: " + err.Error()})
		return
	}
	reply := func(code int, resp claim.Response) {
		b, err := json.Marshal(resp)
		if err != nil {
			http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
			return
		}
		claim.SignResponse(w.Header(), c.verifier.Key(), nonce, code, b)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_, _ = w.Write(b)
	}
	switch r.Method {
	case http.MethodGet:
		if v := r.URL.Query().Get(claim.IndexParam); v != "" {
			// A blocking read: the gateway learns of a change the moment
			// it happens, not at its next poll.
			index, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				reply(http.StatusBadRequest, claim.Response{Error: "?" + claim.IndexParam + "= must be the index of the last answer (an unsigned integer)"})
				return
			}
			c.waitChange(r, index, claim.MaxWait)
		}
		ready := s.router.Ready()
		c.mu.Lock()
		resp := claim.Response{State: c.state, Ready: ready, Claim: c.claimID, Visitor: c.visitor, Subject: c.subject, Address: c.address, Index: c.index}
		c.mu.Unlock()
		q := s.router.Quality()
		resp.Quality = &q
		reply(http.StatusOK, resp)
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		reply(http.StatusMethodNotAllowed, claim.Response{Error: "use POST to claim, GET for the state"})
		return
	}
	ready := s.router.Ready()
	req, err := claim.DecodeRequest(bytes.NewReader(body))
	if err != nil {
		reply(http.StatusBadRequest, claim.Response{Error: err.Error()})
		return
	}
	if !ready {
		// A session whose streamer is not (or no longer) there would give
		// the visitor a black page; the gateway tries another.
		w.Header().Set("Retry-After", "1")
		reply(http.StatusServiceUnavailable, claim.Response{State: c.State(), Error: "no streamer connected yet"})
		return
	}
	claimID, err := c.claim(req)
	if err != nil {
		reply(http.StatusConflict, claim.Response{State: c.State(), Ready: true, Error: err.Error()})
		return
	}
	s.log.Info("session claimed", "visitor", req.Visitor, "subject", req.Subject)
	reply(http.StatusOK, claim.Response{State: ClaimClaimed, Ready: true, Claim: claimID,
		ExpiresInS: c.cfg.TTL.Seconds(), Visitor: req.Visitor, Subject: req.Subject, Address: req.Address})
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux (Go 1.24+: crypto/rand panics rather than return an error)
	return base64.RawURLEncoding.EncodeToString(b)
}
