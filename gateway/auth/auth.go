// Package auth decides which visitors may get a session (none, a static
// token, or a signed JWT whose subject follows the visitor to the session's
// events), and signs the binding cookie that ties a visitor's browser to
// its session, so any gateway replica can route the visitor without
// shared state. Tokens are parsed by github.com/golang-jwt/jwt/v5.
package auth

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pixelstream/nomad-driver-pixelstream/gateway/config"
)

// maxCredential bounds a presented credential; anything longer is refused
// before parsing.
const maxCredential = 8 << 10

// maxSubject bounds the subject the gateway passes on to sessions.
const maxSubject = 256

// Visitor authenticates visitors.
type Visitor struct {
	cfg    config.AuthConfig
	hsKey  []byte
	rsaKey *rsa.PublicKey
	token  [32]byte
}

// NewVisitor builds the authenticator the config describes.
func NewVisitor(cfg config.AuthConfig) (*Visitor, error) {
	v := &Visitor{cfg: cfg}
	switch cfg.Mode {
	case config.AuthToken:
		v.token = sha256.Sum256([]byte(cfg.Token))
	case config.AuthJWT:
		switch cfg.Algorithm {
		case "HS256":
			v.hsKey = []byte(cfg.HMACKey)
		case "RS256":
			pem, err := os.ReadFile(cfg.PublicKeyFile)
			if err != nil {
				return nil, fmt.Errorf("auth.public_key_file: %w", err)
			}
			k, err := jwt.ParseRSAPublicKeyFromPEM(pem)
			if err != nil {
				return nil, fmt.Errorf("auth.public_key_file %s: not an RSA public key in PEM: %w", cfg.PublicKeyFile, err)
			}
			v.rsaKey = k
		}
	}
	return v, nil
}

// ErrUnauthorized is a visitor without a valid credential.
var ErrUnauthorized = errors.New("unauthorized")

// Authenticate checks r's credential and returns the visitor's subject
// ("" for modes without one). fromQuery says the credential came in the
// URL, so the caller should move it into a cookie.
func (v *Visitor) Authenticate(r *http.Request) (subject string, fromQuery bool, err error) {
	if v.cfg.Mode == config.AuthNone {
		return "", false, nil
	}
	cred, fromQuery := v.credential(r)
	if cred == "" {
		return "", false, fmt.Errorf("%w: no credential (?%s=, the %s cookie, or Authorization: Bearer)", ErrUnauthorized, v.cfg.Query, v.cfg.Cookie)
	}
	if len(cred) > maxCredential {
		return "", false, fmt.Errorf("%w: credential longer than %d bytes", ErrUnauthorized, maxCredential)
	}
	switch v.cfg.Mode {
	case config.AuthToken:
		have := sha256.Sum256([]byte(cred))
		if subtle.ConstantTimeCompare(have[:], v.token[:]) != 1 {
			return "", false, fmt.Errorf("%w: wrong token", ErrUnauthorized)
		}
		return "", fromQuery, nil
	case config.AuthJWT:
		sub, err := v.parseJWT(cred)
		if err != nil {
			return "", false, fmt.Errorf("%w: %v", ErrUnauthorized, err)
		}
		return sub, fromQuery, nil
	}
	return "", false, fmt.Errorf("%w: auth mode %q", ErrUnauthorized, v.cfg.Mode)
}

// Credential cookie: where Authenticate finds a credential that came in
// the query the next time.
func (v *Visitor) Cookie(value string, secure bool) *http.Cookie {
	return &http.Cookie{Name: v.cfg.Cookie, Value: value, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: secure}
}

// QueryValue is the credential in r's query, if any.
func (v *Visitor) QueryValue(r *http.Request) string { return r.URL.Query().Get(v.cfg.Query) }

func (v *Visitor) credential(r *http.Request) (string, bool) {
	if q := r.URL.Query().Get(v.cfg.Query); q != "" {
		return q, true
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), false
	}
	if c, err := r.Cookie(v.cfg.Cookie); err == nil {
		return c.Value, false
	}
	return "", false
}

func (v *Visitor) parseJWT(tok string) (string, error) {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{v.cfg.Algorithm}),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(30 * time.Second),
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(tok, &claims, func(t *jwt.Token) (any, error) {
		if v.rsaKey != nil {
			return v.rsaKey, nil
		}
		return v.hsKey, nil
	}, opts...)
	if err != nil {
		return "", err
	}
	if claims.Subject == "" {
		return "", errors.New("token has no subject (sub)")
	}
	if len(claims.Subject) > maxSubject || strings.IndexFunc(claims.Subject, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return "", fmt.Errorf("subject must be at most %d printable characters", maxSubject)
	}
	return claims.Subject, nil
}

// Binding ties a visitor's browser to its session: signed by the gateway
// secret (every replica has it), so a replica that never saw the claim can
// route the visitor, and a visitor cannot point the proxy elsewhere.
type Binding struct {
	AllocID string `json:"alloc"`
	Addr    string `json:"addr"`
	Token   string `json:"tok"`
	Visitor string `json:"vis"`
	jwt.RegisteredClaims
}

// Signer signs and checks bindings.
type Signer struct{ key []byte }

// NewSigner derives the binding key from the gateway secret, so the
// secret itself never signs anything a browser holds.
func NewSigner(secret string) *Signer {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("pixelstream gateway binding v1"))
	return &Signer{key: mac.Sum(nil)}
}

// bindingIssuer marks the gateway's own tokens.
const bindingIssuer = "pixelstream-gateway"

// Sign returns b as a compact HS256 token valid for ttl.
func (s *Signer) Sign(b Binding, ttl time.Duration) (string, error) {
	now := time.Now()
	b.RegisteredClaims = jwt.RegisteredClaims{Issuer: bindingIssuer, IssuedAt: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl))}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, b).SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign binding: %w", err)
	}
	return tok, nil
}

// Verify checks a binding token and returns it.
func (s *Signer) Verify(tok string) (*Binding, error) {
	if len(tok) > maxCredential {
		return nil, errors.New("binding too long")
	}
	var b Binding
	_, err := jwt.ParseWithClaims(tok, &b, func(*jwt.Token) (any, error) { return s.key, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(bindingIssuer), jwt.WithExpirationRequired())
	if err != nil {
		return nil, fmt.Errorf("binding: %w", err)
	}
	return &b, nil
}
