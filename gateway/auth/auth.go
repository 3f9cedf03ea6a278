// Package auth decides which visitors may get a session (none, a static
// token, or a signed JWT whose subject follows the visitor to the session's
// events), signs visitor ids, and seals the binding cookie that ties a
// visitor's browser to its session, so any gateway replica can route the
// visitor without shared state. Tokens are parsed by github.com/golang-jwt/jwt/v5.
package auth

import (
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

// Identity is an authenticated visitor.
type Identity struct {
	Subject string // "" for modes without one
	// Expires is when the credential stops being valid (a JWT's exp); zero
	// when it does not expire. A binding never outlives it.
	Expires time.Time
	// FromQuery says the credential came in the URL, so the caller should
	// move it into a cookie.
	FromQuery bool
}

// Authenticate checks r's credential and returns the visitor's subject
// ("" for modes without one) and whether the credential came in the URL.
func (v *Visitor) Authenticate(r *http.Request) (subject string, fromQuery bool, err error) {
	id, err := v.Identify(r)
	return id.Subject, id.FromQuery, err
}

// Identify checks r's credential and returns who it names.
func (v *Visitor) Identify(r *http.Request) (Identity, error) {
	if v.cfg.Mode == config.AuthNone {
		return Identity{}, nil
	}
	cred, fromQuery := v.credential(r)
	if cred == "" {
		return Identity{}, fmt.Errorf("%w: no credential (?%s=, the %s cookie, or Authorization: Bearer)", ErrUnauthorized, v.cfg.Query, v.cfg.Cookie)
	}
	if len(cred) > maxCredential {
		return Identity{}, fmt.Errorf("%w: credential longer than %d bytes", ErrUnauthorized, maxCredential)
	}
	switch v.cfg.Mode {
	case config.AuthToken:
		have := sha256.Sum256([]byte(cred))
		if subtle.ConstantTimeCompare(have[:], v.token[:]) != 1 {
			return Identity{}, fmt.Errorf("%w: wrong token", ErrUnauthorized)
		}
		return Identity{FromQuery: fromQuery}, nil
	case config.AuthJWT:
		sub, exp, err := v.parseJWT(cred)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: %v", ErrUnauthorized, err)
		}
		return Identity{Subject: sub, Expires: exp, FromQuery: fromQuery}, nil
	}
	return Identity{}, fmt.Errorf("%w: auth mode %q", ErrUnauthorized, v.cfg.Mode)
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
	if t, ok := Bearer(r); ok {
		return t, false
	}
	if c, err := r.Cookie(v.cfg.Cookie); err == nil {
		return c.Value, false
	}
	return "", false
}

// Bearer is the credential of an "Authorization: Bearer" header: the one
// place the gateway parses that header.
func Bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

func (v *Visitor) parseJWT(tok string) (string, time.Time, error) {
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
		return "", time.Time{}, err
	}
	if claims.Subject == "" {
		return "", time.Time{}, errors.New("token has no subject (sub)")
	}
	if len(claims.Subject) > maxSubject || strings.IndexFunc(claims.Subject, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return "", time.Time{}, fmt.Errorf("subject must be at most %d printable characters", maxSubject)
	}
	return claims.Subject, claims.ExpiresAt.Time, nil
}
