package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
)

// testCA makes a CA (written to a PEM file) and a server certificate for
// 127.0.0.1 signed by it.
func testCA(t *testing.T) (caFile string, server *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "unit sessions CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "session"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile = filepath.Join(dir, "ca.pem")
	kder, _ := x509.MarshalECPrivateKey(key)
	for name, b := range map[string][]byte{
		"ca.pem":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestHostPrefixedCookiesUnderTLS: a gateway that serves visitors over TLS
// sets its cookies as __Host- (Secure, Path=/, no Domain), so a sibling
// subdomain cannot plant or overwrite them.
func TestHostPrefixedCookiesUnderTLS(t *testing.T) {
	caFile, _ := testCA(t)
	dir := filepath.Dir(caFile)
	s := session(t, false)
	base := startGateway(t, fakeNomad(t, s), 1, "-tls-cert-file", filepath.Join(dir, "cert.pem"), "-tls-key-file", filepath.Join(dir, "key.pem"))
	eventually(t, "free", func() bool { return free(t, base) == 1 })
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(b)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodGet, strings.Replace(base, "http://", "https://", 1)+"/", nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	names := map[string]bool{}
	for _, ck := range resp.Cookies() {
		names[ck.Name] = true
		if !strings.HasPrefix(ck.Name, "__Host-") || !ck.Secure || ck.Path != "/" || ck.Domain != "" {
			t.Fatalf("cookie %q under TLS: Secure %v Path %q Domain %q; want __Host-, Secure, Path=/", ck.Name, ck.Secure, ck.Path, ck.Domain)
		}
	}
	if !names["__Host-pixelstream_visitor"] || !names["__Host-pixelstream_session"] {
		t.Fatalf("cookies under TLS: %v; want __Host-pixelstream_visitor and __Host-pixelstream_session", names)
	}
}

// TestTLSSessions: sessions whose player port serves TLS (a task's tls
// block) are claimed, proxied (page and WebSocket) over HTTPS verified
// against session_tls.ca_file; redirect mode sends https URLs; a session
// whose certificate the CA did not sign is never used.
func TestTLSSessions(t *testing.T) {
	caFile, serverTLS := testCA(t)
	s := sessionWith(t, false, serverTLS)
	base := startGateway(t, fakeNomad(t, s), 1, "-session-ca-file", caFile)
	eventually(t, "the TLS session free", func() bool { return free(t, base) == 1 })
	v := newVisitor(t, base)
	if resp, body := v.navigate(); resp.StatusCode != http.StatusOK || strings.Contains(body, "Waiting") {
		t.Fatalf("visitor of a TLS session: HTTP %d", resp.StatusCode)
	}
	ws := v.player()
	defer ws.Close()
	eventually(t, "busy over TLS", func() bool { return s.Web.ClaimState() == playerhttp.ClaimBusy })

	// Redirect mode: the browser is sent to https://.
	s2 := sessionWith(t, false, serverTLS)
	rbase := startGateway(t, fakeNomad(t, s2), 1, "-session-ca-file", caFile, "-route", "redirect")
	eventually(t, "free", func() bool { return free(t, rbase) == 1 })
	rv := newVisitor(t, rbase)
	rv.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ := rv.navigate()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil || loc.Scheme != "https" || loc.Host != s2.PlayerAddr().String() {
		t.Fatalf("redirect to %q (HTTP %d), want https://%s", resp.Header.Get("Location"), resp.StatusCode, s2.PlayerAddr())
	}

	// Another CA: the gateway trusts no session and claims nothing.
	otherCA, _ := testCA(t)
	s3 := sessionWith(t, false, serverTLS)
	obase := startGateway(t, fakeNomad(t, s3), 1, "-session-ca-file", otherCA)
	eventually(t, "the gateway to know the session", func() bool { return len(sessionsOf(t, obase)) == 1 })
	if _, body := newVisitor(t, obase).navigate(); !strings.Contains(body, "Waiting for a session") || s3.Web.ClaimState() != playerhttp.ClaimFree {
		t.Fatalf("a session with a certificate of another CA was used (state %s)", s3.Web.ClaimState())
	}
}
