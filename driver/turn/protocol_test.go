package turn

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// authedRequest sends a TURN request the way a client does: first without
// credentials to learn the nonce, then signed.
func authedRequest(t *testing.T, c *client, ice ICEServer, method stun.Method, extra ...stun.Setter) *stun.Message {
	t.Helper()
	first := stun.MustBuild(stun.TransactionID, stun.NewType(method, stun.ClassRequest))
	res, err := c.PerformTransaction(first, c.TURNServerAddr(), false)
	if err != nil {
		t.Fatalf("unauthenticated %v: %v", method, err)
	}
	var nonce stun.Nonce
	if err := nonce.GetFrom(res.Msg); err != nil {
		t.Fatalf("%v: no nonce in %v", method, res.Msg)
	}
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, extra...)
	setters = append(setters, stun.NewUsername(ice.Username), stun.NewRealm(DefaultRealm), nonce,
		stun.NewLongTermIntegrity(ice.Username, DefaultRealm, ice.Credential))
	res, err = c.PerformTransaction(stun.MustBuild(setters...), c.TURNServerAddr(), false)
	if err != nil {
		t.Fatalf("%v: %v", method, err)
	}
	return res.Msg
}

func errorCode(m *stun.Message) int {
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(m); err != nil {
		return 0
	}
	return int(code.Code)
}

func TestRefreshOfUnknownAllocationAnswered437(t *testing.T) {
	s, reg := testServer(t, nil)
	ice := s.Credentials("p1")
	c := newClient(t, s, "udp", ice)
	relay, err := c.allocate(t)
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if res := authedRequest(t, c, ice, stun.MethodRefresh, rawLifetime(600)); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Refresh of a live allocation: %v (code %d)", res.Type, errorCode(res))
	}
	relay.Close() // deallocates (Refresh with lifetime 0)
	eventually(t, "the allocation to be gone", func() bool { return metric(t, reg, "pixelstream_turn_allocations", nil) == 0 })
	res := authedRequest(t, c, ice, stun.MethodRefresh, rawLifetime(600))
	if res.Type.Class != stun.ClassErrorResponse || errorCode(res) != 437 {
		t.Fatalf("Refresh without an allocation: %v (code %d), want 437", res.Type, errorCode(res))
	}
	if err := stun.MessageIntegrity(turn.GenerateAuthKey(ice.Username, DefaultRealm, ice.Credential)).Check(res); err != nil {
		t.Errorf("437 response integrity: %v", err)
	}
}

func rawLifetime(sec uint32) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: binary.BigEndian.AppendUint32(nil, sec)}
}

// xorPeerIPv6 builds an XOR-PEER-ADDRESS with the IPv6 family for any 16
// bytes, which pion's encoder would turn into IPv4 for a mapped address.
type xorPeerIPv6 struct {
	ip   [16]byte
	port uint16
}

func (x xorPeerIPv6) AddTo(m *stun.Message) error {
	v := make([]byte, 20)
	v[1] = 0x02
	binary.BigEndian.PutUint16(v[2:4], x.port^uint16(magicCookie>>16))
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], magicCookie)
	copy(key[4:], m.TransactionID[:])
	for i := range 16 {
		v[4+i] = x.ip[i] ^ key[i]
	}
	m.Add(stun.AttrXORPeerAddress, v)
	return nil
}

func TestMappedIPv6PeersRefused(t *testing.T) {
	for _, peer := range []string{"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0"} {
		t.Run(peer, func(t *testing.T) {
			s, reg := testServer(t, func(c *Config) {
				// Even a catch-all does not open these.
				c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
			})
			ice := s.Credentials("p1")
			c := newClient(t, s, "udp", ice)
			if _, err := c.allocate(t); err != nil {
				t.Fatalf("allocate: %v", err)
			}
			x := xorPeerIPv6{ip: netip.MustParseAddr(peer).As16(), port: 80}
			for _, m := range []struct {
				method stun.Method
				extra  []stun.Setter
			}{
				{stun.MethodCreatePermission, []stun.Setter{x}},
				{stun.MethodChannelBind, []stun.Setter{stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{0x40, 0x01, 0, 0}}, x}},
			} {
				res := authedRequest(t, c, ice, m.method, m.extra...)
				if res.Type.Class != stun.ClassErrorResponse {
					t.Errorf("%v to %s succeeded; want it refused", m.method, peer)
				}
			}
			if got := metric(t, reg, "pixelstream_turn_denied_peers_total", nil); got != 2 {
				t.Errorf("denied_peers_total = %v, want 2", got)
			}
		})
	}
}

func TestTLSOnTheTCPPort(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	s, _ := testServer(t, func(c *Config) { c.CertFile, c.KeyFile = certFile, keyFile })
	ice := s.Credentials("p1")
	if !strings.HasPrefix(ice.URLs[len(ice.URLs)-1], "turns:") {
		t.Errorf("URLs %v lack turns:", ice.URLs)
	}
	conn, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test cert
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	c := newClientOn(t, s, turn.NewSTUNConn(conn), ice)
	if _, err := c.allocate(t); err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
	// Plain TCP on the same port still works.
	if _, err := newClient(t, s, "tcp", s.Credentials("p2")).allocate(t); err != nil {
		t.Fatalf("allocate over plain TCP: %v", err)
	}
}

func writeSelfSigned(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// syncBuffer is written by the server goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func TestStandalone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--realm", DefaultRealm, "--secret", "standalone-secret-0123456789",
			"--allow-peer", "127.0.0.1", "--allow-peer", "10.0.0.0/8", "--log-level", "warn"}, &out, io.Discard)
	}()
	eventually(t, "the listening line", func() bool { return strings.Contains(out.String(), "listening on udp 127.0.0.1:") })
	// Credentials minted outside with the shared secret work.
	line := out.String()
	addr := strings.Fields(line[strings.Index(line, "udp ")+4:])[0]
	s := &Server{udpAddr: netip.MustParseAddrPort(addr)}
	u := "4102444800:ext" // 2100-01-01
	c := newClientOn(t, s, mustListen(t), ICEServer{Username: u, Credential: restPassword([]byte("standalone-secret-0123456789"), u)})
	relay, err := c.allocate(t)
	if err != nil {
		t.Fatalf("allocate against the standalone server: %v", err)
	}
	roundTrip(t, relay, newEchoPeer(t, netip.MustParseAddr("127.0.0.1"), true).addr, "allowed by --allow-peer")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("standalone server did not stop on cancel")
	}
	if !strings.Contains(out.String(), "shutting down") {
		t.Errorf("output %q lacks the shutdown line", out.String())
	}
}

func mustListen(t *testing.T) net.PacketConn {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStandaloneBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--secret", "x"}, "--listen and --secret are required"},
		{[]string{"--listen", "127.0.0.1:0", "--secret", "0123456789abcdef", "--allow-peer", "nonsense"}, "not IP, IP:PORT"},
		{[]string{"--listen", "127.0.0.1:0", "--secret", "0123456789abcdef", "--relay-ports", "5-"}, "--relay-ports"},
		{[]string{"--listen", "localhost:3478", "--secret", "0123456789abcdef"}, "Listen"},
		{[]string{"--listen", "127.0.0.1:0", "--secret", "short"}, "Secret"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stderr syncBuffer
			code := run(context.Background(), tc.args, io.Discard, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
			if strings.Contains(stderr.String(), "0123456789abcdef") {
				t.Error("the secret was printed")
			}
		})
	}
}

const magicCookie = 0x2112A442
