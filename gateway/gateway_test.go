package gateway_test

// These tests run the gateway in process against real sessions (the
// signalling server with claims, as the session supervisor runs it) and a
// FAKE Nomad API (named so: canned answers for the three endpoints the
// gateway uses). The real-Nomad path is e2e/gateway_test.go.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/config"
)

const (
	secret   = "unit-gateway-secret-0123456789"
	opToken  = "unit-operator-token-0123456789"
	opHeader = "Bearer " + opToken
)

// session is a pool session: a signalling server with claims and a
// stand-in streamer identified to it.
func session(t testing.TB, returnToPool bool) *playerhttp.Signalling {
	t.Helper()
	return sessionWith(t, returnToPool, nil)
}

// sessionWith is a pool session whose player port serves TLS when
// playerTLS is set.
func sessionWith(t testing.TB, returnToPool bool, playerTLS *tls.Config) *playerhttp.Signalling {
	t.Helper()
	allocMu.Lock()
	alloc := fmt.Sprintf("alloc-%d", len(allocOf))
	allocMu.Unlock()
	s, err := playerhttp.Start(signalling.Config{StreamerListen: "127.0.0.1:0", Logger: hclog.NewNullLogger()},
		playerhttp.Config{Listen: "127.0.0.1:0", Logger: hclog.NewNullLogger(), TLS: playerTLS,
			Claim: playerhttp.ClaimConfig{Secret: secret, AllocID: alloc, TTL: time.Minute, ReturnToPool: returnToPool}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	st, _, err := websocket.DefaultDialer.Dial("ws://"+s.StreamerAddr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	go func() {
		for {
			var m map[string]any
			if err := st.ReadJSON(&m); err != nil {
				return
			}
			if m["type"] == "identify" {
				_ = st.WriteJSON(map[string]any{"type": "endpointId", "id": "DefaultStreamer", "protocolVersion": signalling.ProtocolVersion})
			}
		}
	}()
	eventually(t, "the streamer to identify", func() bool { return len(s.Router.Status().Streamers) == 1 })
	allocMu.Lock()
	allocOf[s] = alloc
	allocMu.Unlock()
	return s
}

// allocOf is each test session's allocation id (its claim key derives
// from it), as the fake Nomad lists it.
var (
	allocMu sync.Mutex
	allocOf = map[*playerhttp.Signalling]string{}
)

// fakeNomad is a FAKE Nomad API listing the given sessions as registrations
// of running children; blocking queries hold until the client gives up.
func fakeNomad(t testing.TB, sessions ...*playerhttp.Signalling) string {
	t.Helper()
	return fakeNomadWith(t, nil, sessions...)
}

// fakeNomadWith also lists foreign registrations of the session service:
// registrations Nomad has, but of jobs that are not the session job's
// children, or naming allocations Nomad does not confirm.
func fakeNomadWith(t testing.TB, foreign []map[string]any, sessions ...*playerhttp.Signalling) string {
	t.Helper()
	var regs, jobs []map[string]any
	allocs := map[string]map[string]any{}
	for i, s := range sessions {
		host, p, _ := net.SplitHostPort(s.PlayerAddr().String())
		port, _ := strconv.Atoi(p)
		job := fmt.Sprintf("pixelstream-session/dispatch-%d", i)
		allocMu.Lock()
		alloc := allocOf[s]
		allocMu.Unlock()
		regs = append(regs, map[string]any{"ServiceName": "pixelstream-session", "Namespace": "default", "JobID": job, "NodeID": "node",
			"AllocID": alloc, "Address": host, "Port": port})
		jobs = append(jobs, map[string]any{"ID": job, "ParentID": "pixelstream-session", "Status": "running"})
		allocs[alloc] = map[string]any{"ID": alloc, "Namespace": "default", "NodeID": "node", "JobID": job, "ClientStatus": "running",
			"Job": map[string]any{"ID": job, "ParentID": "pixelstream-session", "Dispatched": true}}
	}
	regs = append(regs, foreign...)
	answer := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("index") != "" {
				<-r.Context().Done()
				return
			}
			w.Header().Set("X-Nomad-Index", "1")
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/service/pixelstream-session", answer(regs))
	mux.HandleFunc("GET /v1/jobs", answer(jobs))
	mux.HandleFunc("GET /v1/allocation/{id}", func(w http.ResponseWriter, r *http.Request) {
		a, ok := allocs[r.PathValue("id")]
		if !ok {
			http.Error(w, "alloc not found", http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(a)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake Nomad: unexpected %s %s (a dispatch beyond max_sessions?)", r.Method, r.URL)
		http.Error(w, "unexpected", http.StatusInternalServerError)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func startGateway(t testing.TB, nomadAddr string, maxSessions int, extra ...string) string {
	t.Helper()
	cfg, err := config.Load(append([]string{"-nomad-addr", nomadAddr, "-secret", secret, "-operator-token", opToken, "-min-free", "0",
		"-max-sessions", strconv.Itoa(maxSessions), "-max-queue", "5", "-state-interval", "100ms"}, extra...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	op, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx, ln, op); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + ln.Addr().String()
	allocMu.Lock()
	operatorOf[base] = "http://" + op.Addr().String()
	allocMu.Unlock()
	return base
}

// operatorOf is each test gateway's operator listener, by visitor URL.
var operatorOf = map[string]string{}

// operatorGet GETs an operator endpoint of the gateway at base.
func operatorGet(t testing.TB, base, path string, v any) int {
	t.Helper()
	allocMu.Lock()
	op := operatorOf[base]
	allocMu.Unlock()
	req, _ := http.NewRequest(http.MethodGet, op+path, nil)
	req.Header.Set("Authorization", opHeader)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// visitor is a browser: its own cookie jar.
type visitor struct {
	t    testing.TB
	base string
	c    *http.Client
}

func newVisitor(t testing.TB, base string) *visitor {
	jar, _ := cookiejar.New(nil)
	return &visitor{t: t, base: base, c: &http.Client{Jar: jar}}
}

func (v *visitor) navigate() (*http.Response, string) {
	v.t.Helper()
	return v.navigateWith(nil)
}

// navigateWith loads the page with extra headers (Sec-Fetch-Site, a
// credential).
func (v *visitor) navigateWith(h http.Header) (*http.Response, string) {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, v.base+"/", nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := v.c.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (v *visitor) cookieHeader() http.Header {
	u, _ := http.NewRequest(http.MethodGet, v.base+"/", nil)
	var parts []string
	for _, c := range v.c.Jar.Cookies(u.URL) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return http.Header{"Cookie": {strings.Join(parts, "; ")}, "Origin": {v.base}}
}

// player connects the visitor's player WebSocket through the gateway and
// subscribes to the streamer.
func (v *visitor) player() *websocket.Conn {
	v.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(strings.Replace(v.base, "http", "ws", 1)+"/", v.cookieHeader())
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		v.t.Fatalf("player WebSocket through the gateway: %v (HTTP %d)", err, status)
	}
	var m map[string]any
	if err := ws.ReadJSON(&m); err != nil || m["type"] != "config" {
		v.t.Fatalf("first message through the gateway: %v %v", m, err)
	}
	if err := ws.WriteJSON(map[string]string{"type": "subscribe", "streamerId": "DefaultStreamer"}); err != nil {
		v.t.Fatal(err)
	}
	return ws
}

// events opens the waiting page's event stream and returns its events.
func (v *visitor) events(ctx context.Context) <-chan [2]string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.base+"/gateway/queue/events", nil)
	resp, err := v.c.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		v.t.Fatalf("event stream: %v %v", err, resp)
	}
	out := make(chan [2]string, 16)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		br := bufio.NewReader(resp.Body)
		var ev string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				ev = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				out <- [2]string{ev, strings.TrimPrefix(line, "data: ")}
			}
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan [2]string, want string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("event stream ended before %q", want)
			}
			if e[0] == want {
				return e[1]
			}
		case <-timeout:
			t.Fatalf("no %q event", want)
		}
	}
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestVisitorsProxiedQueuedAndHandedOver(t *testing.T) {
	s := session(t, true)
	base := startGateway(t, fakeNomad(t, s), 1)
	eventually(t, "the gateway to see the session free", func() bool { return s.Web.ClaimState() == playerhttp.ClaimFree && free(t, base) == 1 })

	// Visitor 1 gets the session: the page and the WebSocket go through
	// the gateway, under its origin.
	v1 := newVisitor(t, base)
	resp, body := v1.navigate()
	if resp.StatusCode != http.StatusOK || strings.Contains(body, "Waiting for a session") {
		t.Fatalf("visitor 1: HTTP %d, waiting page %v", resp.StatusCode, strings.Contains(body, "Waiting for a session"))
	}
	if s.Web.ClaimState() != playerhttp.ClaimClaimed {
		t.Fatalf("session state %s after visitor 1 arrived, want claimed", s.Web.ClaimState())
	}
	ws1 := v1.player()
	eventually(t, "busy", func() bool { return s.Web.ClaimState() == playerhttp.ClaimBusy })

	// Someone without the binding cookie gets no way in.
	if _, r, err := websocket.DefaultDialer.Dial(strings.Replace(base, "http", "ws", 1)+"/", nil); err == nil || r == nil || r.StatusCode != http.StatusNotFound {
		t.Fatalf("WebSocket without a session: %v %v", r, err)
	}

	// A forged binding (another key, pointing the proxy elsewhere) is no
	// way in either, and the visitor streaming meanwhile is untouched.
	forged := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhbGxvYyI6ImFsbG9jLTAiLCJhZGRyIjoiMTI3LjAuMC4xOjIyIiwidG9rIjoieCIsInZpcyI6InYiLCJpc3MiOiJwaXhlbHN0cmVhbS1nYXRld2F5IiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2lnbmF0dXJl"
	if _, r, err := websocket.DefaultDialer.Dial(strings.Replace(base, "http", "ws", 1)+"/",
		http.Header{"Cookie": {"pixelstream_session=" + forged}}); err == nil || r == nil || r.StatusCode != http.StatusNotFound {
		t.Fatalf("WebSocket with a forged binding: %v %v", r, err)
	}
	if err := ws1.WriteJSON(map[string]string{"type": "listStreamers"}); err != nil {
		t.Fatal(err)
	}
	for {
		var m map[string]any
		if err := ws1.ReadJSON(&m); err != nil {
			t.Fatalf("visitor 1 after the forged attempt: %v", err)
		}
		if m["type"] == "streamerList" {
			break
		}
	}

	// Visitor 2 waits: position 1.
	v2 := newVisitor(t, base)
	if _, body := v2.navigate(); !strings.Contains(body, "Waiting for a session") {
		t.Fatal("visitor 2 did not get the waiting page")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev := v2.events(ctx)
	var pos struct{ Position int }
	_ = json.Unmarshal([]byte(next(t, ev, "position")), &pos)
	if pos.Position != 1 {
		t.Fatalf("visitor 2 at position %d, want 1", pos.Position)
	}

	// Visitor 1 leaves; the session returns to the pool and is visitor 2's.
	_ = ws1.Close()
	var assigned struct{ Ticket string }
	_ = json.Unmarshal([]byte(next(t, ev, "assigned")), &assigned)
	req, _ := http.NewRequest(http.MethodPost, base+"/gateway/enter", strings.NewReader(assigned.Ticket))
	r, err := v2.c.Do(req)
	if err != nil || r.StatusCode != http.StatusNoContent {
		t.Fatalf("enter: %v %v", r, err)
	}
	r.Body.Close()
	// Visitor 1's ticket is not visitor 2's: the same ticket from v1 fails.
	req, _ = http.NewRequest(http.MethodPost, base+"/gateway/enter", strings.NewReader(assigned.Ticket))
	if r, err := v1.c.Do(req); err != nil || r.StatusCode != http.StatusForbidden {
		t.Fatalf("another visitor's ticket: %v %v", r, err)
	}
	if resp, body := v2.navigate(); resp.StatusCode != http.StatusOK || strings.Contains(body, "Waiting for a session") {
		t.Fatalf("visitor 2 after entering: HTTP %d", resp.StatusCode)
	}
	ws2 := v2.player()
	defer ws2.Close()
	eventually(t, "busy for visitor 2", func() bool { return s.Web.ClaimState() == playerhttp.ClaimBusy })
}

func TestQueueFullAndLeavingOnClose(t *testing.T) {
	s := session(t, false)
	base := startGateway(t, fakeNomad(t, s), 1, "-max-waiting-per-address", "10")
	eventually(t, "free", func() bool { return free(t, base) == 1 })
	newVisitor(t, base).navigate() // takes the only session

	var cancels []context.CancelFunc
	for i := 0; i < 5; i++ { // max_queue 5
		v := newVisitor(t, base)
		v.navigate()
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		next(t, v.events(ctx), "position")
	}
	resp, _ := newVisitor(t, base).navigate()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past max_queue: HTTP %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Tabs closed: the line empties (after the grace for reloads).
	for _, c := range cancels {
		c()
	}
	eventually(t, "the queue to empty", func() bool { return queueLen(t, base) == 0 })
}

func free(t testing.TB, base string) int {
	var out struct{ Counts struct{ Free int } }
	operatorGet(t, base, "/api/sessions", &out)
	return out.Counts.Free
}

func queueLen(t *testing.T, base string) int {
	out := struct{ Length int }{-1}
	operatorGet(t, base, "/api/queue", &out)
	return out.Length
}

// TestRedirectRoute: with route = "redirect" the gateway claims a session
// and sends the browser to the session's own URL with the one-time token;
// the session's page and player WebSocket open with that token there, and
// the session is the visitor's alone.
func TestRedirectRoute(t *testing.T) {
	s := session(t, false)
	base := startGateway(t, fakeNomad(t, s), 1, "-route", "redirect")
	eventually(t, "the gateway to see the session free", func() bool { return free(t, base) == 1 })

	v := newVisitor(t, base)
	v.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ := v.navigate()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("visitor got HTTP %d, want 302 to the session", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Host != s.PlayerAddr().String() || loc.Query().Get("token") == "" {
		t.Fatalf("redirected to %q, want the session %s with a token", resp.Header.Get("Location"), s.PlayerAddr())
	}
	if s.Web.ClaimState() != playerhttp.ClaimClaimed {
		t.Fatalf("session %s after the redirect, want claimed", s.Web.ClaimState())
	}

	// Without the token the session lets nobody in; with it, the page and
	// the player WebSocket open at the session itself.
	if r, err := http.Get("http://" + loc.Host + "/"); err != nil || r.StatusCode == http.StatusOK {
		t.Fatalf("session page without the token: %v %v", r, err)
	}
	page, err := http.Get(loc.String())
	if err != nil || page.StatusCode != http.StatusOK {
		t.Fatalf("session page with the redirect's token: %v %v", page, err)
	}
	page.Body.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+loc.Host+"/?token="+url.QueryEscape(loc.Query().Get("token")), nil)
	if err != nil {
		t.Fatalf("player WebSocket with the token: %v", err)
	}
	defer ws.Close()
	var m map[string]any
	if err := ws.ReadJSON(&m); err != nil || m["type"] != "config" {
		t.Fatalf("first message at the session: %v %v", m, err)
	}
	_ = ws.WriteJSON(map[string]string{"type": "subscribe", "streamerId": "DefaultStreamer"})
	eventually(t, "busy", func() bool { return s.Web.ClaimState() == playerhttp.ClaimBusy })

	// A second visitor is not sent to the same session: it waits.
	if _, body := newVisitor(t, base).navigate(); !strings.Contains(body, "Waiting for a session") {
		t.Fatal("a second visitor was not queued while the only session is taken")
	}
}

// TestForeignRegistrationGetsNothing: a job that is not a child of the
// session job registers the session service name (anyone with submit
// rights can), and so does one that names a live child's job with an
// allocation Nomad does not confirm. Neither gets a single request (no
// state poll, no claim, no key-signed request to learn from) nor a
// visitor: with the only real session taken, the next visitor waits.
func TestForeignRegistrationGetsNothing(t *testing.T) {
	var hits sync.Map
	trap := func(name string) (string, int) {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Store(name, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<h1>attacker's page</h1>")
		})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		host, p, _ := net.SplitHostPort(ln.Addr().String())
		port, _ := strconv.Atoi(p)
		return host, port
	}
	h1, p1 := trap("not a child")
	h2, p2 := trap("unconfirmed allocation")
	s := session(t, false)
	foreign := []map[string]any{
		{"ServiceName": "pixelstream-session", "Namespace": "default", "JobID": "evil", "NodeID": "node", "AllocID": "alloc-evil", "Address": h1, "Port": p1},
		{"ServiceName": "pixelstream-session", "Namespace": "default", "JobID": "pixelstream-session/dispatch-0", "NodeID": "node",
			"AllocID": "alloc-unknown", "Address": h2, "Port": p2},
	}
	base := startGateway(t, fakeNomadWith(t, foreign, s), 3)
	eventually(t, "the gateway to see its one session free", func() bool { return free(t, base) == 1 })

	if _, body := newVisitor(t, base).navigate(); strings.Contains(body, "attacker") || s.Web.ClaimState() != playerhttp.ClaimClaimed {
		t.Fatalf("first visitor: the real session is %s; page from the attacker %v", s.Web.ClaimState(), strings.Contains(body, "attacker"))
	}
	for i := 0; i < 3; i++ {
		if _, body := newVisitor(t, base).navigate(); !strings.Contains(body, "Waiting for a session") {
			t.Fatalf("visitor %d with the only session taken did not wait (attacker's page: %v)", i+2, strings.Contains(body, "attacker"))
		}
	}
	// Several state-poll rounds (100ms) have passed; none reached a trap.
	hits.Range(func(k, v any) bool {
		t.Errorf("the %s registration got a request: %v", k, v)
		return true
	})
	if n := len(sessionsOf(t, base)); n != 1 {
		t.Fatalf("/api/sessions lists %d sessions, want only the one of its own", n)
	}
}

func sessionsOf(t *testing.T, base string) []map[string]any {
	t.Helper()
	var out struct{ Sessions []map[string]any }
	operatorGet(t, base, "/api/sessions", &out)
	return out.Sessions
}
