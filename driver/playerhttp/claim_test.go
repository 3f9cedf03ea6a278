package playerhttp

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

const (
	testSecret = "gateway-secret-0123456789abcdef"
	testAlloc  = "0b7c1a52-alloc-of-this-session"
)

type claimRecorder struct {
	mu  sync.Mutex
	evs []ClaimEvent
}

func (r *claimRecorder) add(e ClaimEvent) { r.mu.Lock(); r.evs = append(r.evs, e); r.mu.Unlock() }
func (r *claimRecorder) states() []ClaimState {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ClaimState
	for _, e := range r.evs {
		out = append(out, e.State)
	}
	return out
}

func poolServer(t *testing.T, cfg ClaimConfig) (*testServer, *claimRecorder) {
	t.Helper()
	rec := &claimRecorder{}
	if cfg.Secret == "" {
		cfg.Secret = testSecret
	}
	if cfg.AllocID == "" {
		cfg.AllocID = testAlloc
	}
	cfg.OnChange = rec.add
	return startServerWith(t, Config{Claim: cfg}, signalling.Config{MaxPlayers: 1}), rec
}

// signedClaim is a claim request as the gateway sends it: signed with the
// key derived from secret for testAlloc ("" = unsigned).
func signedClaim(t *testing.T, s *testServer, secret, method, body string, at time.Time) (*http.Request, string) {
	t.Helper()
	req, _ := http.NewRequest(method, httpURL(s, claim.Path), strings.NewReader(body))
	if secret == "" {
		return req, ""
	}
	return req, claim.Authorize(req, claim.SessionKey(secret, testAlloc), []byte(body), at)
}

// send sends req and checks the answer's signature when the request had
// a nonce and was accepted.
func send(t *testing.T, req *http.Request, secret, nonce string) (int, claim.Response) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, claim.Path, err)
	}
	defer resp.Body.Close()
	var out claim.Response
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON: %v", req.Method, claim.Path, resp.StatusCode, b, err)
	}
	if nonce != "" && resp.StatusCode != http.StatusUnauthorized {
		if err := claim.VerifyResponse(resp.Header, claim.SessionKey(secret, testAlloc), nonce, resp.StatusCode, b); err != nil {
			t.Fatalf("answer %d: %v", resp.StatusCode, err)
		}
	}
	return resp.StatusCode, out
}

func postClaim(t *testing.T, s *testServer, secret, body string) (int, claim.Response) {
	t.Helper()
	req, nonce := signedClaim(t, s, secret, http.MethodPost, body, time.Now())
	return send(t, req, secret, nonce)
}

func statusState(t *testing.T, s *testServer) string {
	t.Helper()
	req, nonce := signedClaim(t, s, testSecret, http.MethodGet, "", time.Now())
	code, resp := send(t, req, testSecret, nonce)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %+v", claim.Path, code, resp)
	}
	return string(resp.State)
}

func TestClaimRefusesWithoutSecretOrStreamer(t *testing.T) {
	s, _ := poolServer(t, ClaimConfig{})
	for _, tc := range []struct {
		name, secret, body string
		want               int
	}{
		{"no secret", "", `{}`, http.StatusUnauthorized},
		{"wrong secret", "wrong-secret-0123456789", `{}`, http.StatusUnauthorized},
		{"not ready", testSecret, `{"visitor":"v1"}`, http.StatusServiceUnavailable},
		{"unknown field", testSecret, `{"visitor":"v1","token":"x"}`, http.StatusBadRequest},
		{"control character", testSecret, `{"visitor":"a\u0007b"}`, http.StatusBadRequest},
		{"too long", testSecret, `{"visitor":"` + strings.Repeat("v", claim.FieldMax+1) + `"}`, http.StatusBadRequest},
		{"too big", testSecret, `{"visitor":"` + strings.Repeat("v", claim.BodyLimit) + `"}`, http.StatusUnauthorized},
		{"not JSON", testSecret, `visitor=v1`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, resp := postClaim(t, s, tc.secret, tc.body)
			if code != tc.want || resp.Claim != "" {
				t.Fatalf("claim: %d %+v, want %d and no token", code, resp, tc.want)
			}
		})
	}
	if st := statusState(t, s); st != "free" {
		t.Fatalf("state after refused claims: %q, want free", st)
	}
}

func TestClaimIsExclusiveAndTokenOpensThePage(t *testing.T) {
	s, rec := poolServer(t, ClaimConfig{})
	st := newStreamer(t, s, "DefaultStreamer")

	// Before a claim the page and the WebSocket are closed to everyone.
	if resp, _ := httpGet(t, httpURL(s, "/"), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("page of a free pool session: %d, want 401", resp.StatusCode)
	}
	if resp, _ := httpGet(t, httpURL(s, "/healthz"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz of a pool session: %d, want 200 (checks stay open)", resp.StatusCode)
	}

	// Concurrent claims (below the per-address connection cap): exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	var token string
	const n = 20
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, resp := postClaim(t, s, testSecret, `{"visitor":"v","subject":"alice"}`)
			mu.Lock()
			codes[code]++
			if code == http.StatusOK {
				token = playerToken(resp)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusOK] != 1 || codes[http.StatusConflict] != n-1 || token == "" {
		t.Fatalf("%d concurrent claims answered %v, want one 200 and %d 409", n, codes, n-1)
	}
	if got := statusState(t, s); got != string(ClaimClaimed) {
		t.Fatalf("state: %q, want claimed", got)
	}

	// Without the token: refused. With it (the proxying gateway's header,
	// or ?token= then the cookie): the page and the player WebSocket.
	if resp, _ := httpGet(t, httpURL(s, "/"), http.Header{"Authorization": {"Bearer nope-nope-nope-nope"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("page with a wrong token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := httpGet(t, httpURL(s, "/"), http.Header{"Authorization": {"Bearer " + testSecret}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("page with the gateway secret: %d, want 401 (the secret is not a player token)", resp.StatusCode)
	}
	resp, _ := httpGet(t, httpURL(s, "/?token="+token), nil)
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 {
		t.Fatalf("page with ?token=: %d cookies %v, want 200 and the claim cookie", resp.StatusCode, resp.Cookies())
	}
	if _, _, err := websocket.DefaultDialer.Dial(playerURL(s), nil); err == nil {
		t.Fatal("player WebSocket without the token was accepted")
	}
	p := dial(t, "visitor", playerURL(s), http.Header{"Authorization": {"Bearer " + token}})
	p.expect(wantConfig)
	subscribe(t, p, st, "DefaultStreamer")
	eventually(t, "state busy", func() bool { return s.ClaimState() == ClaimBusy })

	// Busy and without return_to_pool: the visitor leaving keeps the
	// session theirs (the session's idle_timeout ends it), the token works.
	_ = p.ws.Close()
	eventually(t, "player gone", func() bool { return len(s.Status().Players) == 0 })
	if s.ClaimState() != ClaimBusy {
		t.Fatalf("state after the visitor left: %s, want busy", s.ClaimState())
	}
	if code, _ := postClaim(t, s, testSecret, `{}`); code != http.StatusConflict {
		t.Fatalf("claim of a busy session: %d, want 409", code)
	}
	if got := rec.states(); len(got) != 2 || got[0] != ClaimClaimed || got[1] != ClaimBusy {
		t.Fatalf("claim events %v, want [claimed busy]", got)
	}
}

func TestClaimExpiresAndReturnToPool(t *testing.T) {
	s, rec := poolServer(t, ClaimConfig{TTL: 200 * time.Millisecond, ReturnToPool: true})
	st := newStreamer(t, s, "DefaultStreamer")

	code, first := postClaim(t, s, testSecret, `{"visitor":"late"}`)
	if code != http.StatusOK {
		t.Fatalf("claim: %d", code)
	}
	eventually(t, "the unused claim to expire", func() bool { return s.ClaimState() == ClaimFree })
	if resp, _ := httpGet(t, httpURL(s, "/"), http.Header{"Authorization": {"Bearer " + playerToken(first)}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired token opened the page: %d", resp.StatusCode)
	}

	code, second := postClaim(t, s, testSecret, `{"visitor":"v2"}`)
	if code != http.StatusOK || second.Claim == first.Claim {
		t.Fatalf("second claim: %d, same token %v", code, second.Claim == first.Claim)
	}
	p := dial(t, "v2", playerURL(s), http.Header{"Authorization": {"Bearer " + playerToken(second)}})
	p.expect(wantConfig)
	subscribe(t, p, st, "DefaultStreamer")
	eventually(t, "busy", func() bool { return s.ClaimState() == ClaimBusy })
	_ = p.ws.Close()
	eventually(t, "back in the pool", func() bool { return s.ClaimState() == ClaimFree })
	if _, _, err := websocket.DefaultDialer.Dial(playerURL(s), http.Header{"Authorization": {"Bearer " + playerToken(second)}}); err == nil {
		t.Fatal("the previous visitor's token still opens a session returned to the pool")
	}
	want := []ClaimState{ClaimClaimed, ClaimFree, ClaimClaimed, ClaimBusy, ClaimFree}
	got := rec.states()
	if len(got) != len(want) {
		t.Fatalf("claim events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("claim events %v, want %v", got, want)
		}
	}
}

func TestNoClaimsWithoutGateway(t *testing.T) {
	s := startServer(t, Config{})
	req, _ := signedClaim(t, s, testSecret, http.MethodPost, `{}`, time.Now())
	code, resp := send(t, req, "", "") // a session without a gateway has no key to sign with
	if code != http.StatusNotFound || resp.Claim != "" {
		t.Fatalf("claim of a session without a gateway: %d %+v, want 404", code, resp)
	}
	if resp, _ := httpGet(t, httpURL(s, "/"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("page of a session without a gateway: %d, want 200", resp.StatusCode)
	}
}

// TestClaimReplayAndForeignKeysFail plays the attacker who captured a
// claim exchange on the wire (plain http): the secret is not in it, the
// same request sent again is refused, so is one signed for another
// allocation, a stale one, and the old Bearer secret; the session stays
// free for the gateway, whose next claim works.
func TestClaimReplayAndForeignKeysFail(t *testing.T) {
	s, _ := poolServer(t, ClaimConfig{TTL: 200 * time.Millisecond})
	newStreamer(t, s, "DefaultStreamer")
	body := `{"visitor":"v1"}`
	captured, nonce := signedClaim(t, s, testSecret, http.MethodPost, body, time.Now())
	wire := captured.Header.Get("Authorization")
	if strings.Contains(wire, testSecret) {
		t.Fatalf("the fleet secret is on the wire: %s", wire)
	}
	replay := func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, httpURL(s, claim.Path), strings.NewReader(body))
		r.Header.Set("Authorization", wire)
		return r
	}
	if code, resp := send(t, captured, testSecret, nonce); code != http.StatusOK || resp.Claim == "" {
		t.Fatalf("the gateway's claim: %d %+v", code, resp)
	}
	eventually(t, "the unused claim to expire", func() bool { return s.ClaimState() == ClaimFree })

	stale, _ := signedClaim(t, s, testSecret, http.MethodPost, body, time.Now().Add(-claim.Skew-5*time.Second))
	otherAlloc, _ := http.NewRequest(http.MethodPost, httpURL(s, claim.Path), strings.NewReader(body))
	claim.Authorize(otherAlloc, claim.SessionKey(testSecret, "another-allocation"), []byte(body), time.Now())
	bearer, _ := http.NewRequest(http.MethodPost, httpURL(s, claim.Path), strings.NewReader(body))
	bearer.Header.Set("Authorization", "Bearer "+testSecret)
	otherBody := replay()
	otherBody.Body = io.NopCloser(strings.NewReader(`{"visitor":"attacker"}`))
	for name, r := range map[string]*http.Request{"the captured request replayed": replay(), "a stale request": stale,
		"another allocation's key": otherAlloc, "the fleet secret as Bearer": bearer, "the captured signature on another body": otherBody} {
		if code, resp := send(t, r, "", ""); code != http.StatusUnauthorized || resp.Claim != "" {
			t.Fatalf("%s: %d %+v, want 401 and no token", name, code, resp)
		}
		if s.ClaimState() != ClaimFree {
			t.Fatalf("%s changed the session's state to %s", name, s.ClaimState())
		}
	}
	if code, resp := postClaim(t, s, testSecret, body); code != http.StatusOK || resp.Claim == "" {
		t.Fatalf("the gateway's next claim: %d %+v", code, resp)
	}
}

// playerToken is the player token of a claim, as the gateway derives it.
func playerToken(r claim.Response) string {
	return claim.PlayerToken(claim.SessionKey(testSecret, testAlloc), r.Claim)
}
