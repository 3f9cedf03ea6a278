//go:build e2e

package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/auth"
)

const (
	gwSecret  = "e2e-gateway-secret-0123456789abcdef"
	gwOpToken = "e2e-operator-token-0123456789abcdef"
	gwJWTKey  = "e2e-jwt-hs256-key-0123456789abcdef0123"
	gwIssuer  = "https://id.example.test"
	gwAudient = "play.example.test"
	// gwPage is the gateway's URL as the tests open it: the player page's
	// own parameters (connect and play without a click) ride along.
	gwPage = "/?AutoConnect=true&AutoPlayVideo=true&StartVideoMuted=true&HoveringMouse=true"
)

// gwSession is one entry of the gateway's /api/sessions.
type gwSession struct {
	AllocID string `json:"alloc_id"`
	NodeID  string `json:"node_id"`
	Address string `json:"address"`
	State   string `json:"state"`
	Ready   bool   `json:"ready"`
	Visitor string `json:"visitor"`
}

// gateway drives the gateway job's replicas.
type gateway struct {
	c    *cluster
	urls []string // one per replica
	ops  []string // each replica's operator endpoints (loopback)
}

// runGateway (re)deploys the gateway job and waits for every replica.
func (c *cluster) runGateway(count int, vars ...string) *gateway {
	c.t.Helper()
	_, _ = c.server.nomadErr("job", "stop", "-purge", "pixelstream-gateway")
	// Every visitor of these tests comes from 127.0.0.1: the per-address
	// caps are lifted (gateway/visitor_test.go tests them).
	args := []string{"job", "run", "-detach", "-var", "binary=" + bin("nomad-driver-pixelstream"), "-var", "port=0",
		"-var", "operator_port=0", "-var", "max_claims_per_address=1000", "-var", "max_waiting_per_address=1000",
		"-var", "nomad_addr=" + c.server.addr, "-var", "node_class=c1", "-var", fmt.Sprintf("count=%d", count)}
	for _, v := range vars {
		args = append(args, "-var", v)
	}
	c.nomadOut(append(args, "../example/gateway.nomad.hcl")...)
	g := &gateway{c: c}
	c.server.eventually(90*time.Second, fmt.Sprintf("%d gateway replicas answering /healthz", count), func() bool {
		g.urls, g.ops = g.urls[:0], g.ops[:0]
		for _, al := range c.server.allocs("pixelstream-gateway") {
			if al.ClientStatus != "running" {
				continue
			}
			port := c.server.playerPortOf(al.ID, "http")
			u := fmt.Sprintf("http://127.0.0.1:%d", port)
			if resp, err := http.Get(u + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					g.urls = append(g.urls, u)
					g.ops = append(g.ops, fmt.Sprintf("http://127.0.0.1:%d", c.server.playerPortOf(al.ID, "operator")))
				}
			}
		}
		return len(g.urls) == count
	})
	return g
}

// playerPortOf is an allocation's host port of a label.
func (a *agent) playerPortOf(allocID, label string) int {
	var al struct {
		AllocatedResources struct {
			Shared struct {
				Ports []struct {
					Label string
					Value int
				}
			}
		}
	}
	if err := a.api("/v1/allocation/"+allocID, &al); err != nil {
		return 0
	}
	for _, p := range al.AllocatedResources.Shared.Ports {
		if p.Label == label {
			return p.Value
		}
	}
	return 0
}

// operator GETs one of a replica's operator endpoints with the operator
// token.
func (g *gateway) operator(replica int, path string) (*http.Response, error) {
	req, _ := http.NewRequest(http.MethodGet, g.ops[replica]+path, nil)
	req.Header.Set("Authorization", "Bearer "+gwOpToken)
	return http.DefaultClient.Do(req)
}

func (g *gateway) sessions(replica int) []gwSession {
	resp, err := g.operator(replica, "/api/sessions")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out struct{ Sessions []gwSession }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out.Sessions
}

func (g *gateway) count(replica int, state string) int {
	n := 0
	for _, s := range g.sessions(replica) {
		if s.State == state && (state != "free" || s.Ready) {
			n++
		}
	}
	return n
}

// metric reads one sample of a replica's /metrics.
func (g *gateway) metric(replica int, name string) float64 {
	resp, err := g.operator(replica, "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(line, name+" "), &v)
			return v
		}
	}
	return -1
}

// sessionOf is the session a page streams from, by its own /api/status.
func sessionOf(t *testing.T, p *page, g *gateway) gwSession {
	t.Helper()
	var st struct {
		Endpoints struct{ Player string }
	}
	if err := p.c.call(30*time.Second, "fetchJSON", map[string]any{"name": p.name, "path": "/api/status"}, &st); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	u, err := url.Parse(st.Endpoints.Player)
	if err != nil || u.Host == "" {
		t.Fatalf("%s: /api/status names no player endpoint: %+v", p.name, st)
	}
	for i := range g.urls {
		for _, s := range g.sessions(i) {
			if s.Address == u.Host {
				return s
			}
		}
	}
	t.Fatalf("%s streams from %s, which the gateway does not list", p.name, u.Host)
	return gwSession{}
}

// playWithin waits until the page presents frames, however it got there
// (the waiting page enters its session by itself).
func playWithin(t *testing.T, p *page, within time.Duration) streamState {
	t.Helper()
	var s streamState
	if err := p.c.call(within+10*time.Second, "play", map[string]any{"name": p.name, "frames": 3, "timeoutMs": within.Milliseconds()}, &s); err != nil {
		t.Fatal(err)
	}
	if s.Presented < 3 || s.VideoWidth == 0 {
		t.Fatalf("page %s does not play within %s: %s", p.name, within, s)
	}
	return s
}

func queryText(t *testing.T, p *page, selector, attr string, within time.Duration) string {
	t.Helper()
	var v *string
	if err := p.c.call(within+10*time.Second, "query", map[string]any{"name": p.name, "selector": selector, "attr": attr,
		"timeoutMs": within.Milliseconds()}, &v); err != nil {
		t.Fatal(err)
	}
	if v == nil {
		return ""
	}
	return *v
}

// visit GETs the gateway's page as a browser navigation with no cookies
// and says whether it was given a session (the binding cookie).
func visit(u string) (assigned bool, visitor string, status int, err error) {
	req, _ := http.NewRequest(http.MethodGet, u+"/", nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, "", 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	for _, c := range resp.Cookies() {
		switch c.Name {
		case "pixelstream_session":
			assigned = c.Value != ""
		case "pixelstream_visitor":
			visitor = c.Value
		}
	}
	return assigned, visitor, resp.StatusCode, nil
}

// claimStateTLS is claimState for a session that serves TLS.
func claimStateTLS(s gwSession, pki *testPKI) (state, visitor string) {
	req, _ := http.NewRequest(http.MethodGet, "https://"+s.Address+claim.Path, nil)
	claim.Authorize(req, claim.SessionKey(gwSecret, s.AllocID), nil, time.Now())
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}}
	resp, err := hc.Do(req)
	if err != nil {
		return "", ""
	}
	defer resp.Body.Close()
	var st struct{ State, Visitor string }
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st.State, st.Visitor
}

// claimState asks a session itself its state, signed as the gateway signs
// (with the allocation's key derived from the fleet secret).
func claimState(s gwSession) (state, visitor string) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Address+claim.Path, nil)
	claim.Authorize(req, claim.SessionKey(gwSecret, s.AllocID), nil, time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", ""
	}
	defer resp.Body.Close()
	var st struct{ State, Visitor string }
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st.State, st.Visitor
}

func signJWT(t *testing.T, key string, mod func(*jwt.RegisteredClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.RegisteredClaims{Issuer: gwIssuer, Audience: jwt.ClaimStrings{gwAudient}, Subject: "alice@example.test",
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}
	if mod != nil {
		mod(&c)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGateway runs the fleet behind one URL on a three-agent cluster: the
// session job (pool) and the gateway (two replicas, on client c1) as Nomad
// jobs, real sessions with the stand-in streamer, headless Chromium
// visitors.
func TestGateway(t *testing.T) {
	c := startCluster(t)
	c.nomadOut("var", "put", "-force", "nomad/jobs/pixelstream-session", "gateway_secret="+gwSecret)
	c.nomadOut("var", "put", "-force", "nomad/jobs/pixelstream-gateway", "gateway_secret="+gwSecret, "operator_token="+gwOpToken)
	// idle_timeout 3s: a visitor who closes the tab frees the capacity fast.
	c.nomadOut("job", "run", "-detach", "-var", "pool=true", "-var", "streamer="+bin("streamer"),
		"-var", "idle_timeout=3s", "-var", "claim_timeout=8s", "../example/session.nomad.hcl")
	g := c.runGateway(2, "min_free=3", "max_sessions=3", "max_queue=200")
	t.Cleanup(func() { c.diagnose(t, &g) })
	// Two replicas start at once; a surplus from a race between them is
	// stopped (never more than max_sessions once settled).
	c.server.eventually(180*time.Second, "exactly 3 sessions, free and ready, seen by both replicas", func() bool {
		return g.count(0, "free") == 3 && g.count(1, "free") == 3 && len(g.sessions(0)) == 3
	})

	t.Run("100 concurrent claims through two replicas hand out exactly 3", func(t *testing.T) {
		c.server.t = t
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := map[string]bool{}
		statuses := map[int]int{}
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				assigned, visitor, status, err := visit(g.urls[i%2])
				mu.Lock()
				defer mu.Unlock()
				statuses[status]++
				if err != nil {
					t.Errorf("visit %d: %v", i, err)
				}
				if assigned {
					// Sessions know visitors by the gateway's pseudonym of
					// the id the (signed) cookie carries.
					keys := auth.NewKeys(gwSecret)
					id, ok := keys.Visitor(visitor)
					if !ok {
						t.Errorf("visit %d: visitor cookie %q is not signed by the gateway", i, visitor)
					}
					winners[keys.Pseudonym("v", id)] = true
				}
			}(i)
		}
		wg.Wait()
		if len(winners) != 3 || statuses[http.StatusOK] != 100 {
			t.Fatalf("%d visitors got a session (want 3); statuses %v", len(winners), statuses)
		}
		// Each session agrees: claimed, by one of the winners, no two alike.
		seen := map[string]bool{}
		for _, s := range g.sessions(0) {
			state, visitor := claimState(s)
			if state != "claimed" || !winners[visitor] || seen[visitor] {
				t.Fatalf("session %s says %q for visitor %q; winners %v", s.AllocID, state, visitor, winners)
			}
			seen[visitor] = true
		}
		// Nobody came for them: the claims expire and the pool is free again.
		c.server.eventually(60*time.Second, "the unused claims to expire", func() bool { return g.count(0, "free") == 3 })
	})

	t.Run("a foreign job that registers the session service gets no request and no visitor", func(t *testing.T) {
		c.server.t = t
		// The attacker's server: it records every request it gets.
		var mu sync.Mutex
		var hits []string
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		trap := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits = append(hits, r.Method+" "+r.URL.Path+" Authorization="+r.Header.Get("Authorization"))
			mu.Unlock()
			_, _ = io.WriteString(w, "attacker's page")
		})}
		go func() { _ = trap.Serve(ln) }()
		defer trap.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		// Anyone who may submit a job can register the service name.
		job := filepath.Join(t.TempDir(), "evil.nomad.hcl")
		src := fmt.Sprintf(`job "evil" {
  type = "service"
  group "g" {
    service {
      name     = "pixelstream-session"
      provider = "nomad"
      address  = "127.0.0.1"
      port     = %d
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["3600"]
      }
      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
`, port)
		if err := os.WriteFile(job, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		c.nomadOut("job", "run", "-detach", job)
		defer func() { _, _ = c.server.nomadErr("job", "stop", "-purge", "evil") }()
		c.server.eventually(60*time.Second, "Nomad to list the foreign registration", func() bool {
			var regs []struct{ JobID string }
			_ = c.server.api("/v1/service/pixelstream-session", &regs)
			for _, r := range regs {
				if r.JobID == "evil" {
					return true
				}
			}
			return false
		})
		// Four visitors: three get the three real sessions, the fourth
		// waits; nobody is sent to the attacker, who is never asked anything.
		for i := 0; i < 4; i++ {
			req, _ := http.NewRequest(http.MethodGet, g.urls[i%2]+"/", nil)
			req.Header.Set("Sec-Fetch-Mode", "navigate")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), "attacker") {
				t.Fatalf("visitor %d was sent to the foreign registration", i+1)
			}
		}
		for i := range g.urls {
			if n := len(g.sessions(i)); n != 3 {
				t.Fatalf("replica %d lists %d sessions, want the 3 of its own", i, n)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(hits) > 0 {
			t.Fatalf("the foreign registration got requests: %v", hits)
		}
		c.server.eventually(60*time.Second, "the unused claims to expire", func() bool { return g.count(0, "free") == 3 })
	})

	b := startChromium(t)
	var pages []*page
	var sess []gwSession

	t.Run("three visitors stream from three allocations on both clients", func(t *testing.T) {
		c.server.t = t
		for i := 0; i < 3; i++ {
			p, status, _ := b.open(t, fmt.Sprintf("visitor%d", i+1), g.urls[0]+gwPage)
			if status != http.StatusOK {
				t.Fatalf("visitor %d: HTTP %d", i+1, status)
			}
			pages = append(pages, p)
		}
		allocs, classes := map[string]bool{}, map[string]bool{}
		for _, p := range pages {
			playWithin(t, p, 60*time.Second)
			s := sessionOf(t, p, g)
			sess = append(sess, s)
			allocs[s.AllocID] = true
			classes[c.nodeClass(s.NodeID)] = true
		}
		if len(allocs) != 3 || len(classes) != 2 {
			t.Fatalf("visitors stream from %d allocations on node classes %v; want 3 on c1 and c2: %+v", len(allocs), classes, sess)
		}
	})

	t.Run("a fourth visitor waits at position 1 and streams when a tab closes", func(t *testing.T) {
		c.server.t = t
		if len(pages) != 3 {
			t.Skip("needs the three streaming visitors")
		}
		p4, status, _ := b.open(t, "visitor4", g.urls[0]+gwPage)
		if status != http.StatusOK {
			t.Fatalf("visitor 4: HTTP %d", status)
		}
		if pos := queryText(t, p4, "#position", "data-position", 20*time.Second); pos != "1" {
			t.Fatalf("visitor 4 sees position %q, want 1", pos)
		}
		var q struct{ Length int }
		resp, err := g.operator(0, "/api/queue")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&q)
			resp.Body.Close()
		}
		if q.Length != 1 {
			t.Fatalf("/api/queue length %d, want 1", q.Length)
		}
		pages[0].close(t)
		// The session ends on its idle_timeout, the gateway dispatches a new
		// one for the waiting visitor, whose page enters it by itself.
		playWithin(t, p4, 120*time.Second)
		s4 := sessionOf(t, p4, g)
		if s4.AllocID == sess[0].AllocID {
			t.Fatalf("visitor 4 got the closed tab's session %s", s4.AllocID)
		}
		pages[0], sess[0] = p4, s4
	})

	t.Run("a client killed mid-stream: the visitor reloads and streams from the other client", func(t *testing.T) {
		c.server.t = t
		var victim *page
		var lost gwSession
		for i, s := range sess {
			if c.nodeClass(s.NodeID) == "c2" {
				victim, lost = pages[i], s
			}
		}
		if victim == nil {
			t.Skip("no visitor streams from c2")
		}
		c.killClient("c2")
		var r struct{ Status int }
		if err := b.call(60*time.Second, "goto", map[string]any{"name": victim.name, "url": g.urls[0] + gwPage}, &r); err != nil {
			t.Fatal(err)
		}
		playWithin(t, victim, 150*time.Second)
		s := sessionOf(t, victim, g)
		if s.AllocID == lost.AllocID || c.nodeClass(s.NodeID) != "c1" {
			t.Fatalf("after losing c2 the visitor streams from %+v (lost %s)", s, lost.AllocID)
		}
	})

	for _, p := range pages {
		_ = b.call(30*time.Second, "close", map[string]any{"name": p.name}, nil)
	}

	t.Run("warm pool: a visitor gets a session that was free before they arrived", func(t *testing.T) {
		c.server.t = t
		g = c.runGateway(1, "min_free=1", "max_sessions=2")
		var free map[string]bool
		c.server.eventually(180*time.Second, "a warm session", func() bool {
			free = map[string]bool{}
			for _, s := range g.sessions(0) {
				if s.State == "free" && s.Ready {
					free[s.AllocID] = true
				}
			}
			return len(free) >= 1
		})
		before := g.metric(0, "pixelstream_gateway_dispatches_total")
		p, _, _ := b.open(t, "warm", g.urls[0]+gwPage)
		playWithin(t, p, 60*time.Second)
		s := sessionOf(t, p, g)
		if !free[s.AllocID] {
			t.Fatalf("the visitor's session %s was not among the warm ones %v", s.AllocID, free)
		}
		// The claim was made before any new dispatch: the one the pool
		// makes to refill min_free comes after it (at most one).
		if after := g.metric(0, "pixelstream_gateway_dispatches_total"); after > before+1 {
			t.Fatalf("dispatches went from %v to %v while the visitor arrived", before, after)
		}
		p.close(t)
	})

	t.Run("JWT: bad signature, expired and wrong audience refused; a valid one streams with its subject on the session's events", func(t *testing.T) {
		c.server.t = t
		g = c.runGateway(1, "min_free=1", "max_sessions=2", fmt.Sprintf(`extra_args=["-auth-mode=jwt","-auth-jwt-algorithm=HS256","-auth-jwt-hmac-key=%s","-auth-jwt-issuer=%s","-auth-jwt-audience=%s"]`,
			gwJWTKey, gwIssuer, gwAudient))
		for name, tok := range map[string]string{
			"bad signature":  signJWT(t, "another-key-that-is-long-enough-000000", nil),
			"expired":        signJWT(t, gwJWTKey, func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }),
			"wrong audience": signJWT(t, gwJWTKey, func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"elsewhere"} }),
			"none":           "",
		} {
			assigned, _, status, err := visit(g.urls[0] + "/?auth=" + url.QueryEscape(tok))
			if err != nil || status != http.StatusUnauthorized || assigned {
				t.Fatalf("%s: HTTP %d assigned %v err %v; want 401", name, status, assigned, err)
			}
		}
		c.server.eventually(180*time.Second, "a warm session", func() bool { return g.count(0, "free") >= 1 })
		p, status, _ := b.open(t, "jwt", g.urls[0]+gwPage+"&auth="+url.QueryEscape(signJWT(t, gwJWTKey, nil)))
		if status != http.StatusOK {
			t.Fatalf("valid JWT: HTTP %d", status)
		}
		playWithin(t, p, 60*time.Second)
		s := sessionOf(t, p, g)
		// Task events reach Nomad's API through the driver's event
		// follower and the client's next update: wait for them.
		var events []string
		deadline := time.Now().Add(30 * time.Second)
		for {
			var al allocation
			if err := c.server.api("/v1/allocation/"+s.AllocID, &al); err != nil {
				t.Fatal(err)
			}
			events = events[:0]
			for _, ev := range al.TaskStates["game"].Events {
				events = append(events, ev.DisplayMessage)
			}
			if strings.Contains(strings.Join(events, "\n"), "subject alice@example.test") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the session's events do not name the subject within 30s:\n%s", strings.Join(events, "\n"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		p.close(t)
	})

	t.Run("TLS sessions: the pool serves HTTPS on the player port; the gateway claims and proxies over TLS verified against its CA file", func(t *testing.T) {
		c.server.t = t
		pki := newTestPKI(t)
		cert, key := pki.issue(t, "pixelstream pool session")
		c.server.putVar(t, "nomad/jobs/pixelstream-session", map[string]string{"gateway_secret": gwSecret, "tls_cert": cert, "tls_key": key})
		// The plain-HTTP pool's sessions go first: free ones wait for a
		// visitor forever and would fill max_sessions.
		_, _ = c.server.nomadErr("job", "stop", "-purge", "pixelstream-gateway")
		var children []struct{ ID, ParentID string }
		_ = c.server.api("/v1/jobs?prefix=pixelstream-session/dispatch-", &children)
		for _, j := range children {
			_, _ = c.server.nomadErr("job", "stop", "-purge", j.ID)
		}
		c.nomadOut("job", "run", "-detach", "-var", "pool=true", "-var", "tls=true", "-var", "streamer="+bin("streamer"),
			"-var", "idle_timeout=3s", "-var", "claim_timeout=8s", "../example/session.nomad.hcl")
		caFile := filepath.Join(pki.dir, "ca.pem")
		g = c.runGateway(1, "min_free=1", "max_sessions=2", fmt.Sprintf(`extra_args=["-session-ca-file=%s"]`, caFile))
		c.server.eventually(180*time.Second, "a warm TLS session", func() bool {
			for _, s := range g.sessions(0) {
				if s.State == "free" && s.Ready {
					if _, err := pki.servedCert(s.Address); err == nil {
						return true
					}
				}
			}
			return false
		})
		p, status, _ := b.open(t, "tls", g.urls[0]+gwPage)
		if status != http.StatusOK {
			t.Fatalf("visitor of a TLS pool: HTTP %d", status)
		}
		playWithin(t, p, 60*time.Second)
		s := sessionOf(t, p, g)
		// The session itself answers only TLS: plain HTTP to it fails.
		if resp, err := http.Get("http://" + s.Address + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
			t.Fatalf("session %s answers plain HTTP", s.Address)
		}
		if state, _ := claimStateTLS(s, pki); state != "busy" {
			t.Fatalf("session %s says %q over TLS, want busy", s.AllocID, state)
		}
		p.close(t)
	})
}

// TestBenchGateway measures visitor arrival to first decoded frame through
// the gateway, printed as a Markdown table: warm pool (visitors arriving
// together at a pool of as many free sessions; PIXELSTREAM_GATEWAY_VISITORS,
// default 20), cold (a dispatch per visitor), and from a session ending to
// the next queued visitor's first frame. Run it with PIXELSTREAM_BENCH=1.
func TestBenchGateway(t *testing.T) {
	if os.Getenv("PIXELSTREAM_BENCH") != "1" {
		t.Skip("gateway benchmark: set PIXELSTREAM_BENCH=1 to run it")
	}
	n := 20
	if v, err := strconv.Atoi(os.Getenv("PIXELSTREAM_GATEWAY_VISITORS")); err == nil && v > 0 {
		n = v
	}
	c := startCluster(t)
	c.nomadOut("var", "put", "-force", "nomad/jobs/pixelstream-session", "gateway_secret="+gwSecret)
	c.nomadOut("var", "put", "-force", "nomad/jobs/pixelstream-gateway", "gateway_secret="+gwSecret, "operator_token="+gwOpToken)
	// Both clients fingerprint this machine's CPU; at the job's default
	// 1000 MHz a session, only a few fit: reserve less so n do.
	c.nomadOut("job", "run", "-detach", "-var", "pool=true", "-var", "streamer="+bin("streamer"),
		"-var", "idle_timeout=1s", "-var", "cpu=150", "../example/session.nomad.hcl")
	b := startChromium(t)
	firstFrame := func(name, u string, within time.Duration) time.Duration {
		p, _, navigated := b.open(t, name, u)
		s := playWithin(t, p, within)
		return time.Duration(s.FirstFrameAt-navigated) * time.Millisecond
	}

	// Warm: n free sessions, n visitors at once.
	g := c.runGateway(1, fmt.Sprintf("min_free=%d", n), fmt.Sprintf("max_sessions=%d", n))
	c.server.eventually(10*time.Minute, fmt.Sprintf("%d warm sessions", n), func() bool { return g.count(0, "free") == n })
	warm := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) { // no t.Fatal off the test goroutine: errors are collected
			defer wg.Done()
			var r struct{ NavigatedAt int64 }
			name := fmt.Sprintf("warm%d", i)
			if errs[i] = b.call(3*time.Minute, "open", map[string]any{"name": name, "url": g.urls[0] + gwPage}, &r); errs[i] != nil {
				return
			}
			var s streamState
			if errs[i] = b.call(3*time.Minute, "play", map[string]any{"name": name, "frames": 3, "timeoutMs": 170000}, &s); errs[i] == nil && s.FirstFrameAt == 0 {
				errs[i] = fmt.Errorf("%s: no frame: %s", name, s)
			}
			warm[i] = time.Duration(s.FirstFrameAt-r.NavigatedAt) * time.Millisecond
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("%d visitors arriving together: %v", n, err)
		}
	}
	for i := 0; i < n; i++ {
		_ = b.call(30*time.Second, "close", map[string]any{"name": fmt.Sprintf("warm%d", i)}, nil)
	}

	// Cold: no warm pool, one visitor at a time.
	g = c.runGateway(1, "min_free=0", "max_sessions=1")
	var cold []time.Duration
	for i := 0; i < 3; i++ {
		c.server.eventually(3*time.Minute, "the pool to be empty", func() bool { return len(g.sessions(0)) == 0 })
		name := fmt.Sprintf("cold%d", i)
		cold = append(cold, firstFrame(name, g.urls[0]+gwPage, 3*time.Minute))
		_ = b.call(30*time.Second, "close", map[string]any{"name": name}, nil)
	}

	// Session end to the next queued visitor's first frame (max_sessions 1).
	c.server.eventually(3*time.Minute, "the pool to be empty", func() bool { return len(g.sessions(0)) == 0 })
	var handover []time.Duration
	for i := 0; i < 3; i++ {
		first, _, _ := b.open(t, fmt.Sprintf("first%d", i), g.urls[0]+gwPage)
		playWithin(t, first, 3*time.Minute)
		next, _, _ := b.open(t, fmt.Sprintf("next%d", i), g.urls[0]+gwPage)
		if pos := queryText(t, next, "#position", "data-position", 30*time.Second); pos != "1" {
			t.Fatalf("queued visitor at position %q", pos)
		}
		closed := time.Now()
		first.close(t)
		s := playWithin(t, next, 3*time.Minute)
		handover = append(handover, time.Duration(s.FirstFrameAt-closed.UnixMilli())*time.Millisecond)
		next.close(t)
	}

	fmt.Println("| gateway: arrival to first decoded frame | p50 | p99 | runs |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| warm pool, %d visitors arriving together | %s | %s | %d |\n", n, quantile(warm, 50), quantile(warm, 99), len(warm))
	fmt.Printf("| cold (a dispatch per visitor) | %s | %s | %d |\n", quantile(cold, 50), quantile(cold, 99), len(cold))
	fmt.Printf("| session end (tab closed, idle_timeout 1s) to the next queued visitor's first frame | %s | %s | %d |\n",
		quantile(handover, 50), quantile(handover, 99), len(handover))
}

func quantile(d []time.Duration, p int) string {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return "-"
	}
	return s[min(len(s)-1, len(s)*p/100)].Round(time.Millisecond).String()
}

// diagnose logs, when the test failed, what the gateway and Nomad saw: the
// replicas' sessions, the jobs, every allocation's last events and the
// gateways' own log.
func (c *cluster) diagnose(t *testing.T, gp **gateway) {
	if !t.Failed() {
		return
	}
	g := *gp
	for i := range g.urls {
		b, _ := json.Marshal(g.sessions(i))
		t.Logf("gateway %s sessions: %s", g.urls[i], b)
	}
	var jobs []struct{ ID, Status string }
	_ = c.server.api("/v1/jobs", &jobs)
	t.Logf("jobs: %+v", jobs)
	var allocs []struct {
		ID, JobID, NodeID, ClientStatus string
		TaskStates                      map[string]struct {
			Events []struct{ DisplayMessage string }
		}
	}
	_ = c.server.api("/v1/allocations", &allocs)
	for _, al := range allocs {
		var last []string
		for _, ts := range al.TaskStates {
			for _, e := range ts.Events[max(0, len(ts.Events)-6):] {
				last = append(last, e.DisplayMessage)
			}
		}
		t.Logf("alloc %s %s node %s %s: %s", al.ID[:8], al.JobID, c.nodeClass(al.NodeID), al.ClientStatus, strings.Join(last, " | "))
		if strings.HasPrefix(al.JobID, "pixelstream-gateway") {
			out, _ := c.server.nomadErr("alloc", "logs", "-stderr", al.ID)
			lines := strings.Split(out, "\n")
			t.Logf("gateway %s log:\n%s", al.ID[:8], strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	}
}
