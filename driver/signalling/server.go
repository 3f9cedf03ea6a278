package signalling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Server is a Pixel Streaming signalling router: it binds the streamer
// endpoint and optionally an SFU endpoint, and takes players from whatever
// serves the player port (AcceptPlayer; the session's is driver/playerhttp).
type Server struct {
	cfg     Config
	limits  Limits
	log     hclog.Logger
	metrics *metrics
	hooks   Hooks // the one copy read after New (cfg.Hooks is not)
	static  json.RawMessage
	started time.Time

	mu           sync.RWMutex
	conns        map[*conn]struct{}
	players      map[string]*conn // players and SFUs, by player id
	streamers    map[string]*conn // listed streamers and SFUs, by streamer id
	order        []*conn          // listed streamers in the order they identified
	nextPlayer   uint64
	nextStreamer uint64
	subscribed   int
	stopping     bool
	connections  atomic.Int64

	wg        sync.WaitGroup // one per live WebSocket reader
	listeners []net.Listener
	servers   []*http.Server
	streamLn  net.Listener
	sfuLn     net.Listener
	stopSweep chan struct{}
	sweepDone chan struct{}
	poll      poll
	pending   atomic.Int64 // bytes held in messages in progress, all connections (MaxPendingBytes)
	panics    sync.Map     // panics already logged with their stack, by place and value

	lnMetrics *listenerMetrics
	quality   *qualityStore // players' quality reports (quality.go)
}

// New validates cfg and returns a server that Start will bind.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("signalling config: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		limits:    cfg.Limits.withDefaults(),
		log:       cfg.Logger,
		hooks:     cfg.Hooks,
		static:    cfg.PeerConnectionOptions,
		conns:     make(map[*conn]struct{}),
		players:   make(map[string]*conn),
		streamers: make(map[string]*conn),
	}
	if s.log == nil {
		s.log = hclog.New(&hclog.LoggerOptions{Name: "signalling"})
	}
	if len(s.static) == 0 {
		s.static = json.RawMessage(`{}`)
	} else {
		compact, err := compactJSON(s.static)
		if err != nil {
			return nil, fmt.Errorf("signalling config: PeerConnectionOptions: %w", err)
		}
		s.static = compact
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		s.cfg.Registry = reg
	}
	m, err := newMetrics(reg, s)
	if err != nil {
		return nil, fmt.Errorf("signalling metrics: %w", err)
	}
	s.metrics = m
	if s.quality, err = newQualityStore(reg); err != nil {
		return nil, err
	}
	if s.lnMetrics, err = newListenerMetrics(reg); err != nil {
		return nil, fmt.Errorf("signalling metrics: %w", err)
	}
	return s, nil
}

// Start binds the streamer (and SFU) endpoints and serves them in the
// background. It returns once all listeners are bound.
func (s *Server) Start() error {
	bind := func(name, addr string, caps connCaps) (net.Listener, error) {
		ln, err := s.listen(name, addr, caps)
		if err != nil {
			for _, l := range s.listeners {
				_ = l.Close()
			}
			return nil, err
		}
		s.listeners = append(s.listeners, ln)
		return ln, nil
	}
	var err error
	// The streamer and SFU ports (loopback in a session) each have a budget
	// of their own, apart from the player port's (ListenPlayers), so no
	// number of players can keep the streamer out.
	streamers := connCaps{total: s.limits.MaxStreamerConnections}
	if s.streamLn, err = bind("streamer", s.cfg.StreamerListen, streamers); err != nil {
		return err
	}
	if s.cfg.SFUListen != "" {
		if s.sfuLn, err = bind("sfu", s.cfg.SFUListen, streamers); err != nil {
			return err
		}
	}
	s.started = time.Now()
	if forceGoroutinePoll {
		s.poll = goroutinePoll{}
	} else {
		s.poll = newPoll()
	}
	s.serve(s.streamLn, s.wsOnly(roleStreamer))
	if s.sfuLn != nil {
		s.serve(s.sfuLn, s.wsOnly(roleSFU))
	}
	s.stopSweep = make(chan struct{})
	s.sweepDone = make(chan struct{})
	go s.keepalive()
	s.log.Info("signalling server listening", "streamer", s.streamLn.Addr().String(), "sfu", addrString(s.sfuLn))
	return nil
}

// listen binds one endpoint and puts its connection caps around it. Every
// listener the server serves is made here, so that TLS for an endpoint is a
// wrapper around what this returns, outside the caps (they count TCP
// connections, handshakes included).
func (s *Server) listen(name, addr string, caps connCaps) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s endpoint on %s: %w", name, addr, err)
	}
	return newCapListener(ln, name, caps, s.lnMetrics, s.log), nil
}

// ListenPlayers binds the player port with the players' connection caps
// (MaxConnectionsPerAddress, MaxPlayerConnections), counted in this
// server's listener metrics. The player port's server owns the listener.
func (s *Server) ListenPlayers(addr string) (net.Listener, error) {
	return s.listen("player", addr, connCaps{perAddress: s.limits.MaxConnectionsPerAddress, total: s.limits.MaxPlayerConnections})
}

// Limits returns the limits in force, defaults filled in: the player port's
// server takes its HTTP timeouts and header caps from them.
func (s *Server) Limits() Limits { return s.limits }

// NewHTTPServer returns an HTTP server for one of the session's ports. Every
// phase of a request has a deadline and idle keep-alive connections are
// closed, so connections cannot be parked on the server; a WebSocket upgrade
// clears these deadlines when it takes the connection over (TakeOver) and
// the WebSocket code sets its own.
func NewHTTPServer(l Limits, h http.Handler, log hclog.Logger) *http.Server {
	l = l.withDefaults()
	return &http.Server{
		Handler:           limitURL(l, h),
		ReadHeaderTimeout: l.HTTPReadHeaderTimeout,
		ReadTimeout:       l.HTTPReadTimeout,
		WriteTimeout:      l.HTTPWriteTimeout,
		IdleTimeout:       l.HTTPIdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
}

// serve runs an HTTP server (NewHTTPServer) on ln.
func (s *Server) serve(ln net.Listener, h http.Handler) {
	hs := NewHTTPServer(s.limits, h, s.log)
	s.servers = append(s.servers, hs)
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "addr", ln.Addr().String(), "error", err)
		}
	}()
}

func addrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// StreamerAddr is the bound streamer endpoint.
func (s *Server) StreamerAddr() net.Addr { return s.streamLn.Addr() }

// SFUAddr is the bound SFU endpoint, or nil when it is disabled.
func (s *Server) SFUAddr() net.Addr {
	if s.sfuLn == nil {
		return nil
	}
	return s.sfuLn.Addr()
}

// Shutdown stops accepting, closes every peer with a close frame (players
// see "going away" and do not reconnect), and waits for them until ctx ends;
// stragglers are then dropped.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	var errs []error
	for _, hs := range s.servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop http server: %w", err))
		}
	}
	if s.stopSweep != nil {
		close(s.stopSweep)
		<-s.sweepDone
	}
	for _, c := range conns {
		c.close(closeGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.RLock()
		left := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			left = append(left, c)
		}
		s.mu.RUnlock()
		for _, c := range left {
			c.kill()
		}
		<-done
		errs = append(errs, fmt.Errorf("signalling shutdown: peers dropped without a close handshake: %w", ctx.Err()))
	}
	if s.poll != nil {
		s.poll.stop()
	}
	return errors.Join(errs...)
}

// AcceptPlayer takes a player WebSocket upgrade request over: the player
// port's server calls it once the request passed its checks (token, origin).
func (s *Server) AcceptPlayer(w http.ResponseWriter, r *http.Request) {
	TakeOver(w)
	s.accept(w, r, rolePlayer)
}

// accept upgrades an HTTP request to a WebSocket peer of the given role and
// runs its reader until it goes away.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, rl role) {
	nc, early, err := upgrade(w, r)
	if err != nil {
		s.metrics.reject(rl, reasonBadUpgrade)
		s.log.Debug("refused WebSocket upgrade", "role", rl, "remote", r.RemoteAddr, "error", err)
		return
	}
	now := time.Now()
	c := &conn{
		srv:       s,
		nc:        nc,
		role:      rl,
		remote:    r.RemoteAddr,
		connected: now,
		refilled:  now,
		maxQueue:  s.limits.SendQueue,
		maxBytes:  s.limits.SendQueueBytes,
		rate:      s.limits.MessagesPerSecond,
		burst:     float64(s.limits.Burst),
	}
	c.epfd = -1
	if rl == roleStreamer {
		// A streamer got here through vetStreamer: with a StreamerKey
		// configured it presented it (and came from the session's user).
		c.keyed = true
		c.maxQueue, c.maxBytes = s.limits.StreamerSendQueue, s.limits.StreamerSendQueueBytes
		c.rate, c.burst = s.limits.StreamerMessagesPerSecond, float64(s.limits.StreamerBurst)
	}
	c.tokens = c.burst
	c.lastSeen.Store(now.UnixNano())

	// Streamers are never refused here: their port has its own budget
	// (MaxStreamerConnections, listener.go), so players filling this cap
	// cannot keep the streamer out.
	if n := s.connections.Add(1); n > int64(s.limits.MaxConnections) && rl != roleStreamer {
		s.connections.Add(-1)
		s.metrics.reject(rl, reasonMaxConnections)
		s.log.Warn("refusing connection: too many connections", "role", rl, "max", s.limits.MaxConnections)
		writeCloseNow(nc, closeTryAgainLater, fmt.Sprintf("too many connections (max %d)", s.limits.MaxConnections))
		return
	}
	if !s.register(c) {
		s.connections.Add(-1)
		writeCloseNow(nc, closeGoingAway, "server shutting down")
		return
	}
	s.metrics.connected(rl, 1)
	// From here the poll reads the socket; this handler's goroutine, with
	// the HTTP server's request state and buffers, ends.
	// A client that did not wait for our handshake answer sent frames with
	// its request: they are read first (source), then the socket.
	c.early = early
	p := s.poll
	if _, ok := c.nc.(syscall.Conn); !ok {
		// A TLS connection's bytes must pass through crypto/tls: it is read
		// on a goroutine of its own, not from its socket by epoll.
		p = goroutinePoll{}
	}
	_, blocking := p.(goroutinePoll)
	armed := blocking || len(early) == 0
	if err := p.add(c, armed); err != nil {
		s.log.Error("cannot read connection", "error", err)
		c.kill()
		return
	}
	if !armed {
		go c.readWake() // the socket may stay quiet: read the early frames now
	}
}

// register adds a new peer and greets it: players get config, streamers and
// SFUs identify then config.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return false
	}
	s.wg.Add(1)
	s.conns[c] = struct{}{}
	switch c.role {
	case rolePlayer, roleSFU:
		s.nextPlayer++
		c.playerID = fmt.Sprintf("%d", s.nextPlayer)
		s.players[c.playerID] = c
	}
	if c.role == roleStreamer {
		s.nextStreamer++
		c.key = fmt.Sprintf("streamer-%d", s.nextStreamer)
	}
	switch c.role {
	case rolePlayer:
		if d := s.limits.SubscribeTimeout; d > 0 {
			c.timer = time.AfterFunc(d, func() { s.deadlinePassed(c, reasonSubscribeTimeout, fmt.Sprintf("no subscribe within %s", d)) })
		}
	case roleStreamer:
		if d := s.limits.IdentifyTimeout; d > 0 {
			c.timer = time.AfterFunc(d, func() { s.deadlinePassed(c, reasonIdentifyTimeout, fmt.Sprintf("no endpointId within %s", d)) })
		}
	}
	s.mu.Unlock()

	switch c.role {
	case rolePlayer:
		opts := s.static
		if f := s.hooks.PlayerPeerOptions; f != nil {
			s.callHook(c, func() {
				if o := f(c.playerID); len(o) > 0 {
					opts = o
				}
			})
		}
		c.send(msgConfig(opts))
		s.log.Debug("player connected", "player", c.playerID, "remote", c.remote)
	default:
		opts := s.static
		if f := s.hooks.StreamerPeerOptions; f != nil && c.key != "" {
			s.callHook(c, func() {
				if o := f(c.key); len(o) > 0 {
					opts = o
				}
			})
		}
		c.send(msgIdentify())
		c.send(msgConfig(opts))
		s.log.Debug("connected", "role", c.role, "remote", c.remote)
	}
	return true
}

func (s *Server) deadlinePassed(c *conn, reason, text string) {
	defer s.recoverPeer(c, "timer")
	s.mu.RLock()
	done := c.listed || c.sub != nil
	s.mu.RUnlock()
	if done {
		return
	}
	s.metrics.reject(c.role, reason)
	s.log.Info("closing connection", "role", c.role, "player", c.playerID, "reason", text)
	c.close(closePolicy, text)
}

// keepalive pings every peer on one timer and drops those that stopped answering.
func (s *Server) keepalive() {
	defer close(s.sweepDone)
	t := time.NewTicker(s.limits.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopSweep:
			return
		case now := <-t.C:
			cutoff := now.Add(-s.limits.PongTimeout).UnixNano()
			var dead []*conn
			s.mu.RLock()
			for c := range s.conns {
				if c.lastSeen.Load() < cutoff {
					dead = append(dead, c)
					continue
				}
				c.enqueue(outFrame{kind: framePing})
			}
			s.mu.RUnlock()
			for _, c := range dead {
				s.metrics.reject(c.role, reasonPingTimeout)
				s.log.Info("dropping peer that stopped answering pings", "role", c.role, "player", c.playerID, "remote", c.remote)
				c.kill()
			}
		}
	}
}

// Registry is the registry holding the router's metrics (Config.Registry,
// or the private one New made): what the session's /metrics serves.
func (s *Server) Registry() *prometheus.Registry { return s.cfg.Registry }
