package turn

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testServer starts a server on loopback with a private registry.
func testServer(t *testing.T, mutate func(*Config)) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Listen:   "127.0.0.1:0",
		Registry: reg,
		Logger:   hclog.New(&hclog.LoggerOptions{Name: "turn-test", Level: hclog.Warn, Output: testWriter{t}}),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, reg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// hostIP is a non-loopback IPv4 address of this machine: peers must be on
// one, since the policy refuses loopback peers.
func hostIP(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("interface addresses: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				ip = ip.Unmap()
				if ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
					return ip
				}
			}
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine; relay tests need one for the peer")
	return netip.Addr{}
}

// echoPeer is a real UDP socket that sends every datagram back.
type echoPeer struct {
	conn *net.UDPConn
	addr netip.AddrPort
}

func newEchoPeer(t *testing.T, ip netip.Addr, echo bool) *echoPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatalf("peer socket: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	p := &echoPeer{conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	if echo {
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				_, _ = c.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
	}
	return p
}

func (p *echoPeer) candidate() string {
	return "candidate:1 1 udp 2122260223 " + p.addr.Addr().String() + " " +
		itoa(int(p.addr.Port())) + " typ host generation 0"
}

func itoa(i int) string { return strconv.Itoa(i) }

// client is a pion TURN client over UDP or TCP (optionally TLS-wrapped conn).
type client struct {
	*turn.Client
	conn net.PacketConn
}

func newClient(t *testing.T, s *Server, transport string, ice ICEServer) *client {
	t.Helper()
	var conn net.PacketConn
	switch transport {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("client socket: %v", err)
		}
		conn = c
	case "tcp":
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatalf("client tcp: %v", err)
		}
		conn = turn.NewSTUNConn(c)
	default:
		t.Fatalf("transport %q", transport)
	}
	return newClientOn(t, s, conn, ice)
}

func newClientOn(t *testing.T, s *Server, conn net.PacketConn, ice ICEServer) *client {
	t.Helper()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: s.Addr().String(),
		TURNServerAddr: s.Addr().String(),
		Username:       ice.Username,
		Password:       ice.Credential,
		Realm:          DefaultRealm,
		Conn:           conn,
		LoggerFactory:  lf,
		RTO:            100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("turn client: %v", err)
	}
	if err := c.Listen(); err != nil {
		t.Fatalf("client listen: %v", err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return &client{Client: c, conn: conn}
}

func (c *client) allocate(t *testing.T) (net.PacketConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relay, err := c.AllocateWithContext(ctx)
	if err == nil {
		t.Cleanup(func() { relay.Close() })
	}
	return relay, err
}

func turnCode(err error) int {
	var te stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	var tp *stun.TurnError
	if errors.As(err, &tp) {
		return int(tp.ErrorCodeAttr.Code)
	}
	return 0
}

// metric returns the value of a counter or gauge with the given labels.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// roundTrip writes through the relay to peer until an echo comes back;
// the first writes can race the permission, so it retries.
func roundTrip(t *testing.T, relay net.PacketConn, peer netip.AddrPort, payload string) {
	t.Helper()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := relay.WriteTo([]byte(payload), net.UDPAddrFromAddrPort(peer)); err != nil {
			t.Fatalf("write to %s through relay: %v", peer, err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := relay.ReadFrom(buf)
		if err != nil {
			continue
		}
		if string(buf[:n]) != payload {
			t.Fatalf("echo %q, want %q", buf[:n], payload)
		}
		if got := from.(*net.UDPAddr).AddrPort(); netip.AddrPortFrom(got.Addr().Unmap(), got.Port()) != peer {
			t.Fatalf("echo from %v, want %v", from, peer)
		}
		return
	}
	t.Fatalf("no echo from %s through the relay", peer)
}
