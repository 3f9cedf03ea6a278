package playerhttp

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
)

// stateAt is a blocking GET of the claim state given the last index seen.
func stateAt(t *testing.T, s *testServer, index string) (int, claim.Response) {
	t.Helper()
	req, nonce := signedClaim(t, s, testSecret, http.MethodGet, "", time.Now())
	q := req.URL.Query()
	q.Set(claim.IndexParam, index)
	req.URL.RawQuery = q.Encode()
	return send(t, req, testSecret, nonce)
}

// TestClaimBlockingRead: a GET with the current index answers when the
// session changes (the streamer identifies, a claim), not before; a stale
// index answers at once; a bad index is refused with the parameter named.
func TestClaimBlockingRead(t *testing.T) {
	s, _ := poolServer(t, ClaimConfig{})
	_, first := stateAt(t, s, "0") // indexes start at 1: the first read answers at once
	if first.Ready {
		t.Fatalf("ready before any streamer: %+v", first)
	}
	idx := strconv.FormatUint(first.Index, 10)

	type answer struct {
		code int
		resp claim.Response
		at   time.Time
	}
	got := make(chan answer, 1)
	go func() {
		code, resp := stateAt(t, s, idx)
		got <- answer{code, resp, time.Now()}
	}()
	select {
	case a := <-got:
		t.Fatalf("blocking read answered before any change: %+v", a.resp)
	case <-time.After(300 * time.Millisecond):
	}
	identified := time.Now()
	newStreamer(t, s, "DefaultStreamer")
	a := <-got
	if a.code != http.StatusOK || !a.resp.Ready || a.resp.Index <= first.Index {
		t.Fatalf("after the streamer identified: %d %+v", a.code, a.resp)
	}
	if d := a.at.Sub(identified); d > 2*time.Second {
		t.Fatalf("blocking read answered %s after the change", d)
	}

	// A stale index answers at once with the current state.
	start := time.Now()
	if code, resp := stateAt(t, s, idx); code != http.StatusOK || !resp.Ready || time.Since(start) > 2*time.Second {
		t.Fatalf("stale index: %d %+v after %s", code, resp, time.Since(start))
	}

	// A claim moves the index too.
	go func() {
		code, resp := stateAt(t, s, strconv.FormatUint(a.resp.Index, 10))
		got <- answer{code, resp, time.Now()}
	}()
	if code, _ := postClaim(t, s, testSecret, `{"visitor":"v"}`); code != http.StatusOK {
		t.Fatalf("claim: %d", code)
	}
	if b := <-got; b.resp.State != ClaimClaimed || b.resp.Index <= a.resp.Index {
		t.Fatalf("after the claim: %+v", b.resp)
	}

	if code, resp := stateAt(t, s, "-1"); code != http.StatusBadRequest || resp.Error == "" {
		t.Fatalf("bad index: %d %+v", code, resp)
	}
}
