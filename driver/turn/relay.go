package turn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"
)

// Per-allocation caps. A WebRTC client binds one channel per remote
// candidate it checks; a streamer relaying to many players needs more.
const (
	maxChannelsPlayer   = 64
	maxChannelsStreamer = 1024
	// maxPermissions bounds the peer IPs one allocation may hold
	// permissions for (an operator catch-all would otherwise let one
	// client make the server keep a timer per address of the internet).
	maxPermissions = 1024
)

// verdict caches a policy decision for the version of the peer set it was
// made against; it is recomputed when the set changes.
type verdict struct {
	version uint64
	ok      bool
}

// channel is one channel binding, shared by the loop that reads the client
// (c2p) and the loop that reads the relay socket (p2c).
type channel struct {
	num     uint16
	relay   *relayConn
	peer    netip.AddrPort
	peerRaw rawAddr
	c2p     atomic.Pointer[verdict]
	p2c     atomic.Pointer[verdict]
}

// allowed is the per-packet policy check: two atomic loads while the
// player's allow-list does not change.
func (c *channel) allowed(cache *atomic.Pointer[verdict], s *Server) bool {
	set := c.relay.player.set
	ver := set.version.Load()
	if v := cache.Load(); v != nil && v.version == ver {
		return v.ok
	}
	ok := s.peerAllowed(set, c.peer)
	cache.Store(&verdict{version: ver, ok: ok})
	return ok
}

// clientLink is the client side of an allocation.
type clientLink struct {
	addr netip.AddrPort
	raw  rawAddr
	udp  bool // the fast path answers UDP clients; TCP clients go through pion
}

type slowPacket struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

var packetPool = sync.Pool{New: func() any { b := make([]byte, packetSize); return &b }}

// relayConn is one allocation's relay socket. pion sees it as a
// net.PacketConn: ReadFrom yields only what the fast path leaves to pion,
// WriteTo (Send indications, ChannelData from TCP clients) is policy-checked.
type relayConn struct {
	srv        *Server
	loop       *loop
	fd         int
	local      netip.AddrPort
	advertised *net.UDPAddr
	player     *player
	credExpiry int64

	link atomic.Pointer[clientLink]
	// chans (by number, client to peer) and peers (by peer address, peer to
	// client) are copied on write under srv.mu; at most maxChannels each.
	chans atomic.Pointer[map[uint16]*channel]
	peers atomic.Pointer[map[netip.AddrPort]*channel]
	perms map[netip.Addr]struct{} // permitted peer IPs, under srv.mu

	slow      chan slowPacket
	closed    chan struct{}
	closeOnce sync.Once
	mu        sync.RWMutex // WriteTo vs Close, so no write lands on a reused descriptor
	isClosed  bool
}

var (
	noChannels    = map[uint16]*channel{}
	noPeerChannel = map[netip.AddrPort]*channel{}
	// noPeers is the allow-list of a client without an allocation; never
	// added to.
	noPeers = newPeerSet()
)

func (rc *relayConn) maxChannels() int {
	if rc.player.streamer {
		return maxChannelsStreamer
	}
	return maxChannelsPlayer
}

func (rc *relayConn) deliverSlow(p []byte, from netip.AddrPort, st *loopStats) {
	if !rc.srv.peerAllowed(rc.player.set, from) {
		st.denied.Add(1)
		return
	}
	bp := packetPool.Get().(*[]byte)
	n := copy(*bp, p)
	select {
	case rc.slow <- slowPacket{buf: bp, n: n, from: from}:
		// pion relays it (Data indication, or ChannelData to a TCP client).
		st.p2cPackets.Add(1)
		st.p2cBytes.Add(uint64(n))
	default:
		packetPool.Put(bp)
		st.dropped.Add(1)
	}
}

// ReadFrom implements net.PacketConn for pion's relay goroutine.
func (rc *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case pk := <-rc.slow:
		n := copy(p, (*pk.buf)[:pk.n])
		packetPool.Put(pk.buf)
		return n, net.UDPAddrFromAddrPort(pk.from), nil
	case <-rc.closed:
		return 0, nil, net.ErrClosed
	}
}

// WriteTo implements net.PacketConn; a peer the policy refuses is dropped
// silently (as a firewall would) and counted.
func (rc *relayConn) WriteTo(p []byte, addr net.Addr) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			rc.srv.panicked("relay_write", r)
			n, err = 0, errors.New("turn: internal error relaying this packet")
		}
	}()
	ap, err := addrPortOf(addr)
	if err != nil {
		return 0, err
	}
	st := &rc.loop.stats
	if !rc.srv.peerAllowed(rc.player.set, ap) {
		st.denied.Add(1)
		return len(p), nil
	}
	raw := toRaw(ap)
	rc.mu.RLock()
	defer rc.mu.RUnlock()
	if rc.isClosed {
		return 0, net.ErrClosed
	}
	if err := sendTo(rc.fd, p, &raw); err != nil {
		st.dropped.Add(1)
		return 0, fmt.Errorf("relay %s to %s: %w", rc.local, ap, err)
	}
	st.c2pPackets.Add(1)
	st.c2pBytes.Add(uint64(len(p)))
	return len(p), nil
}

// Close ends the allocation's relay; pion's read loop then deletes the
// allocation. Safe to call more than once and from any goroutine.
func (rc *relayConn) Close() error {
	rc.closeOnce.Do(func() {
		rc.mu.Lock()
		rc.isClosed = true
		rc.mu.Unlock()
		close(rc.closed)
		rc.loop.unregister(rc.fd)
		rc.srv.relayClosed(rc)
		rc.srv.closeWhenQuiet(rc.fd)
	})
	return nil
}

func (rc *relayConn) LocalAddr() net.Addr              { return rc.advertised }
func (rc *relayConn) SetDeadline(time.Time) error      { return nil }
func (rc *relayConn) SetReadDeadline(time.Time) error  { return nil }
func (rc *relayConn) SetWriteDeadline(time.Time) error { return nil }

func addrPortOf(a net.Addr) (netip.AddrPort, error) {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.UDPAddr:
		ap = v.AddrPort()
	case *net.TCPAddr:
		ap = v.AddrPort()
	default:
		return ap, fmt.Errorf("unsupported address %v (%T)", a, a)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// relayGen is pion's RelayAddressGenerator: it makes relay sockets on the
// data-plane loops, and refuses TCP relays (RFC 6062), which WebRTC never
// uses and which would widen what the relay can reach.
type relayGen struct{ srv *Server }

var errNoTCPRelay = errors.New("TCP relay allocations (RFC 6062) are not offered")

func (g relayGen) Validate() error { return nil }

func (g relayGen) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errNoTCPRelay
}

func (g relayGen) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errNoTCPRelay
}

func (g relayGen) AllocatePacketConn(conf turn.AllocateListenerConfig) (pc net.PacketConn, addr net.Addr, err error) {
	defer func() {
		if r := recover(); r != nil {
			g.srv.panicked("allocate", r)
			pc, addr, err = nil, nil, errors.New("turn: internal error allocating a relay")
		}
	}()
	s := g.srv
	relayIP := s.cfg.relayIP
	if (conf.Network == "udp6") == relayIP.Is4() {
		return nil, nil, fmt.Errorf("allocate %s relay: this server relays from %s only", conf.Network, relayIP)
	}
	fd, local, err := s.bindRelay(conf.RequestedPort)
	if err != nil {
		return nil, nil, err
	}
	rc := &relayConn{
		srv: s, fd: fd, local: local,
		advertised: net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.cfg.publicIP, local.Port())),
		slow:       make(chan slowPacket, 256),
		closed:     make(chan struct{}),
		perms:      map[netip.Addr]struct{}{},
	}
	rc.chans.Store(&noChannels)
	rc.peers.Store(&noPeerChannel)
	rc.loop = s.loops[int(s.nextLoop.Add(1))%len(s.loops)]

	expiry, id, ok := splitUsername(conf.UserID)
	s.mu.Lock()
	if ok {
		rc.player = s.playerLocked(id)
		rc.credExpiry = expiry
		s.takeReservationLocked(rc.player)
		rc.player.relays[rc] = struct{}{}
		rc.player.created++
		rc.player.seenMax = max(rc.player.seenMax, expiry)
		if !rc.player.streamer {
			s.livePlayers++
		}
	} else {
		// pion's EVEN-PORT probe: a socket opened and closed at once.
		rc.player = &player{id: "", set: noPeers}
	}
	s.relays[local.Port()] = rc
	s.mu.Unlock()

	if err := rc.loop.register(&endpoint{kind: kindRelay, fd: fd, relay: rc}); err != nil {
		_ = rc.Close()
		return nil, nil, fmt.Errorf("allocate relay: %w", err)
	}
	return rc, rc.advertised, nil
}

// bindRelay binds a relay socket on the relay IP, in the configured port
// range when there is one.
func (s *Server) bindRelay(requested int) (int, netip.AddrPort, error) {
	try := func(port uint16) (int, netip.AddrPort, error) {
		return newUDPSocket(netip.AddrPortFrom(s.cfg.relayIP, port), false, s.cfg.sockBuf)
	}
	if requested > 0 {
		return try(uint16(requested))
	}
	if s.cfg.portMin == 0 {
		return try(0)
	}
	span := int(s.cfg.portMax) - int(s.cfg.portMin) + 1
	var lastErr error
	for range min(span, 64) {
		fd, ap, err := try(s.cfg.portMin + uint16(rand.IntN(span)))
		if err == nil {
			return fd, ap, nil
		}
		lastErr = err
		if !errors.Is(err, unix.EADDRINUSE) {
			break
		}
	}
	return -1, netip.AddrPort{}, fmt.Errorf("no free relay port in %d-%d: %w", s.cfg.portMin, s.cfg.portMax, lastErr)
}
