package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pixelstream/nomad-driver-pixelstream/gateway/config"
)

const hsKey = "0123456789abcdef0123456789abcdef-hs256"

func jwtCfg(alg string) config.AuthConfig {
	return config.AuthConfig{Mode: config.AuthJWT, Algorithm: alg, HMACKey: hsKey, Issuer: "https://id.example.com",
		Audience: "play.example.com", Cookie: "pixelstream_auth", Query: "auth"}
}

func claims(mod func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
	now := time.Now()
	c := jwt.RegisteredClaims{Issuer: "https://id.example.com", Audience: jwt.ClaimStrings{"play.example.com"},
		Subject: "alice", IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}
	if mod != nil {
		mod(&c)
	}
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.RegisteredClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func request(query, cookie, bearer string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if query != "" {
		r.URL.RawQuery = "auth=" + query
	}
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: "pixelstream_auth", Value: cookie})
	}
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	return r
}

func TestJWTHS256(t *testing.T) {
	v, err := NewVisitor(jwtCfg("HS256"))
	if err != nil {
		t.Fatal(err)
	}
	good := sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(nil))
	for _, tc := range []struct {
		name    string
		tok     string
		wantSub string
		wantErr string
	}{
		{"valid", good, "alice", ""},
		{"bad signature", sign(t, jwt.SigningMethodHS256, []byte("another key, 32 bytes or more...."), claims(nil)), "", "signature"},
		{"tampered", good[:len(good)-2] + "xx", "", "signature"},
		{"expired", sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		})), "", "expired"},
		{"no expiry", sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })), "", "exp"},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(func(c *jwt.RegisteredClaims) {
			c.Audience = jwt.ClaimStrings{"other.example.com"}
		})), "", "audience"},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(func(c *jwt.RegisteredClaims) { c.Issuer = "evil" })), "", "issuer"},
		{"no subject", sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(func(c *jwt.RegisteredClaims) { c.Subject = "" })), "", "subject"},
		{"control character in subject", sign(t, jwt.SigningMethodHS256, []byte(hsKey), claims(func(c *jwt.RegisteredClaims) { c.Subject = "a\nb" })), "", "printable"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), "", "signing method"},
		{"not a JWT", "hello", "", "malformed"},
		{"huge", strings.Repeat("a", maxCredential+1), "", "longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, _, err := v.Authenticate(request(tc.tok, "", ""))
			if tc.wantErr == "" {
				if err != nil || sub != tc.wantSub {
					t.Fatalf("got %q, %v; want %q", sub, err, tc.wantSub)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %q, %v; want an unauthorized error mentioning %q", sub, err, tc.wantErr)
			}
		})
	}
	// The same token from the cookie and the Authorization header.
	for _, r := range []*http.Request{request("", good, ""), request("", "", good)} {
		if sub, fromQuery, err := v.Authenticate(r); err != nil || sub != "alice" || fromQuery {
			t.Fatalf("cookie/bearer: %q %v %v", sub, fromQuery, err)
		}
	}
	if _, _, err := v.Authenticate(request("", "", "")); err == nil {
		t.Fatal("no credential was accepted")
	}
}

func TestJWTRS256RefusesHS256WithThePublicKey(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	path := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := jwtCfg("RS256")
	cfg.PublicKeyFile = path
	v, err := NewVisitor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sub, _, err := v.Authenticate(request(sign(t, jwt.SigningMethodRS256, key, claims(nil)), "", "")); err != nil || sub != "alice" {
		t.Fatalf("valid RS256: %q %v", sub, err)
	}
	// The classic confusion: an HS256 token keyed with the public key.
	if _, _, err := v.Authenticate(request(sign(t, jwt.SigningMethodHS256, pemBytes, claims(nil)), "", "")); err == nil {
		t.Fatal("an HS256 token signed with the RSA public key was accepted")
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, _, err := v.Authenticate(request(sign(t, jwt.SigningMethodRS256, other, claims(nil)), "", "")); err == nil {
		t.Fatal("an RS256 token of another key was accepted")
	}
}

func TestStaticToken(t *testing.T) {
	v, _ := NewVisitor(config.AuthConfig{Mode: config.AuthToken, Token: "visitor-token-0123456789", Cookie: "pixelstream_auth", Query: "auth"})
	if _, fromQuery, err := v.Authenticate(request("visitor-token-0123456789", "", "")); err != nil || !fromQuery {
		t.Fatalf("right token: %v %v", fromQuery, err)
	}
	if _, _, err := v.Authenticate(request("visitor-token-012345678X", "", "")); err == nil {
		t.Fatal("wrong token accepted")
	}
}

// TestBindingIsOpaqueAndSealed: the binding cookie decodes to nothing
// readable (no address, node, token or even the allocation id in clear),
// another secret cannot open it, a flipped byte or an expired one fails.
func TestBindingIsOpaqueAndSealed(t *testing.T) {
	k := NewKeys("gateway-secret-0123456789")
	now := time.Now()
	b := Binding{AllocID: "8f1c2b7e-alloc", Claim: "claim-id-xyz", Visitor: "visitor-id", Expires: now.Add(time.Minute).Unix()}
	v, err := k.Seal(b)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(v)
	for _, s := range []string{v, string(raw)} {
		for _, secret := range []string{"8f1c2b7e", "claim-id", "visitor-id", "alloc", "127.0.0.1", `"a"`} {
			if strings.Contains(s, secret) {
				t.Fatalf("binding cookie shows %q", secret)
			}
		}
	}
	got, err := k.Open(v, now)
	if err != nil || *got != b {
		t.Fatalf("open: %+v %v", got, err)
	}
	if _, err := NewKeys("another-secret-0123456789").Open(v, now); err == nil {
		t.Fatal("another secret opened the binding")
	}
	flipped := []byte(v)
	flipped[len(flipped)/2] ^= 1
	if _, err := k.Open(string(flipped), now); err == nil {
		t.Fatal("an altered binding opened")
	}
	if _, err := k.Open(v, now.Add(2*time.Minute)); err == nil {
		t.Fatal("an expired binding opened")
	}
}

func TestVisitorIDsAreSigned(t *testing.T) {
	k := NewKeys("gateway-secret-0123456789")
	id, cookie := k.MintVisitor()
	if got, ok := k.Visitor(cookie); !ok || got != id {
		t.Fatalf("minted id %q not accepted: %q %v", id, got, ok)
	}
	_, other := NewKeys("another-secret-0123456789").MintVisitor()
	for _, bad := range []string{"", id, id + ".", "AAAAAAAAAAAAAAAAAAAAAA", id + "." + strings.Repeat("A", 22), other} {
		if _, ok := k.Visitor(bad); ok {
			t.Fatalf("self-minted id %q accepted", bad)
		}
	}
	p := k.Pseudonym("v", id)
	if strings.Contains(p, id) || p != NewKeys("gateway-secret-0123456789").Pseudonym("v", id) || p == k.Pseudonym("v", id+"x") {
		t.Fatal("pseudonyms must hide the id, be the same at every replica, and differ per id")
	}
}
