package signalling

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const testSecret = "gateway-secret-0123456789abcdef"

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

func poolServer(t *testing.T, cfg ClaimConfig) (*Server, *claimRecorder) {
	t.Helper()
	rec := &claimRecorder{}
	if cfg.Secret == "" {
		cfg.Secret = testSecret
	}
	cfg.OnChange = rec.add
	return startServer(t, Config{Claim: cfg, MaxPlayers: 1}), rec
}

func postClaim(t *testing.T, s *Server, secret, body string) (int, claimResponse) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, httpURL(s, "/api/claim"), strings.NewReader(body))
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /api/claim: %v", err)
	}
	defer resp.Body.Close()
	var out claimResponse
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST /api/claim: %d %q is not JSON: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, out
}

func statusState(t *testing.T, s *Server) string {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + testSecret}}
	resp, body := httpGet(t, httpURL(s, "/api/status"), h)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/status with the gateway secret: %d %s", resp.StatusCode, body)
	}
	var st map[string]any
	_ = json.Unmarshal([]byte(body), &st)
	v, _ := st["state"].(string)
	return v
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
		{"too long", testSecret, `{"visitor":"` + strings.Repeat("v", claimFieldMax+1) + `"}`, http.StatusBadRequest},
		{"too big", testSecret, `{"visitor":"` + strings.Repeat("v", claimBodyLimit) + `"}`, http.StatusBadRequest},
		{"not JSON", testSecret, `visitor=v1`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, resp := postClaim(t, s, tc.secret, tc.body)
			if code != tc.want || resp.Token != "" {
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
				token = resp.Token
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusOK] != 1 || codes[http.StatusConflict] != n-1 || token == "" {
		t.Fatalf("%d concurrent claims answered %v, want one 200 and %d 409", n, codes, n-1)
	}
	if got := statusState(t, s); got != "claimed" {
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
	if resp, _ := httpGet(t, httpURL(s, "/"), http.Header{"Authorization": {"Bearer " + first.Token}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired token opened the page: %d", resp.StatusCode)
	}

	code, second := postClaim(t, s, testSecret, `{"visitor":"v2"}`)
	if code != http.StatusOK || second.Token == first.Token {
		t.Fatalf("second claim: %d, same token %v", code, second.Token == first.Token)
	}
	p := dial(t, "v2", playerURL(s), http.Header{"Authorization": {"Bearer " + second.Token}})
	p.expect(wantConfig)
	subscribe(t, p, st, "DefaultStreamer")
	eventually(t, "busy", func() bool { return s.ClaimState() == ClaimBusy })
	_ = p.ws.Close()
	eventually(t, "back in the pool", func() bool { return s.ClaimState() == ClaimFree })
	if _, _, err := websocket.DefaultDialer.Dial(playerURL(s), http.Header{"Authorization": {"Bearer " + second.Token}}); err == nil {
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
	code, resp := postClaim(t, s, testSecret, `{}`)
	if code != http.StatusNotFound || resp.Token != "" {
		t.Fatalf("claim of a session without a gateway: %d %+v, want 404", code, resp)
	}
	if resp, _ := httpGet(t, httpURL(s, "/"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("page of a session without a gateway: %d, want 200", resp.StatusCode)
	}
}
