// Package turn is the per-session TURN server: pion/turn for the protocol,
// TURN REST credentials minted per player, a default-deny peer policy fed by
// the streamer's SDP and candidates, quotas, Prometheus metrics, and an
// epoll data plane that relays ChannelData without per-packet allocation.
package turn

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// ICEServer is one entry of RTCPeerConnection's iceServers, JSON-ready.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Server is one session's TURN server.
type Server struct {
	cfg     settings
	secret  []byte
	static  staticRules
	log     hclog.Logger
	metrics *metrics

	pion     *turn.Server
	loops    []*loop
	nextLoop atomic.Uint32
	tcp      *tcpListener
	ctrls    []*ctrlConn
	udpAddr  netip.AddrPort
	tlsOn    bool

	// udpClients finds a UDP client's allocation on the fast path; copied
	// on write, once per allocation (never per channel bind), under mu.
	udpClients atomic.Pointer[map[netip.AddrPort]*relayConn]
	// private: the secret never left this process, so every valid
	// credential was minted by Credentials and an unknown id is refused.
	private bool

	mu             sync.Mutex
	players        map[string]*player
	contributions  map[string]map[*player]struct{} // source id -> lists it added to
	reservations   []quotaReservation
	livePlayers    int // allocations of non-streamer ids (the session quota)
	pendingPlayers int
	relays         map[uint16]*relayConn // by relay port
	byClient       map[clientKey]*relayConn
	started        bool
	closed         bool
	reapWG         sync.WaitGroup
	panicLogged    sync.Map // site -> struct{}: a stack is logged once per site

	// packetHook, set by tests only, sees every client datagram and TCP
	// frame first: the recover-boundary tests make it panic.
	packetHook atomic.Pointer[func(b []byte)]
}

// clientKey names an allocation by its client transport address.
type clientKey struct {
	udp  bool
	addr netip.AddrPort
}

// New validates cfg and prepares a server; Start binds it.
func New(cfg Config) (*Server, error) {
	st, err := cfg.validate(runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:           st,
		secret:        st.secret,
		static:        newStaticRules(cfg.AllowPeers, cfg.AllowPeerAddrs),
		log:           cfg.Logger,
		players:       map[string]*player{},
		contributions: map[string]map[*player]struct{}{},
		relays:        map[uint16]*relayConn{},
		byClient:      map[clientKey]*relayConn{},
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if len(s.secret) == 0 {
		s.private = true
		s.secret = make([]byte, 32)
		if _, err := rand.Read(s.secret); err != nil {
			return nil, fmt.Errorf("turn: generate secret: %w", err)
		}
	}
	empty := map[netip.AddrPort]*relayConn{}
	s.udpClients.Store(&empty)
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if s.metrics, err = newMetrics(reg, func() []*loop { return s.loops }); err != nil {
		return nil, err
	}
	return s, nil
}

// Start binds the UDP sockets and the TCP listener on the listen port and
// returns once they accept traffic.
func (s *Server) Start() error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("turn: Start called twice")
	}
	s.started = true
	s.mu.Unlock()

	var tlsConf *tls.Config
	if s.cfg.certFile != "" {
		r, err := newCertReloader(s.cfg.certFile, s.cfg.keyFile)
		if err != nil {
			return fmt.Errorf("turn: start: %w", err)
		}
		tlsConf = r.tlsConfig()
		s.tlsOn = true
	}

	// Port 0 (tests): UDP picks the number and TCP must get the same one;
	// retry if something else holds it on TCP.
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		err = s.bindListeners(tlsConf)
		if err == nil || s.cfg.listen.Port() != 0 || !errors.Is(err, unix.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("turn: start on %s: %w", s.cfg.listen, err)
	}

	gen := relayGen{s}
	conf := turn.ServerConfig{
		Realm:        s.cfg.realm,
		AuthHandler:  s.authHandler,
		QuotaHandler: func(user, _ string, _ net.Addr) bool { return s.checkQuota(user) },
		// RFC 8656's default; a client refreshes well before it.
		AllocationLifetime: allocationLifetime,
		EventHandler:       s.eventHandler(),
		LoggerFactory:      pionLoggerFactory{s.log.Named("pion")},
	}
	for _, c := range s.ctrls {
		conf.PacketConnConfigs = append(conf.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn: c, RelayAddressGenerator: gen, PermissionHandler: s.permissionHandler(true)})
	}
	conf.ListenerConfigs = []turn.ListenerConfig{{
		Listener: s.tcp, RelayAddressGenerator: gen, PermissionHandler: s.permissionHandler(false)}}
	if s.pion, err = turn.NewServer(conf); err != nil {
		_ = s.tcp.Close()
		s.releaseUnstarted()
		return fmt.Errorf("turn: start: %w", err)
	}
	for _, l := range s.loops {
		go l.run()
	}
	s.log.Info("TURN server listening", "udp", s.udpAddr, "tcp", s.tcp.Addr(), "tls", s.tlsOn,
		"public_ip", s.cfg.publicIP, "relay_ip", s.cfg.relayIP, "sockets", len(s.loops),
		"socket_buffer", socketBuffer(s.ctrls[0].fd))
	return nil
}

func (s *Server) bindListeners(tlsConf *tls.Config) (err error) {
	s.loops, s.ctrls = nil, nil
	defer func() {
		if err != nil {
			s.releaseUnstarted()
		}
	}()
	addr := s.cfg.listen
	for i := 0; i < s.cfg.sockets; i++ {
		fd, local, err := newUDPSocket(addr, true, s.cfg.sockBuf)
		if err != nil {
			return err
		}
		addr = local
		c := &ctrlConn{srv: s, fd: fd, local: net.UDPAddrFromAddrPort(local),
			in: make(chan slowPacket, 1024), closed: make(chan struct{})}
		l, err := newLoop(s, c)
		if err != nil {
			unix.Close(fd)
			return err
		}
		c.dropped = &l.stats
		s.ctrls = append(s.ctrls, c)
		s.loops = append(s.loops, l)
	}
	s.udpAddr = addr
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return err
	}
	s.tcp = newTCPListener(s, ln, tlsConf, s.cfg.maxTCP, s.cfg.maxTCPAddr)
	return nil
}

// releaseUnstarted closes what bindListeners opened when Start fails
// before the loops run.
func (s *Server) releaseUnstarted() {
	for _, l := range s.loops {
		l.closeFDs()
	}
	for _, c := range s.ctrls {
		unix.Close(c.fd)
	}
	s.loops, s.ctrls = nil, nil
}

func (s *Server) stopLoops() {
	for _, l := range s.loops {
		l.stop.Store(true)
		l.wake()
	}
}

// Close stops the server: allocations are dropped, sockets closed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed || !s.started {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	relays := make([]*relayConn, 0, len(s.relays))
	for _, rc := range s.relays {
		relays = append(relays, rc)
	}
	for _, p := range s.players {
		if p.timer != nil {
			p.timer.Stop() // nothing is left to revoke or forget
		}
	}
	s.mu.Unlock()

	var errs []error
	if s.pion != nil {
		// Closes the control sockets and the TCP listener; pion then closes
		// every allocation, which closes our relay sockets.
		if err := s.pion.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, rc := range relays {
		_ = rc.Close()
	}
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	s.stopLoops()
	for _, l := range s.loops {
		if s.pion != nil {
			<-l.done
		}
		l.closeFDs()
	}
	s.reapWG.Wait()
	for _, c := range s.ctrls {
		_ = c.Close()
		unix.Close(c.fd)
	}
	if len(errs) > 0 {
		return fmt.Errorf("turn: close: %w", errors.Join(errs...))
	}
	return nil
}

// Addr is the UDP/TCP address the server listens on.
func (s *Server) Addr() netip.AddrPort { return s.udpAddr }

// URLs are this server's TURN URLs: UDP and TCP, and turns: when TLS is on.
func (s *Server) URLs() []string {
	host := s.cfg.publicIP.String()
	if s.cfg.publicIP.Is6() {
		host = "[" + host + "]"
	}
	hp := host + ":" + strconv.Itoa(int(s.udpAddr.Port()))
	urls := []string{"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}
	if s.tlsOn {
		urls = append(urls, "turns:"+hp+"?transport=tcp")
	}
	return urls
}

// closeWhenQuiet closes a relay descriptor once no loop can still be using
// it (see loop.seq).
func (s *Server) closeWhenQuiet(fd int) {
	seqs := make([]uint64, len(s.loops))
	for i, l := range s.loops {
		seqs[i] = l.seq.Load()
	}
	quiet := func() bool {
		for i, l := range s.loops {
			if !l.quietSince(seqs[i]) {
				return false
			}
		}
		return true
	}
	if quiet() {
		unix.Close(fd)
		return
	}
	s.reapWG.Add(1)
	go func() {
		defer s.reapWG.Done()
		for !quiet() {
			time.Sleep(time.Millisecond)
		}
		unix.Close(fd)
	}()
}

// authHandler is pion's AuthHandler for TURN REST credentials.
func (s *Server) authHandler(ra *turn.RequestAttributes) (userID string, key []byte, ok bool) {
	defer s.recoverPanic("auth")
	return s.authKey(ra.Username, ra.Realm)
}

// authKey checks a username and returns the long-term key its password
// derives. The returned user id is the whole username, so an allocation is
// tied to the credential that made it (revocation closes exactly those).
func (s *Server) authKey(username, realm string) (string, []byte, bool) {
	fail := func(reason string) (string, []byte, bool) {
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		return "", nil, false
	}
	if realm != s.cfg.realm {
		return fail("realm")
	}
	expiry, id, ok := splitUsername(username)
	if !ok {
		return fail("malformed_username")
	}
	now := time.Now()
	if expiry < now.Unix() {
		return fail("expired")
	}
	s.mu.Lock()
	p := s.players[id]
	revoked := p != nil && p.revokedAt(expiry, now)
	unknown := s.private && (p == nil || !p.minted)
	s.mu.Unlock()
	if revoked {
		return fail("revoked")
	}
	if unknown {
		// Never minted here, or revoked and forgotten.
		return fail("unknown_id")
	}
	pass := restPassword(s.secret, username)
	return username, turn.GenerateAuthKey(username, realm, pass), true
}

// permissionHandler decides CreatePermission and ChannelBind, where only
// the peer IP is known: the IP must be one the streamer advertised to the
// allocation's player, or a static entry.
func (s *Server) permissionHandler(udp bool) turn.PermissionHandler {
	return func(client net.Addr, peerIP net.IP) (allowed bool) {
		defer s.recoverPanic("permission")
		ap, err := addrPortOf(client)
		ip, ok := netip.AddrFromSlice(peerIP)
		if err != nil || !ok {
			s.metrics.deniedPeers.WithLabelValues("malformed").Inc()
			return false
		}
		s.mu.Lock()
		rc := s.byClient[clientKey{udp: udp, addr: ap}]
		s.mu.Unlock()
		set := noPeers
		if rc != nil {
			set = rc.player.set
		}
		allowed, reason := s.static.checkIP(set, ip)
		if !allowed && s.advertisesOwnRelay(set, ip) {
			// An advertised relay socket of this server: each packet is
			// then checked against it (peerAllowed).
			allowed = true
		}
		if !allowed {
			s.metrics.deniedPeers.WithLabelValues(reason).Inc()
			s.log.Info("peer refused", "peer", ip.Unmap(), "reason", reason, "client", ap)
		}
		return allowed
	}
}

func (s *Server) eventHandler() turn.EventHandler {
	return turn.EventHandler{
		OnAuth: func(_, _ net.Addr, _, _, _ string, _ string, verdict bool) {
			if !verdict {
				s.metrics.authFailures.WithLabelValues("bad_credentials").Inc()
			}
		},
		OnAllocationCreated: func(src, _ net.Addr, _, _, _ string, relay net.Addr, _ int) {
			defer s.recoverPanic("allocation_created")
			s.linkAllocation(src, relay)
		},
		OnPermissionCreated: func(src, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			defer s.recoverPanic("permission_created")
			s.metrics.permissions.Inc()
			s.trackPermission(src, relay, peer, true)
		},
		OnPermissionDeleted: func(src, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			defer s.recoverPanic("permission_deleted")
			s.metrics.permissions.Dec()
			s.trackPermission(src, relay, peer, false)
		},
		OnChannelCreated: func(src, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			defer s.recoverPanic("channel_created")
			s.metrics.channels.Inc()
			s.bindChannel(src, relay, peer, num, true)
		},
		OnChannelDeleted: func(src, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			defer s.recoverPanic("channel_deleted")
			s.metrics.channels.Dec()
			s.bindChannel(src, relay, peer, num, false)
		},
	}
}

func (s *Server) relayOf(relay net.Addr) *relayConn {
	ap, err := addrPortOf(relay)
	if err != nil {
		return nil
	}
	return s.relays[ap.Port()]
}

// linkAllocation ties a relay socket to its client, enabling the fast path
// for UDP clients.
func (s *Server) linkAllocation(src, relay net.Addr) {
	ap, err := addrPortOf(src)
	if err != nil {
		return
	}
	_, udp := src.(*net.UDPAddr)
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.relayOf(relay)
	if rc == nil {
		return
	}
	rc.link.Store(&clientLink{addr: ap, raw: toRaw(ap), udp: udp})
	s.byClient[clientKey{udp: udp, addr: ap}] = rc
	if udp {
		// One copy per allocation, bounded by the quotas: never per bind.
		next := copyMap(*s.udpClients.Load())
		next[ap] = rc
		s.udpClients.Store(&next)
	}
	s.metrics.allocations.Inc()
	s.metrics.allocationsTotal.Inc()
}

// trackPermission counts an allocation's permitted peer IPs, which
// screenRequest caps.
func (s *Server) trackPermission(src, relay net.Addr, peer net.IP, add bool) {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.relayOf(relay)
	if rc == nil {
		return
	}
	if add {
		rc.perms[ip.Unmap()] = struct{}{}
	} else {
		delete(rc.perms, ip.Unmap())
	}
}

// bindChannel adds or removes a channel in the allocation's fast-path
// tables: a copy of that allocation's tables only, which screenRequest keeps
// below maxChannels, so a bind costs O(1) whatever the number of channels of
// other allocations.
func (s *Server) bindChannel(src, relay, peer net.Addr, num uint16, add bool) {
	peerAP, err := addrPortOf(peer)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.relayOf(relay)
	if rc == nil {
		return
	}
	chans := copyMap(*rc.chans.Load())
	peers := copyMap(*rc.peers.Load())
	if add {
		if len(chans) >= rc.maxChannels() {
			return // a race past screenRequest: pion still relays it, slowly
		}
		ch := &channel{num: num, relay: rc, peer: peerAP, peerRaw: toRaw(peerAP)}
		peers[peerAP] = ch
		chans[num] = ch
	} else {
		if ch := chans[num]; ch != nil && ch.peer == peerAP {
			delete(chans, num)
		}
		if ch := peers[peerAP]; ch != nil && ch.num == num {
			delete(peers, peerAP)
		}
	}
	rc.chans.Store(&chans)
	rc.peers.Store(&peers)
}

// relayClosed forgets a relay socket's allocation, channels and quota slot.
func (s *Server) relayClosed(rc *relayConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.relays[rc.local.Port()] == rc {
		delete(s.relays, rc.local.Port())
	}
	if link := rc.link.Load(); link != nil {
		k := clientKey{udp: link.udp, addr: link.addr}
		if s.byClient[k] == rc {
			delete(s.byClient, k)
		}
		if cur := *s.udpClients.Load(); link.udp && cur[link.addr] == rc {
			next := copyMap(cur)
			delete(next, link.addr)
			s.udpClients.Store(&next)
		}
		s.metrics.allocations.Dec()
	}
	p := rc.player
	if _, ok := p.relays[rc]; ok {
		delete(p.relays, rc)
		if !p.streamer {
			s.livePlayers--
		}
		s.scheduleForgetLocked(p, time.Now())
	}
}

func copyMap[K comparable, V any](m map[K]V) map[K]V {
	n := make(map[K]V, len(m)+1)
	for k, v := range m {
		n[k] = v
	}
	return n
}
