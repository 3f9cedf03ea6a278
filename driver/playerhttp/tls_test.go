package playerhttp

import (
	"bufio"
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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling/sigtest"
)

// testCA issues leaf certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pixelstream test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns PEM cert and key for 127.0.0.1 with the given common name.
func (ca *testCA) issue(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// writeAtomic replaces path as Nomad's template runner does (write, rename).
func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// lockedLog collects log output for assertions.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestCertReloaderRotatesWithoutDroppingConnections(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca := newTestCA(t)
	c1, k1 := ca.issue(t, "first")
	writeAtomic(t, certFile, c1)
	writeAtomic(t, keyFile, k1)

	logs := &lockedLog{}
	r, err := NewCertReloader(certFile, keyFile, hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	var clockMu sync.Mutex
	r.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	tick := func() { clockMu.Lock(); clock = clock.Add(certCheckInterval); clockMu.Unlock() }

	ln, err := tls.Listen("tcp", "127.0.0.1:0", r.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }),
		ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	dial := func() *tls.Conn {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
			&tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return c
	}
	served := func(c *tls.Conn) string { return c.ConnectionState().PeerCertificates[0].Subject.CommonName }
	get := func(c *tls.Conn) {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatalf("request on an open connection: %v", err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("response on an open connection: %v %v", resp, err)
		}
		_ = resp.Body.Close()
	}

	old := dial()
	defer old.Close()
	if got := served(old); got != "first" {
		t.Fatalf("served %q, want first", got)
	}
	get(old)

	// A renewal: new files, a new handshake gets them, the open connection goes on.
	c2, k2 := ca.issue(t, "second")
	writeAtomic(t, certFile, c2)
	writeAtomic(t, keyFile, k2)
	tick()
	if got := served(dial()); got != "second" {
		t.Fatalf("after rotation served %q, want second", got)
	}
	get(old)

	// Half a renewal (new cert, old key): the current certificate stays, and why is logged.
	c3, k3 := ca.issue(t, "third")
	writeAtomic(t, certFile, c3)
	tick()
	if got := served(dial()); got != "second" {
		t.Fatalf("with a mismatched pair served %q, want second kept", got)
	}
	if !strings.Contains(logs.String(), "do not load") {
		t.Fatalf("mismatched pair not logged: %s", logs.String())
	}
	// The key arrives: the pair loads.
	writeAtomic(t, keyFile, k3)
	tick()
	if got := served(dial()); got != "third" {
		t.Fatalf("after the key arrived served %q, want third", got)
	}
	// A file gone for a moment keeps the certificate.
	_ = os.Remove(keyFile)
	tick()
	if got := served(dial()); got != "third" {
		t.Fatalf("with the key file missing served %q, want third kept", got)
	}
	get(old)
}

func TestCertReloaderRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	c1, k1 := ca.issue(t, "a")
	_, k2 := ca.issue(t, "b")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		writeAtomic(t, p, b)
		return p
	}
	cases := []struct {
		name, cert, key, want string
	}{
		{"missing cert", filepath.Join(dir, "nope.pem"), write("k1", k1), "tls.cert_file"},
		{"missing key", write("c1", c1), filepath.Join(dir, "nope.pem"), "tls.key_file"},
		{"not pem", write("junk", []byte("hello")), write("k1b", k1), "not a PEM certificate"},
		{"key of another cert", write("c1b", c1), write("k2", k2), "not a PEM certificate and its private key"},
		{"empty", write("e1", nil), write("e2", nil), "not a PEM certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewCertReloader(c.cert, c.key, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v does not say %q", err, c.want)
			}
		})
	}
}

// TestPlayerPortTLS runs the server with a TLS player port: the page, the
// API and the player WebSocket answer over TLS only, and a player connected
// before a certificate rotation keeps exchanging messages after it.
func TestPlayerPortTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca := newTestCA(t)
	c1, k1 := ca.issue(t, "first")
	writeAtomic(t, certFile, c1)
	writeAtomic(t, keyFile, k1)
	r, err := NewCertReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	var clockMu sync.Mutex
	r.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	s := startServer(t, Config{TLS: r.TLSConfig()})
	addr := s.PlayerAddr().String()
	client := &http.Client{Timeout: waitFor, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}

	for _, path := range []string{"/", "/api/status", "/healthz"} {
		resp, err := client.Get("https://" + addr + path)
		if err != nil {
			t.Fatalf("https %s: %v", path, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("https %s: %s", path, resp.Status)
		}
	}
	// Plain HTTP on the TLS port gets no page.
	if resp, err := (&http.Client{Timeout: waitFor}).Get("http://" + addr + "/"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP on the TLS player port answered 200")
		}
	}
	// Plain ws:// is refused too.
	if ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil); err == nil {
		_ = ws.Close()
		t.Fatal("a plain WebSocket opened on the TLS player port")
	}

	wss := &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, HandshakeTimeout: waitFor}
	streamer := newStreamer(t, s, "tls-streamer")
	ws, _, err := wss.Dial("wss://"+addr+"/", nil)
	if err != nil {
		t.Fatalf("wss player: %v", err)
	}
	player := wrap(&sigtest.Peer{T: t, Name: "wss player", WS: ws})
	t.Cleanup(func() { _ = ws.Close() })
	player.recv() // config
	subscribe(t, player, streamer, "tls-streamer")

	c2, k2 := ca.issue(t, "second")
	writeAtomic(t, certFile, c2)
	writeAtomic(t, keyFile, k2)
	clockMu.Lock()
	clock = clock.Add(certCheckInterval)
	clockMu.Unlock()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "second" {
		t.Fatalf("after rotation a new connection got %q, want second", cn)
	}
	_ = conn.Close()
	// The player from before the rotation still talks to the streamer.
	player.send(`{"type":"iceCandidate","candidate":{"candidate":"candidate:1 1 udp 1 192.0.2.7 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}`)
	if got := streamer.recv(); !strings.Contains(got, "192.0.2.7") {
		t.Fatalf("streamer got %s, want the player's candidate after the rotation", got)
	}
}

// TestCertReloaderOneFile loads certificate and key from one file (one
// template rendering both, so that a renewal replaces them together).
func TestCertReloaderOneFile(t *testing.T) {
	ca := newTestCA(t)
	c, k := ca.issue(t, "combined")
	f := filepath.Join(t.TempDir(), "tls.pem")
	writeAtomic(t, f, append(append([]byte{}, c...), k...))
	r, err := NewCertReloader(f, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cn := r.Certificate().Leaf.Subject.CommonName; cn != "combined" {
		t.Fatalf("loaded %q", cn)
	}
}
