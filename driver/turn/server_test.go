package turn

import (
	"github.com/pion/turn/v5"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAllocateWithValidCredentials(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s, reg := testServer(t, nil)
			c := newClient(t, s, transport, s.Credentials("player1"))
			relay, err := c.allocate(t)
			if err != nil {
				t.Fatalf("allocate with valid credentials: %v", err)
			}
			ra := relay.LocalAddr().(*net.UDPAddr).AddrPort()
			if ra.Addr().Unmap() != netip.MustParseAddr("127.0.0.1") || ra.Port() == 0 {
				t.Errorf("relayed address %v, want 127.0.0.1:<port>", ra)
			}
			if got := metric(t, reg, "pixelstream_turn_allocations", nil); got != 1 {
				t.Errorf("allocations gauge = %v, want 1", got)
			}
			// STUN binding is answered on the same port.
			if _, err := c.SendBindingRequest(); err != nil {
				t.Errorf("STUN binding request: %v", err)
			}
		})
	}
}

func TestCredentialsRefused(t *testing.T) {
	cases := []struct {
		name   string
		ice    func(s *Server) ICEServer
		reason string
	}{
		{"wrong password", func(s *Server) ICEServer {
			ice := s.Credentials("p1")
			ice.Credential = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
			return ice
		}, "bad_credentials"},
		{"password from another secret", func(s *Server) ICEServer {
			ice := s.Credentials("p1")
			ice.Credential = restPassword([]byte("some-other-secret-0123456789"), ice.Username)
			return ice
		}, "bad_credentials"},
		{"expired", func(s *Server) ICEServer {
			u := strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 10) + ":p1"
			return ICEServer{Username: u, Credential: restPassword(s.secret, u)}
		}, "expired"},
		{"malformed username", func(s *Server) ICEServer {
			return ICEServer{Username: "p1", Credential: restPassword(s.secret, "p1")}
		}, "malformed_username"},
		{"revoked player", func(s *Server) ICEServer {
			ice := s.Credentials("p1")
			s.Revoke("p1")
			return ice
		}, "revoked|unknown_id"}, // refused as revoked, or as unknown once the grace is over and the record forgotten
		{"never minted here", func(s *Server) ICEServer {
			u := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + ":stranger"
			return ICEServer{Username: u, Credential: restPassword(s.secret, u)}
		}, "unknown_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, reg := testServer(t, func(c *Config) { c.RevokeGrace = time.Nanosecond })
			c := newClient(t, s, "udp", tc.ice(s))
			_, err := c.allocate(t)
			if err == nil {
				t.Fatal("allocation succeeded; want it refused")
			}
			if code := turnCode(err); code != 401 {
				t.Errorf("error %v (code %d), want 401", err, code)
			}
			var got float64
			for _, reason := range strings.Split(tc.reason, "|") {
				got += metric(t, reg, "pixelstream_turn_auth_failures_total", map[string]string{"reason": reason})
			}
			if got < 1 {
				t.Errorf("auth_failures_total{reason=%q} = %v, want >= 1", tc.reason, got)
			}
		})
	}
}

func TestRevokeAfterGraceClosesAllocationsAndNewCredentialsWork(t *testing.T) {
	s, reg := testServer(t, func(c *Config) { c.RevokeGrace = 50 * time.Millisecond })
	old := s.Credentials("p1")
	c := newClient(t, s, "udp", old)
	if _, err := c.allocate(t); err != nil {
		t.Fatalf("allocate: %v", err)
	}
	s.Revoke("p1")
	eventually(t, "the revoked player's allocation to close", func() bool {
		return metric(t, reg, "pixelstream_turn_allocations", nil) == 0
	})
	if _, err := newClient(t, s, "udp", old).allocate(t); turnCode(err) != 401 {
		t.Errorf("allocate with revoked credentials: %v, want 401", err)
	}
	// The same player id connecting again gets working credentials.
	fresh := s.Credentials("p1")
	if _, err := newClient(t, s, "udp", fresh).allocate(t); err != nil {
		t.Errorf("allocate with credentials minted after Revoke: %v", err)
	}
}

func TestCredentialsShape(t *testing.T) {
	s, _ := testServer(t, func(c *Config) { c.PublicIP = "203.0.113.10" })
	ice := s.Credentials("player 7")
	port := strconv.Itoa(int(s.Addr().Port()))
	want := []string{"turn:203.0.113.10:" + port + "?transport=udp", "turn:203.0.113.10:" + port + "?transport=tcp"}
	if strings.Join(ice.URLs, " ") != strings.Join(want, " ") {
		t.Errorf("URLs %v, want %v", ice.URLs, want)
	}
	exp, id, ok := splitUsername(ice.Username)
	if !ok || id != "player 7" {
		t.Fatalf("username %q, want <expiry>:player 7", ice.Username)
	}
	if d := time.Until(time.Unix(exp, 0)); d < DefaultCredentialTTL-time.Minute || d > DefaultCredentialTTL+time.Minute {
		t.Errorf("expiry in %v, want about %v", d, DefaultCredentialTTL)
	}
	if ice.Credential != restPassword(s.secret, ice.Username) {
		t.Error("credential is not base64(HMAC-SHA1(secret, username))")
	}
}

func TestRelayRoundTripToAdvertisedPeer(t *testing.T) {
	ip := hostIP(t)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s, reg := testServer(t, nil)
			peer := newEchoPeer(t, ip, true)
			s.AllowFromCandidate("p1", peer.candidate())
			relay, err := newClient(t, s, transport, s.Credentials("p1")).allocate(t)
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			// Enough round trips that the client's channel binding is up and
			// the channel path (not only Send/Data indications) is used.
			for i := 0; i < 20; i++ {
				roundTrip(t, relay, peer.addr, "frame-"+strconv.Itoa(i))
			}
			eventually(t, "a channel binding", func() bool { return metric(t, reg, "pixelstream_turn_channels", nil) >= 1 })
			roundTrip(t, relay, peer.addr, "over the channel")
			for _, dir := range []string{"client_to_peer", "peer_to_client"} {
				if got := metric(t, reg, "pixelstream_turn_relayed_packets_total", map[string]string{"direction": dir}); got < 1 {
					t.Errorf("relayed_packets_total{direction=%s} = %v, want > 0", dir, got)
				}
			}
		})
	}
}

func TestRefusedPeers(t *testing.T) {
	ip := hostIP(t)
	cases := []struct {
		peer   string
		reason string
	}{
		{"127.0.0.1:5000", "loopback"},
		{"127.1.2.3:5000", "loopback"},
		{"0.0.0.0:5000", "unspecified"},
		{"169.254.169.254:80", "link_local"},
		{"169.254.10.10:5000", "link_local"},
		{"224.0.0.251:5353", "multicast"},
		{"255.255.255.255:5000", "broadcast"},
		{"10.1.2.3:5000", "not_advertised"},
		{"192.168.1.1:5000", "not_advertised"},
		{"8.8.8.8:53", "not_advertised"},
	}
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s, reg := testServer(t, nil)
			// The streamer advertised loopback and link-local candidates too:
			// they stay refused.
			s.AllowFromSDP("p1", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n"+
				"a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"+
				"a=candidate:2 1 udp 1 169.254.169.254 80 typ host\r\n"+
				"a=candidate:3 1 udp 1 "+ip.String()+" 40000 typ host\r\n")
			c := newClient(t, s, transport, s.Credentials("p1"))
			if _, err := c.allocate(t); err != nil {
				t.Fatalf("allocate: %v", err)
			}
			for _, tc := range cases {
				peer := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.peer))
				before := metric(t, reg, "pixelstream_turn_denied_peers_total", map[string]string{"reason": tc.reason})
				err := c.CreatePermission(peer)
				if code := turnCode(err); code != 403 {
					t.Errorf("CreatePermission(%s): %v (code %d), want 403", tc.peer, err, code)
				}
				if got := metric(t, reg, "pixelstream_turn_denied_peers_total", map[string]string{"reason": tc.reason}); got != before+1 {
					t.Errorf("denied_peers_total{reason=%q} went %v -> %v, want +1", tc.reason, before, got)
				}
			}
			if err := c.CreatePermission(net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 40000))); err != nil {
				t.Errorf("CreatePermission for the advertised peer: %v", err)
			}
		})
	}
}

func TestOtherPortOfAllowedIPIsDropped(t *testing.T) {
	ip := hostIP(t)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s, reg := testServer(t, nil)
			allowed := newEchoPeer(t, ip, true)
			other := newEchoPeer(t, ip, false)
			s.AllowFromCandidate("p1", allowed.candidate())
			relay, err := newClient(t, s, transport, s.Credentials("p1")).allocate(t)
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			roundTrip(t, relay, allowed.addr, "hello") // permission for the IP exists now

			// Client -> other port: dropped and counted.
			if _, err := relay.WriteTo([]byte("to the other port"), net.UDPAddrFromAddrPort(other.addr)); err != nil {
				t.Fatalf("write: %v", err)
			}
			eventually(t, "the packet to the other port to be dropped", func() bool {
				return metric(t, reg, "pixelstream_turn_denied_packets_total", nil) >= 1
			})
			// Other port -> relay: dropped and counted, never reaches the client.
			before := metric(t, reg, "pixelstream_turn_denied_packets_total", nil)
			if _, err := other.conn.WriteTo([]byte("from the other port"), relay.LocalAddr()); err != nil {
				t.Fatalf("peer write: %v", err)
			}
			eventually(t, "the packet from the other port to be dropped", func() bool {
				return metric(t, reg, "pixelstream_turn_denied_packets_total", nil) >= before+1
			})
			_ = other.conn.SetReadDeadline(time.Now())
			if n, _, err := other.conn.ReadFrom(make([]byte, 100)); err == nil {
				t.Errorf("the other port received %d bytes through the relay", n)
			}
			roundTrip(t, relay, allowed.addr, "still works")
		})
	}
}

func TestAnotherPlayersCredentialsGrantNothing(t *testing.T) {
	ip := hostIP(t)
	s, reg := testServer(t, nil)
	peer := newEchoPeer(t, ip, true)
	s.AllowFromCandidate("alice", peer.candidate())
	s.Credentials("alice")
	c := newClient(t, s, "udp", s.Credentials("bob"))
	if _, err := c.allocate(t); err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if err := c.CreatePermission(net.UDPAddrFromAddrPort(peer.addr)); turnCode(err) != 403 {
		t.Errorf("bob's CreatePermission to alice's streamer: %v, want 403", err)
	}
	if got := metric(t, reg, "pixelstream_turn_denied_peers_total", map[string]string{"reason": "not_advertised"}); got != 1 {
		t.Errorf("denied_peers_total{not_advertised} = %v, want 1", got)
	}
}

func TestStaticAllowPeers(t *testing.T) {
	s, _ := testServer(t, func(c *Config) {
		c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("0.0.0.0/0")}
	})
	peer := newEchoPeer(t, netip.MustParseAddr("127.0.0.1"), true)
	c := newClient(t, s, "udp", s.Credentials("p1"))
	relay, err := c.allocate(t)
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	roundTrip(t, relay, peer.addr, "explicitly allowed loopback")
	// 0.0.0.0/0 is not specific enough to open the rest of 127.0.0.0/8 or link-local.
	for _, p := range []string{"127.0.0.2:9", "169.254.169.254:80"} {
		if err := c.CreatePermission(net.UDPAddrFromAddrPort(netip.MustParseAddrPort(p))); turnCode(err) != 403 {
			t.Errorf("CreatePermission(%s) with 0.0.0.0/0 allowed: %v, want 403", p, err)
		}
	}
}

func TestQuotas(t *testing.T) {
	cases := []struct {
		name    string
		quotas  Quotas
		players []string // one allocation each, in order; the last must be refused
		release bool     // close each allocation before the next
		quota   string
	}{
		{"per player", Quotas{PerPlayer: 2}, []string{"a", "a", "a"}, false, "player"},
		{"per session", Quotas{PerSession: 2}, []string{"a", "b", "c"}, false, "session"},
		{"lifetime", Quotas{Lifetime: 2}, []string{"a", "a", "a"}, true, "lifetime"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, reg := testServer(t, func(c *Config) { c.Quotas = tc.quotas })
			for i, p := range tc.players {
				relay, err := newClient(t, s, "udp", s.Credentials(p)).allocate(t)
				last := i == len(tc.players)-1
				switch {
				case last && turnCode(err) != 486:
					t.Fatalf("allocation %d: %v, want 486 Allocation Quota Reached", i+1, err)
				case !last && err != nil:
					t.Fatalf("allocation %d: %v", i+1, err)
				}
				if !last && tc.release {
					relay.Close()
					eventually(t, "the allocation to be released", func() bool {
						return metric(t, reg, "pixelstream_turn_allocations", nil) == 0
					})
				}
			}
			if got := metric(t, reg, "pixelstream_turn_quota_rejections_total", map[string]string{"quota": tc.quota}); got != 1 {
				t.Errorf("quota_rejections_total{quota=%q} = %v, want 1", tc.quota, got)
			}
		})
	}
}

func TestCloseDropsTCPClientsAndAllocations(t *testing.T) {
	s, reg := testServer(t, nil)
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sc := newClientOn(t, s, turnSTUNConn(conn), s.Credentials("p1"))
	if _, err := sc.allocate(t); err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := metric(t, reg, "pixelstream_turn_allocations", nil); got != 0 {
		t.Errorf("allocations after Close = %v, want 0", got)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("client connection still open after Close (read: %v)", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
func turnSTUNConn(c net.Conn) net.PacketConn { return turn.NewSTUNConn(c) }
