package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
)

// The cost of the claim contract's authentication and of the opaque
// binding, on loopback (go test -bench . -run '^$' ./gateway/):
//   - BenchmarkClaimStateRoundTrip: one signed GET /api/claim to a session
//     and the check of its signed answer (what every state poll costs);
//   - BenchmarkClaimPostRoundTrip: one signed POST /api/claim with a body,
//     refused 409 (the full path of a claim, without taking the session);
//   - BenchmarkProxyRTT: one GET of the session's /api/status through the
//     gateway with the visitor's cookies (binding opened, token derived).

func BenchmarkClaimStateRoundTrip(b *testing.B) {
	s := session(b, false)
	allocMu.Lock()
	key := claim.SessionKey(secret, allocOf[s])
	allocMu.Unlock()
	u := "http://" + s.PlayerAddr().String() + claim.Path
	hc := &http.Client{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		nonce := claim.Authorize(req, key, nil, time.Now())
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := claim.VerifyResponse(resp.Header, key, nonce, resp.StatusCode, body); err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%d %v", resp.StatusCode, err)
		}
	}
}

func BenchmarkClaimPostRoundTrip(b *testing.B) {
	s := session(b, false)
	allocMu.Lock()
	key := claim.SessionKey(secret, allocOf[s])
	allocMu.Unlock()
	u := "http://" + s.PlayerAddr().String() + claim.Path
	hc := &http.Client{}
	post := func() int {
		body := `{"visitor":"v-benchmark000","subject":"alice","address":"a-benchmark000"}`
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
		nonce := claim.Authorize(req, key, []byte(body), time.Now())
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := claim.VerifyResponse(resp.Header, key, nonce, resp.StatusCode, rb); err != nil {
			b.Fatal(err)
		}
		return resp.StatusCode
	}
	if code := post(); code != http.StatusOK {
		b.Fatalf("first claim: %d", code)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if code := post(); code != http.StatusConflict {
			b.Fatalf("claim of a claimed session: %d", code)
		}
	}
}

func BenchmarkProxyRTT(b *testing.B) {
	s := session(b, false)
	base := startGateway(b, fakeNomad(b, s), 1)
	eventually(b, "free", func() bool { return free(b, base) == 1 })
	v := newVisitor(b, base)
	if resp, _ := v.navigate(); resp.StatusCode != http.StatusOK {
		b.Fatalf("visitor: %d", resp.StatusCode)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := v.c.Get(base + "/api/status")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("proxied /api/status: %d", resp.StatusCode)
		}
	}
}
