// Package claim is the wire contract between a gateway and a pool session:
// the route, the states, the request and response bodies, the per-session
// key and the request and response authentication. Both sides import it
// (gateway/pool and driver/signalling), so the contract has one home.
//
// The fleet secret never crosses the network. Each session has its own key,
// SessionKey(secret, allocation id): the session derives it from the secret
// it is given and keeps only the key, the gateway derives it for the
// allocation it talks to. A request carries a timestamp, a nonce and an
// HMAC over them, the method, the path and the body; the session refuses
// a stale timestamp or a nonce it has seen, so a captured exchange
// replayed later fails. The session signs its answer over the request's
// nonce, so the gateway knows the answer came from the holder of the key.
package claim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/pixelstream/nomad-driver-pixelstream/quality"
)

// Path is the session's claim route: GET reads the state, POST claims.
const Path = "/api/claim"

// State is where a pool session is in its life with a gateway.
type State string

// The claim states a session reports.
const (
	Free    State = "free"    // ready for the next visitor
	Claimed State = "claimed" // reserved; waiting for its visitor's player
	Busy    State = "busy"    // its visitor's player has connected
)

// Limits of the contract.
const (
	// BodyLimit bounds a claim request's body: two short strings.
	BodyLimit = 4 << 10
	// ResponseLimit bounds what a gateway reads of a session's answer.
	ResponseLimit = 64 << 10
	// FieldMax bounds the visitor id and subject a claim may carry; they
	// end up in task events.
	FieldMax = 256
	// Skew is how far a request's timestamp may be from the session's
	// clock; a request older than that is refused whatever its nonce.
	Skew = 30 * time.Second
)

// Request is the body of POST Path. The gateway names the visitor, the
// visitor's JWT subject and the visitor's network address; visitor and
// address are pseudonyms (the session shows them in task events, the
// gateway counts claims by them), the subject is the identity provider's.
type Request struct {
	Visitor string `json:"visitor"`
	Subject string `json:"subject"`
	Address string `json:"address,omitempty"`
}

// Response answers GET and POST Path. A claimed or busy session names its
// claim: the player token is PlayerToken(key, Claim), which only the
// session and the gateway (that hold the key) can compute, so any replica
// can route a visitor back to its session from the claim id alone.
type Response struct {
	State      State   `json:"state"`
	Ready      bool    `json:"ready"`
	Claim      string  `json:"claim,omitempty"`
	ExpiresInS float64 `json:"expires_in_s,omitempty"`
	Visitor    string  `json:"visitor,omitempty"`
	Subject    string  `json:"subject,omitempty"`
	Address    string  `json:"address,omitempty"`
	Error      string  `json:"error,omitempty"`
	// Quality sums the session's players' latest stream quality reports
	// (GET only): the gateway aggregates it per node.
	Quality *quality.Session `json:"quality,omitempty"`
	// Index counts the session's changes of state and readiness (GET
	// only). A GET with ?index= set to it is a blocking read: the answer
	// comes when the index moves on, or after MaxWait.
	Index uint64 `json:"index,omitempty"`
}

// MaxWait is how long a blocking GET waits for a change at most; the
// gateway's quality figures are never older than that.
const MaxWait = 10 * time.Second

// IndexParam is the query parameter of a blocking GET.
const IndexParam = "index"

// PlayerToken is the one-time player token of claim id on the session
// with key: what opens the claimed session's page and WebSocket.
func PlayerToken(key Key, claimID string) string {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte("pixelstream player token v1\x00"))
	m.Write([]byte(claimID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// DecodeRequest parses and checks a claim body; an empty body is a claim
// with no visitor named.
func DecodeRequest(body io.Reader) (Request, error) {
	var req Request
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, fmt.Errorf("claim body: larger than %d bytes", BodyLimit)
		}
		return req, fmt.Errorf(`claim body: want {"visitor":"...","subject":"..."}: %w`, err)
	}
	for _, f := range []struct{ name, v string }{{"visitor", req.Visitor}, {"subject", req.Subject}, {"address", req.Address}} {
		if len(f.v) > FieldMax {
			return req, fmt.Errorf("claim body: %s is %d bytes, at most %d", f.name, len(f.v), FieldMax)
		}
		if strings.IndexFunc(f.v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return req, fmt.Errorf("claim body: %s holds a control character; use printable text", f.name)
		}
	}
	return req, nil
}

// Key is one session's claim key.
type Key [32]byte

// SessionKey derives the key of the session in allocation allocID from the
// fleet secret: HMAC-SHA256(secret, label || allocID). A session that leaks
// its key (or a registration that receives requests signed with it) learns
// nothing of the secret or of any other session's key.
func SessionKey(secret, allocID string) Key {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("pixelstream claim key v1\x00"))
	m.Write([]byte(allocID))
	var k Key
	copy(k[:], m.Sum(nil))
	return k
}

// Scheme is the Authorization scheme of a claim request.
const Scheme = "PixelstreamClaim"

// ResponseHeader carries the session's signature of its answer.
const ResponseHeader = "X-Pixelstream-Claim-Signature"

// Authorize signs req (its method, path and body) with key at now and sets
// its Authorization header. It returns the nonce, which the answer's
// signature must name.
func Authorize(req *http.Request, key Key, body []byte, now time.Time) string {
	nonce := newNonce()
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := requestMAC(key, req.Method, req.URL.Path, ts, nonce, body)
	req.Header.Set("Authorization", Scheme+" ts="+ts+",nonce="+nonce+",mac="+mac)
	return nonce
}

func requestMAC(key Key, method, path, ts, nonce string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, key[:])
	fmt.Fprintf(m, "pixelstream claim request v1\n%s\n%s\n%s\n%s\n%s", method, path, ts, nonce, hex.EncodeToString(sum[:]))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func responseMAC(key Key, nonce string, status int, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, key[:])
	fmt.Fprintf(m, "pixelstream claim response v1\n%s\n%d\n%s", nonce, status, hex.EncodeToString(sum[:]))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// SignResponse sets the signature of an answer (status and body) to the
// request that carried nonce.
func SignResponse(h http.Header, key Key, nonce string, status int, body []byte) {
	h.Set(ResponseHeader, responseMAC(key, nonce, status, body))
}

// VerifyResponse checks the signature of an answer to the request that
// carried nonce.
func VerifyResponse(h http.Header, key Key, nonce string, status int, body []byte) error {
	got := h.Get(ResponseHeader)
	if got == "" {
		return errors.New("answer is not signed (" + ResponseHeader + " missing): not a pool session of this gateway")
	}
	if !hmac.Equal([]byte(got), []byte(responseMAC(key, nonce, status, body))) {
		return errors.New("answer's signature does not match this allocation's key: not the session the gateway meant")
	}
	return nil
}

// Signed is the parsed Authorization of a claim request.
type Signed struct {
	TS    int64
	Nonce string
	MAC   string
}

// maxNonce bounds a nonce's length (newNonce makes 22 characters).
const maxNonce = 64

// ParseAuthorization parses "PixelstreamClaim ts=..,nonce=..,mac=..".
func ParseAuthorization(h string) (Signed, error) {
	var s Signed
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, Scheme) {
		return s, fmt.Errorf("claim authorization: want %q with ts, nonce and mac", Scheme)
	}
	if len(rest) > 256 {
		return s, errors.New("claim authorization: longer than 256 bytes")
	}
	var haveTS bool
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch k {
		case "ts":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return s, fmt.Errorf("claim authorization: ts %q is not a Unix time", v)
			}
			s.TS, haveTS = n, true
		case "nonce":
			s.Nonce = v
		case "mac":
			s.MAC = v
		}
	}
	if !haveTS || s.Nonce == "" || len(s.Nonce) > maxNonce || s.MAC == "" {
		return s, errors.New("claim authorization: needs ts, nonce (at most 64 bytes) and mac")
	}
	return s, nil
}

// Check verifies a parsed Authorization against key for the request's
// method, path and body at now. It does not remember nonces: a Verifier
// does.
func (s Signed) Check(key Key, method, path string, body []byte, now time.Time) error {
	want := requestMAC(key, method, path, strconv.FormatInt(s.TS, 10), s.Nonce, body)
	if !hmac.Equal([]byte(s.MAC), []byte(want)) {
		return errors.New("claim signature does not match this session's key")
	}
	// Bounds around now, never arithmetic on the peer's number: no overflow.
	skew := int64(Skew / time.Second)
	if lo, hi := now.Unix()-skew, now.Unix()+skew; s.TS < lo || s.TS > hi {
		return fmt.Errorf("claim timestamp %d is more than %s from the session's clock (%d)", s.TS, Skew, now.Unix())
	}
	return nil
}

func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand does not fail on Linux (Go 1.24+ panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}
