package turn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// Tests for the hardened edge (issue 11, cases 8 and 12-16, the recover
// boundary). Each asserts what an attacker gets refused and that a
// bystander keeps working.

// xorPeer4 is an XOR-PEER-ADDRESS setter for any IPv4 peer.
type xorPeer4 netip.AddrPort

func (x xorPeer4) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(x)
	return (&stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}).AddToAs(m, stun.AttrXORPeerAddress)
}

func channelNumber(n uint16) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(n >> 8), byte(n), 0, 0}}
}

// Case 12: one credential churning allocate + refresh(0) exhausts only its
// own lifetime share; the streamer and other players still allocate.
func TestChurningPlayerExhaustsOnlyItsOwnShare(t *testing.T) {
	s, reg := testServer(t, func(c *Config) { c.Quotas = Quotas{Lifetime: 5} })
	mallory := newClient(t, s, "udp", s.Credentials("mallory"))
	refused := false
	for i := 0; i < 20 && !refused; i++ {
		relay, err := mallory.allocate(t)
		switch {
		case turnCode(err) == 486:
			refused = true
		case err != nil:
			t.Fatalf("allocation %d: %v", i+1, err)
		default:
			relay.Close() // Refresh with lifetime 0
			eventually(t, "the allocation to be released", func() bool {
				return metric(t, reg, "pixelstream_turn_allocations", nil) == 0
			})
		}
	}
	if !refused {
		t.Fatal("20 allocate/deallocate cycles with one credential were all served; want 486 after its share")
	}
	if got := metric(t, reg, "pixelstream_turn_quota_rejections_total", map[string]string{"quota": "lifetime"}); got != 1 {
		t.Errorf("quota_rejections_total{lifetime} = %v, want 1", got)
	}
	if _, err := newClient(t, s, "udp", s.StreamerCredentials("streamer-1")).allocate(t); err != nil {
		t.Errorf("the streamer's allocation after a player churned: %v", err)
	}
	if _, err := newClient(t, s, "udp", s.Credentials("alice")).allocate(t); err != nil {
		t.Errorf("another player's allocation after a player churned: %v", err)
	}
}

// Case 12: players filling the session quota do not lock the streamer out.
func TestSessionQuotaLeavesTheStreamerOut(t *testing.T) {
	s, reg := testServer(t, func(c *Config) { c.Quotas = Quotas{PerSession: 2} })
	for _, p := range []string{"a", "b"} {
		if _, err := newClient(t, s, "udp", s.Credentials(p)).allocate(t); err != nil {
			t.Fatalf("player %s: %v", p, err)
		}
	}
	if _, err := newClient(t, s, "udp", s.Credentials("c")).allocate(t); turnCode(err) != 486 {
		t.Fatalf("third player: %v, want 486", err)
	}
	if _, err := newClient(t, s, "udp", s.StreamerCredentials("streamer-1")).allocate(t); err != nil {
		t.Errorf("streamer with the session quota full: %v", err)
	}
	// The streamer's own budget is the session's size, not PerPlayer.
	if _, err := newClient(t, s, "udp", s.StreamerCredentials("streamer-1")).allocate(t); err != nil {
		t.Errorf("streamer's second allocation: %v", err)
	}
	if _, err := newClient(t, s, "udp", s.StreamerCredentials("streamer-1")).allocate(t); turnCode(err) != 486 {
		t.Errorf("streamer's third allocation over its own budget of 2: %v, want 486", err)
	}
	if got := metric(t, reg, "pixelstream_turn_quota_rejections_total", map[string]string{"quota": "session"}); got != 1 {
		t.Errorf("quota_rejections_total{session} = %v, want 1", got)
	}
}

// Case 13: a flood of TCP connections that send two bytes and wait is
// capped per address and timed out per frame; a bystander allocates over
// TCP meanwhile, and the flood's connections are closed.
func TestSlowTCPFloodDoesNotBlockABystander(t *testing.T) {
	s, reg := testServer(t, func(c *Config) {
		c.MaxTCPConns = 64
		c.MaxTCPConnsPerAddr = 8
		c.TCPFrameTimeout = 300 * time.Millisecond
	})
	attacker := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	var flood []net.Conn
	for i := 0; i < 200; i++ {
		c, err := attacker.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatalf("flood dial %d: %v", i, err)
		}
		flood = append(flood, c)
		_, _ = c.Write([]byte{0x00, 0x01}) // the start of a STUN header, then nothing
	}
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	if _, err := newClient(t, s, "tcp", s.Credentials("bystander")).allocate(t); err != nil {
		t.Fatalf("bystander's TCP allocation during the flood: %v", err)
	}
	eventually(t, "connections over the per-address cap to be refused", func() bool {
		return metric(t, reg, "pixelstream_turn_tcp_refused_total", map[string]string{"cap": "per_address"}) >= 1
	})
	// Every flood connection ends: refused at once, or timed out mid-frame.
	for i, c := range flood {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("flood connection %d still open (read: %v)", i, err)
		}
	}
}

// Case 13: the deadline covers every frame, not only the first byte: a
// client that sent a whole request and then starts another and stalls is
// closed.
func TestTCPFrameDeadlineAfterTheFirstFrame(t *testing.T) {
	s, _ := testServer(t, func(c *Config) { c.TCPFrameTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	head := make([]byte, stunHeader)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatalf("binding response: %v", err)
	}
	if _, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint16(head[2:4]))); err != nil {
		t.Fatalf("binding response body: %v", err)
	}
	if _, err := c.Write(req.Raw[:3]); err != nil { // the next frame, stalled
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("connection stalled mid-frame is still open (read: %v)", err)
	}
}

// Case 14: connect/close cycles leave no records: every credential id that
// was revoked is forgotten after its grace, with what it advertised.
func TestRevokedPlayersAreForgotten(t *testing.T) {
	s, _ := testServer(t, func(c *Config) { c.RevokeGrace = time.Millisecond })
	s.StreamerCredentials("streamer-1")
	base := s.Players()
	for i := 0; i < 500; i++ {
		id := strconv.Itoa(i)
		s.Credentials(id)
		s.AllowFromPlayerCandidate("streamer-1", id, "candidate:1 1 udp 1 198.51.100.7 "+strconv.Itoa(1000+i)+" typ host")
		s.AllowFromCandidate(id, "candidate:1 1 udp 1 203.0.113.5 40000 typ host")
		s.Revoke(id) // the player's connection closed; it never subscribed or allocated
	}
	eventually(t, "revoked players' records to be forgotten", func() bool { return s.Players() == base })
	s.mu.Lock()
	streamer, contributions := s.players["streamer-1"], len(s.contributions)
	s.mu.Unlock()
	if n := streamer.set.size(); n != 0 {
		t.Errorf("the streamer's allow-list keeps %d addresses of players that left", n)
	}
	if contributions != 0 {
		t.Errorf("%d contribution records left", contributions)
	}
}

// Case 14: a revoked player's credentials stop working even if it never
// subscribed or allocated.
func TestRevokeWithoutAllocation(t *testing.T) {
	s, _ := testServer(t, func(c *Config) { c.RevokeGrace = time.Millisecond })
	ice := s.Credentials("idle")
	s.Revoke("idle")
	eventually(t, "the record to be forgotten", func() bool { return s.Players() == 0 })
	if _, err := newClient(t, s, "udp", ice).allocate(t); turnCode(err) != 401 {
		t.Errorf("allocate with the credentials of a player that left: %v, want 401", err)
	}
}

// Case 8: one player flooding candidates fills only its own share of the
// streamer's allow-list; another player's addresses stay.
func TestAllowListSharePerPlayer(t *testing.T) {
	s, _ := testServer(t, nil)
	s.StreamerCredentials("streamer-1")
	s.AllowFromPlayerCandidate("streamer-1", "alice", "candidate:1 1 udp 1 198.51.100.1 5000 typ host")
	for i := 0; i < 20000; i++ {
		s.AllowFromPlayerCandidate("streamer-1", "mallory",
			"candidate:1 1 udp 1 203.0.113."+strconv.Itoa(i%250+1)+" "+strconv.Itoa(1024+i)+" typ host")
	}
	s.mu.Lock()
	set := s.players["streamer-1"].set
	s.mu.Unlock()
	if n := set.size(); n != maxAddrsPerSource+1 {
		t.Errorf("streamer's allow-list holds %d addresses, want %d (mallory's share) + 1 (alice's)", n, maxAddrsPerSource)
	}
	if !set.has(netip.MustParseAddrPort("198.51.100.1:5000")) {
		t.Error("alice's address was pushed out of the streamer's allow-list by another player")
	}
	// The newest of mallory's addresses are the ones kept.
	if !set.has(netip.MustParseAddrPort("203.0.113." + strconv.Itoa(19999%250+1) + ":" + strconv.Itoa(1024+19999))) {
		t.Error("mallory's latest address is not in the list")
	}
	s.Revoke("mallory")
}

// Case 15: channel binds per allocation are capped (508), and a port of an
// allowed IP that was never advertised gets no channel (403).
func TestChannelBindCaps(t *testing.T) {
	ip := hostIP(t)
	s, reg := testServer(t, func(c *Config) { c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")} })
	s.AllowFromCandidate("p1", "candidate:1 1 udp 1 "+ip.String()+" 40000 typ host")
	ice := s.Credentials("p1")
	c := newClient(t, s, "udp", ice)
	if _, err := c.allocate(t); err != nil {
		t.Fatalf("allocate: %v", err)
	}
	bind := func(n uint16, peer netip.AddrPort) *stun.Message {
		return authedRequest(t, c, ice, stun.MethodChannelBind, channelNumber(n), xorPeer4(peer))
	}
	if res := bind(0x4000, netip.AddrPortFrom(ip, 40001)); errorCode(res) != 403 {
		t.Errorf("ChannelBind to an unadvertised port of an advertised IP: %v (code %d), want 403", res.Type, errorCode(res))
	}
	if res := bind(0x4000, netip.AddrPortFrom(ip, 40000)); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("ChannelBind to the advertised address: %v (code %d)", res.Type, errorCode(res))
	}
	for i := 1; i < maxChannelsPlayer; i++ {
		peer := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.9"), uint16(10000+i))
		if res := bind(0x4000+uint16(i), peer); res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("ChannelBind %d (within the cap): %v (code %d)", i+1, res.Type, errorCode(res))
		}
	}
	eventually(t, "the channels to be bound", func() bool {
		return metric(t, reg, "pixelstream_turn_channels", nil) == maxChannelsPlayer
	})
	if res := bind(0x4000+maxChannelsPlayer, netip.MustParseAddrPort("198.51.100.9:9999")); errorCode(res) != 508 {
		t.Errorf("ChannelBind over the cap: %v (code %d), want 508", res.Type, errorCode(res))
	}
	// Refreshing an existing channel is still fine at the cap.
	if res := bind(0x4000, netip.AddrPortFrom(ip, 40000)); res.Type.Class != stun.ClassSuccessResponse {
		t.Errorf("refresh of a bound channel at the cap: %v (code %d)", res.Type, errorCode(res))
	}
	if got := metric(t, reg, "pixelstream_turn_cap_rejections_total", map[string]string{"cap": "channels"}); got != 1 {
		t.Errorf("cap_rejections_total{channels} = %v, want 1", got)
	}
}

// Case 16: translated and metadata addresses are refused even under an
// operator catch-all, through the real server.
func TestTranslatedPeersRefusedUnderCatchAll(t *testing.T) {
	s, reg := testServer(t, func(c *Config) {
		c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	})
	ice := s.Credentials("p1")
	c := newClient(t, s, "udp", ice)
	if _, err := c.allocate(t); err != nil {
		t.Fatalf("allocate: %v", err)
	}
	for _, peer := range []string{"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::808:808", "2002:7f00:1::1",
		"2001:0:a9fe:a9fe::ffff:ffff", "::ffff:0:7f00:1", "::ffff:0:808:808"} {
		x := xorPeerIPv6{ip: netip.MustParseAddr(peer).As16(), port: 80}
		if res := authedRequest(t, c, ice, stun.MethodCreatePermission, x); res.Type.Class != stun.ClassErrorResponse {
			t.Errorf("CreatePermission to %s under 0.0.0.0/0 ::/0 succeeded; want it refused", peer)
		}
	}
	// The relay is IPv4, so pion refuses IPv6 peers by family too; the IPv4
	// metadata address goes through the policy.
	if err := c.CreatePermission(net.UDPAddrFromAddrPort(netip.MustParseAddrPort("100.100.100.200:80"))); turnCode(err) != 403 {
		t.Errorf("CreatePermission to 100.100.100.200 under a catch-all: %v, want 403", err)
	}
	if got := metric(t, reg, "pixelstream_turn_denied_peers_total", map[string]string{"reason": "metadata"}); got != 1 {
		t.Errorf("denied_peers_total{metadata} = %v, want 1", got)
	}
}

// The recover boundary: a bug hit by one client's packet drops that packet
// (UDP) or connection (TCP), is counted, and the server goes on relaying
// for a bystander.
func TestPanicInAPeerHandlerDropsOnlyThatPeer(t *testing.T) {
	ip := hostIP(t)
	s, reg := testServer(t, nil)
	poison := []byte("\x40\x00\x00\x06poison\x00\x00") // ChannelData, padded as on TCP
	hook := func(b []byte) {
		if bytes.Contains(b, []byte("poison")) {
			panic("test: poisoned packet")
		}
	}
	s.packetHook.Store(&hook)
	peer := newEchoPeer(t, ip, true)
	s.AllowFromCandidate("bystander", peer.candidate())
	relay, err := newClient(t, s, "udp", s.Credentials("bystander")).allocate(t)
	if err != nil {
		t.Fatalf("bystander allocate: %v", err)
	}
	// UDP: the data plane loop recovers.
	u, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write(poison); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the relay loop's panic to be counted", func() bool {
		return metric(t, reg, "pixelstream_turn_panics_total", map[string]string{"where": "relay_loop"}) >= 1
	})
	roundTrip(t, relay, peer.addr, "after a UDP panic")
	// TCP: that connection ends, nothing else.
	tc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := tc.Write(poison); err != nil {
		t.Fatal(err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("the TCP connection that hit a panic is still open (read: %v)", err)
	}
	if got := metric(t, reg, "pixelstream_turn_panics_total", map[string]string{"where": "tcp_conn"}); got < 1 {
		t.Errorf("panics_total{tcp_conn} = %v, want >= 1", got)
	}
	roundTrip(t, relay, peer.addr, "after a TCP panic")
	if _, err := newClient(t, s, "tcp", s.Credentials("fresh")).allocate(t); err != nil {
		t.Errorf("a fresh TCP client after the panics: %v", err)
	}
}

// readFrame: boundaries and refusals.
func TestReadFrame(t *testing.T) {
	stunMsg := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	cases := []struct {
		name string
		in   []byte
		want []int // frame sizes, in order
		err  error
	}{
		{"stun", stunMsg, []int{len(stunMsg)}, io.EOF},
		{"channel data padded", []byte{0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0}, []int{12}, io.EOF},
		{"empty channel data", []byte{0x40, 0x00, 0x00, 0x00}, []int{4}, io.EOF},
		{"two frames", append([]byte{0x40, 0x00, 0x00, 0x01, 9, 0, 0, 0}, stunMsg...), []int{8, len(stunMsg)}, io.EOF},
		{"not TURN", []byte{0x80, 0, 0, 0}, nil, errNotTURN},
		{"too large", []byte{0x40, 0x00, 0xff, 0xff}, nil, errFrameTooLarge},
		{"stun too large", []byte{0x00, 0x01, 0xff, 0xff}, nil, errFrameTooLarge},
		{"bad cookie", append([]byte{0x00, 0x01, 0x00, 0x00}, make([]byte, 16)...), nil, errBadCookie},
		{"truncated", []byte{0x40, 0x00, 0x00, 0x08, 1}, nil, io.ErrUnexpectedEOF},
		{"truncated header", []byte{0x40, 0x00}, nil, io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newFrameReader(tc.in)
			buf := make([]byte, maxFrame)
			var got []int
			var err error
			for {
				var f []byte
				if f, err = readFrame(r, buf, nil); err != nil {
					break
				}
				got = append(got, len(f))
			}
			if !errors.Is(err, tc.err) || len(got) != len(tc.want) {
				t.Fatalf("frames %v, error %v; want %v, %v", got, err, tc.want, tc.err)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("frame %d: %d bytes, want %d", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestStandaloneHelpSaysLifetimeIsPerID(t *testing.T) {
	// The standalone flag text says the lifetime quota is per id now.
	var out strings.Builder
	_ = run(t.Context(), []string{"--help"}, io.Discard, &out)
	if !strings.Contains(out.String(), "one username's id") {
		t.Errorf("--quota-lifetime help does not say it is per id:\n%s", out.String())
	}
}

func newFrameReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// The spread-out slowloris (issue 17): 1,100 connections that send two
// bytes and wait, from 40 loopback addresses (each under the per-address
// cap), would fill the default total of 1,024 and lock every new TCP/TLS
// client out for as long as the attacker reconnects. At the cap a newcomer
// evicts the oldest connection without an allocation: a bystander from
// another address allocates while the flood is held, and a client that
// already has an allocation is never the one evicted.
func TestSpreadSlowlorisDoesNotLockOutNewClients(t *testing.T) {
	s, reg := testServer(t, nil) // the defaults: 1,024 in all, 32 per address
	holder := newClient(t, s, "tcp", s.Credentials("holder"))
	if _, err := holder.allocate(t); err != nil {
		t.Fatalf("allocation before the flood: %v", err)
	}
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := 0; i < 1100; i++ {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%40))}}
		c, err := d.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatalf("flood dial %d: %v", i, err)
		}
		flood = append(flood, c)
		_, _ = c.Write([]byte{0x00, 0x01}) // the start of a STUN header, then nothing
	}
	eventually(t, "the flood to reach the total cap", func() bool {
		return metric(t, reg, "pixelstream_turn_tcp_refused_total", map[string]string{"cap": "evicted"})+
			metric(t, reg, "pixelstream_turn_tcp_refused_total", map[string]string{"cap": "total"}) >= 1
	})
	// A newcomer from another address: answered while the flood is held.
	start := time.Now()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, 1)}}
	c, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newClientOn(t, s, turn.NewSTUNConn(c), s.Credentials("newcomer")).allocate(t); err != nil {
		t.Fatalf("a new client's TCP allocation during the flood: %v", err)
	}
	t.Logf("new client allocated %s after connecting, with 1,100 idle connections from 40 addresses held", time.Since(start).Round(time.Millisecond))
	// The client that already had an allocation was not evicted: its
	// connection still answers.
	if _, err := holder.SendBindingRequest(); err != nil {
		t.Fatalf("the holder's connection after the flood: %v", err)
	}
}
