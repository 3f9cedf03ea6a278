package claim

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSessionKeysDiffer(t *testing.T) {
	a, b := SessionKey("secret-0123456789", "alloc-a"), SessionKey("secret-0123456789", "alloc-b")
	if a == b || a != SessionKey("secret-0123456789", "alloc-a") || a == SessionKey("other-secret-0123", "alloc-a") {
		t.Fatal("session keys must be per allocation and per secret, and stable")
	}
}

func signed(t *testing.T, key Key, method, body string, at time.Time) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, Path, strings.NewReader(body))
	Authorize(r, key, []byte(body), at)
	return r
}

func TestVerifier(t *testing.T) {
	key := SessionKey("secret-0123456789", "alloc-a")
	now := time.Unix(1_800_000_000, 0)
	v := NewVerifier(key)
	v.SetClock(func() time.Time { return now })
	ok := signed(t, key, http.MethodPost, `{"visitor":"v"}`, now)
	if _, _, err := v.Verify(httptest.NewRecorder(), ok); err != nil {
		t.Fatalf("a fresh, signed request: %v", err)
	}
	again := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(`{"visitor":"v"}`))
	again.Header.Set("Authorization", ok.Header.Get("Authorization"))
	for _, tc := range []struct {
		name string
		r    *http.Request
	}{
		{"replay", again},
		{"stale", signed(t, key, http.MethodPost, `{}`, now.Add(-Skew-time.Second))},
		{"from the future", signed(t, key, http.MethodPost, `{}`, now.Add(Skew+time.Second))},
		{"another allocation", signed(t, SessionKey("secret-0123456789", "alloc-b"), http.MethodPost, `{}`, now)},
		{"method changed", func() *http.Request {
			r := signed(t, key, http.MethodGet, ``, now)
			r.Method = http.MethodPost
			return r
		}()},
		{"no header", httptest.NewRequest(http.MethodGet, Path, nil)},
	} {
		if _, _, err := v.Verify(httptest.NewRecorder(), tc.r); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestResponseSignature(t *testing.T) {
	key := SessionKey("secret-0123456789", "alloc-a")
	h := http.Header{}
	SignResponse(h, key, "n1", 200, []byte(`{"state":"free"}`))
	if err := VerifyResponse(h, key, "n1", 200, []byte(`{"state":"free"}`)); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"other nonce":  VerifyResponse(h, key, "n2", 200, []byte(`{"state":"free"}`)),
		"other status": VerifyResponse(h, key, "n1", 409, []byte(`{"state":"free"}`)),
		"other body":   VerifyResponse(h, key, "n1", 200, []byte(`{"state":"busy"}`)),
		"other key":    VerifyResponse(h, SessionKey("secret-0123456789", "alloc-b"), "n1", 200, []byte(`{"state":"free"}`)),
		"unsigned":     VerifyResponse(http.Header{}, key, "n1", 200, []byte(`{"state":"free"}`)),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzParseAuthorization: the claim Authorization header is parsed here,
// so any bytes must give a value or an error, and a parsed timestamp at
// the ends of int64 must not overflow the freshness check.
func FuzzParseAuthorization(f *testing.F) {
	for _, ts := range []string{"0", "-1", strconv.FormatInt(math.MaxInt64, 10), strconv.FormatInt(math.MinInt64, 10),
		"9223372036854775808", "18446744073709551615", ""} {
		f.Add(Scheme + " ts=" + ts + ",nonce=n,mac=m")
	}
	f.Add("")
	f.Add(Scheme)
	f.Add(Scheme + " " + strings.Repeat(",", 300))
	f.Add("Bearer x")
	key := SessionKey("secret-0123456789", "alloc-a")
	f.Fuzz(func(t *testing.T, h string) {
		s, err := ParseAuthorization(h)
		if err != nil {
			return
		}
		if s.Nonce == "" || len(s.Nonce) > maxNonce || s.MAC == "" {
			t.Fatalf("parsed %q into %+v", h, s)
		}
		_ = s.Check(key, http.MethodGet, Path, nil, time.Now())
	})
}

// BenchmarkExchange is what the contract adds to one claim call, both
// sides together: sign the request, verify it (nonce remembered), sign
// the answer, verify the answer.
func BenchmarkExchange(b *testing.B) {
	key := SessionKey("secret-0123456789", "alloc-a")
	v := NewVerifier(key)
	body := []byte(`{"visitor":"v-benchmark000","subject":"alice","address":"a-benchmark000"}`)
	answer := []byte(`{"state":"claimed","ready":true,"claim":"c"}`)
	for i := 0; i < b.N; i++ {
		r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		nonce := Authorize(r, key, body, time.Now())
		if _, got, err := v.Verify(httptest.NewRecorder(), r); err != nil || got != nonce {
			b.Fatal(err)
		}
		h := http.Header{}
		SignResponse(h, key, nonce, 200, answer)
		if err := VerifyResponse(h, key, nonce, 200, answer); err != nil {
			b.Fatal(err)
		}
		if i%MaxNonces == MaxNonces-1 {
			v = NewVerifier(key) // a real session sees far fewer calls within 2*Skew
		}
	}
}
