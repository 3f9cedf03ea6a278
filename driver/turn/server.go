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

	chans atomic.Pointer[map[chanKey]*channel] // copy-on-write under mu

	mu           sync.Mutex
	players      map[string]*player
	reservations []quotaReservation
	live         int
	created      int
	relays       map[uint16]*relayConn // by relay port
	byClient     map[clientKey]*relayConn
	started      bool
	closed       bool
	reapWG       sync.WaitGroup
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
		cfg:      st,
		secret:   st.secret,
		static:   newStaticRules(cfg.AllowPeers, cfg.AllowPeerAddrs),
		log:      cfg.Logger,
		players:  map[string]*player{},
		relays:   map[uint16]*relayConn{},
		byClient: map[clientKey]*relayConn{},
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if len(s.secret) == 0 {
		s.secret = make([]byte, 32)
		if _, err := rand.Read(s.secret); err != nil {
			return nil, fmt.Errorf("turn: generate secret: %w", err)
		}
	}
	empty := map[chanKey]*channel{}
	s.chans.Store(&empty)
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
		Realm:         s.cfg.realm,
		AuthHandler:   s.authHandler,
		QuotaHandler:  func(user, _ string, _ net.Addr) bool { return s.checkQuota(user) },
		EventHandler:  s.eventHandler(),
		LoggerFactory: pionLoggerFactory{s.log.Named("pion")},
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
	s.tcp = newTCPListener(ln, tlsConf, s.cfg.maxTCP, s.log)
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
func (s *Server) authHandler(ra *turn.RequestAttributes) (string, []byte, bool) {
	userID, key, ok := s.authKey(ra.Username, ra.Realm)
	return userID, key, ok
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
	s.mu.Unlock()
	if revoked {
		return fail("revoked")
	}
	pass := restPassword(s.secret, username)
	return username, turn.GenerateAuthKey(username, realm, pass), true
}

// permissionHandler decides CreatePermission and ChannelBind, where only
// the peer IP is known: the IP must be one the streamer advertised to the
// allocation's player, or a static entry.
func (s *Server) permissionHandler(udp bool) turn.PermissionHandler {
	return func(client net.Addr, peerIP net.IP) bool {
		ap, err := addrPortOf(client)
		ip, ok := netip.AddrFromSlice(peerIP)
		if err != nil || !ok {
			s.metrics.deniedPeers.WithLabelValues("malformed").Inc()
			return false
		}
		s.mu.Lock()
		rc := s.byClient[clientKey{udp: udp, addr: ap}]
		s.mu.Unlock()
		set := emptyPeerSet
		if rc != nil {
			set = rc.player.set.Load()
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
			s.linkAllocation(src, relay)
		},
		OnPermissionCreated: func(_, _ net.Addr, _, _, _ string, _ net.Addr, _ net.IP) { s.metrics.permissions.Inc() },
		OnPermissionDeleted: func(_, _ net.Addr, _, _, _ string, _ net.Addr, _ net.IP) { s.metrics.permissions.Dec() },
		OnChannelCreated: func(src, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			s.metrics.channels.Inc()
			s.bindChannel(src, relay, peer, num, true)
		},
		OnChannelDeleted: func(src, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
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
	s.metrics.allocations.Inc()
	s.metrics.allocationsTotal.Inc()
}

// bindChannel adds or removes a channel in the fast-path tables.
func (s *Server) bindChannel(src, relay, peer net.Addr, num uint16, add bool) {
	client, err1 := addrPortOf(src)
	peerAP, err2 := addrPortOf(peer)
	if err1 != nil || err2 != nil {
		return
	}
	_, udp := src.(*net.UDPAddr)
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.relayOf(relay)
	if rc == nil {
		return
	}
	key := chanKey{client: client, num: num}
	chans := copyMap(*s.chans.Load())
	peers := copyMap(*rc.peers.Load())
	if add {
		ch := &channel{key: key, relay: rc, peer: peerAP, peerRaw: toRaw(peerAP)}
		peers[peerAP] = ch
		if udp {
			chans[key] = ch
		}
	} else {
		delete(peers, peerAP)
		if chans[key] != nil && chans[key].relay == rc {
			delete(chans, key)
		}
	}
	s.chans.Store(&chans)
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
		s.metrics.allocations.Dec()
	}
	chans := *s.chans.Load()
	var next map[chanKey]*channel
	for k, ch := range chans {
		if ch.relay == rc {
			if next == nil {
				next = copyMap(chans)
			}
			delete(next, k)
		}
	}
	if next != nil {
		s.chans.Store(&next)
	}
	if _, ok := rc.player.relays[rc]; ok {
		delete(rc.player.relays, rc)
		s.live--
	}
}

func copyMap[K comparable, V any](m map[K]V) map[K]V {
	n := make(map[K]V, len(m)+1)
	for k, v := range m {
		n[k] = v
	}
	return n
}
