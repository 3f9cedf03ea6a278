package claim

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// MaxNonces bounds the nonces a Verifier remembers. Only requests with a
// valid signature add one, and each is forgotten after 2*Skew, so a
// gateway would need hundreds of claim calls a second to reach it; past
// it requests are refused (the gateway retries), never remembered less.
const MaxNonces = 8192

// ErrReplay is a request whose nonce the session has already seen.
var ErrReplay = errors.New("claim nonce already used: a replayed request")

// Verifier checks claim requests for one session and remembers their
// nonces for as long as their timestamps are acceptable, which is what
// makes a replay fail.
type Verifier struct {
	key Key
	now func() time.Time

	mu   sync.Mutex
	seen map[string]int64 // nonce -> timestamp
}

// NewVerifier checks requests signed with key.
func NewVerifier(key Key) *Verifier {
	return &Verifier{key: key, now: time.Now, seen: map[string]int64{}}
}

// SetClock replaces the verifier's clock (tests).
func (v *Verifier) SetClock(now func() time.Time) { v.now = now }

// Key is the session's key, for signing answers.
func (v *Verifier) Key() Key { return v.key }

// Verify checks r's Authorization against its method, path and body and
// records its nonce. It reads the body (at most BodyLimit bytes) and
// returns it with the nonce the answer must be signed over.
func (v *Verifier) Verify(w http.ResponseWriter, r *http.Request) (body []byte, nonce string, err error) {
	s, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, "", err
	}
	if r.Body != nil {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, BodyLimit))
		if err != nil {
			return nil, "", fmt.Errorf("claim body: %w", err)
		}
	}
	now := v.now()
	if err := s.Check(v.key, r.Method, r.URL.Path, body, now); err != nil {
		return nil, "", err
	}
	if err := v.remember(s, now); err != nil {
		return nil, "", err
	}
	return body, s.Nonce, nil
}

func (v *Verifier) remember(s Signed, now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.seen[s.Nonce]; ok {
		return ErrReplay
	}
	if len(v.seen) >= MaxNonces {
		// Forget what can no longer pass Check (its timestamp is stale).
		oldest := now.Unix() - int64(Skew/time.Second)
		for n, ts := range v.seen {
			if ts < oldest {
				delete(v.seen, n)
			}
		}
		if len(v.seen) >= MaxNonces {
			return fmt.Errorf("more than %d claim requests within %s; retry", MaxNonces, 2*Skew)
		}
	}
	v.seen[s.Nonce] = s.TS
	return nil
}
