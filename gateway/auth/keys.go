package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Keys are the gateway's own keys, each derived from the fleet secret for
// one purpose (every replica derives the same ones), so the secret itself
// never signs or encrypts anything a browser holds.
type Keys struct {
	visitor [32]byte // signs visitor ids
	hash    [32]byte // pseudonyms of visitor ids and addresses in logs and at sessions
	binding cipher.AEAD
}

// NewKeys derives the keys from the fleet secret.
func NewKeys(secret string) *Keys {
	k := &Keys{visitor: derive(secret, "visitor id v1"), hash: derive(secret, "pseudonym v1")}
	bk := derive(secret, "binding aes-gcm v1")
	block, err := aes.NewCipher(bk[:])
	if err != nil {
		panic(fmt.Sprintf("aes: %v", err)) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(fmt.Sprintf("gcm: %v", err))
	}
	k.binding = aead
	return k
}

func derive(secret, label string) [32]byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("pixelstream gateway " + label))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

func mac(key [32]byte, s string) string {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(s))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// idLen is the length of a visitor id: 16 random bytes, base64url.
const idLen = 22

// MintVisitor returns a fresh visitor id and the cookie value that carries
// it: "id.signature".
func (k *Keys) MintVisitor() (id, cookie string) {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand does not fail on Linux (Go 1.24+ panics instead)
	id = base64.RawURLEncoding.EncodeToString(b)
	return id, id + "." + mac(k.visitor, id)[:idLen]
}

// Visitor returns the id a cookie value carries when the gateway signed it;
// a self-minted or altered value is not an id.
func (k *Keys) Visitor(cookie string) (string, bool) {
	id, sig, ok := strings.Cut(cookie, ".")
	if !ok || len(id) != idLen || len(sig) != idLen {
		return "", false
	}
	if !hmac.Equal([]byte(sig), []byte(mac(k.visitor, id)[:idLen])) {
		return "", false
	}
	return id, true
}

// Pseudonym is what logs, task events and sessions see of a visitor id or
// a client address: stable (one visitor, one pseudonym, across replicas)
// and not reversible without the secret.
func (k *Keys) Pseudonym(kind, v string) string {
	return kind + "-" + mac(k.hash, kind+"\x00"+v)[:12]
}

// Binding ties a visitor's browser to its session. In the cookie it is
// sealed (AES-GCM): the visitor sees an opaque string, and a session's
// address, node or player token is not in it at all; the gateway finds the
// address by allocation id and derives the token from the claim id.
type Binding struct {
	AllocID string `json:"a"`
	Claim   string `json:"c"`
	Visitor string `json:"v"`
	Expires int64  `json:"e"` // Unix seconds
}

// maxBinding bounds a presented binding before it is decoded.
const maxBinding = 1 << 10

// Seal returns b encrypted and authenticated, as a cookie value.
func (k *Keys) Seal(b Binding) (string, error) {
	plain, err := json.Marshal(b)
	if err != nil {
		return "", fmt.Errorf("seal binding: %w", err)
	}
	nonce := make([]byte, k.binding.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(k.binding.Seal(nonce, nonce, plain, []byte("binding"))), nil
}

// Open returns the binding a cookie value seals, if the gateway sealed it
// and it has not expired at now.
func (k *Keys) Open(v string, now time.Time) (*Binding, error) {
	if len(v) > maxBinding {
		return nil, errors.New("binding: too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(raw) < k.binding.NonceSize() {
		return nil, errors.New("binding: not a sealed binding")
	}
	plain, err := k.binding.Open(nil, raw[:k.binding.NonceSize()], raw[k.binding.NonceSize():], []byte("binding"))
	if err != nil {
		return nil, errors.New("binding: not sealed by this gateway's secret")
	}
	var b Binding
	if err := json.Unmarshal(plain, &b); err != nil {
		return nil, fmt.Errorf("binding: %w", err)
	}
	if now.Unix() >= b.Expires {
		return nil, errors.New("binding: expired")
	}
	return &b, nil
}
