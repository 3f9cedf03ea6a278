package turn

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// tcpListener serves TURN over TCP and TLS on the same port: the first
// byte tells them apart (a TLS record starts with 0x16, a STUN message with
// 0b00, ChannelData with 0b01). It bounds connections in total and per
// client address, gives every frame a deadline (not only the first byte),
// and its accept loop outlives EMFILE. At the total cap a new connection
// evicts the oldest one that has not yet been seen with an allocation, so
// idle connections spread over many addresses (each under the per-address
// cap) cannot lock real clients out.
type tcpListener struct {
	ln      net.Listener
	srv     *Server
	tlsConf *tls.Config // nil: no TLS
	log     hclog.Logger
	maxAddr int
	slots   chan struct{}
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once

	mu     sync.Mutex
	live   map[*countedConn]struct{} // closed with the listener: a stopped server keeps no client
	byAddr map[netip.Prefix]int
}

// TCP timeouts. A frame must arrive whole within Config.TCPFrameTimeout of
// its first byte, so a client trickling bytes holds its slot for seconds,
// not forever. Between frames a connection may idle for TCPIdleTimeout
// before it has an allocation, and for an allocation's lifetime once it has
// one (a client refreshes well within it).
const (
	firstByteTimeout   = 10 * time.Second
	writeTimeout       = 5 * time.Second
	allocationLifetime = 10 * time.Minute
	// Accept back-off after an error such as EMFILE: doubling, capped.
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

func newTCPListener(srv *Server, ln net.Listener, tlsConf *tls.Config, maxConns, maxPerAddr int) *tcpListener {
	t := &tcpListener{ln: ln, srv: srv, tlsConf: tlsConf, log: srv.log, maxAddr: maxPerAddr,
		slots: make(chan struct{}, maxConns), conns: make(chan net.Conn), done: make(chan struct{}),
		live: map[*countedConn]struct{}{}, byAddr: map[netip.Prefix]int{}}
	go t.acceptLoop()
	return t
}

// addrKey is what the per-address cap counts by: the IPv4 address, or the
// IPv6 /64 (one subscriber line holds a whole /64).
func addrKey(a net.Addr) netip.Prefix {
	ap, err := addrPortOf(a)
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

func (t *tcpListener) acceptLoop() {
	defer t.srv.recoverPanic("tcp_accept")
	backoff := time.Duration(0)
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE, ENFILE, ENOBUFS, ECONNABORTED...: the listener is fine,
			// the moment is not. Wait and go on; never stop serving.
			t.srv.metrics.acceptErrors.Inc()
			if backoff == 0 {
				t.log.Warn("tcp accept failed; retrying with back-off", "error", err)
				backoff = acceptBackoffMin
			} else {
				backoff = min(2*backoff, acceptBackoffMax)
			}
			select {
			case <-time.After(backoff):
				continue
			case <-t.done:
				return
			}
		}
		if backoff != 0 {
			t.log.Info("tcp accept working again")
			backoff = 0
		}
		t.admit(c)
	}
}

// admit applies the caps and starts the connection's own goroutine; a bug
// here drops that connection, never the accept loop.
func (t *tcpListener) admit(c net.Conn) {
	defer func() {
		if r := recover(); r != nil {
			_ = c.Close()
			t.srv.panicked("tcp_accept", r)
		}
	}()
	key := addrKey(c.RemoteAddr())
	t.mu.Lock()
	if t.byAddr[key] >= t.maxAddr {
		t.mu.Unlock()
		t.srv.metrics.tcpRefused.WithLabelValues("per_address").Inc()
		_ = c.Close()
		return
	}
	if !t.takeSlotLocked() {
		t.mu.Unlock()
		t.srv.metrics.tcpRefused.WithLabelValues("total").Inc()
		_ = c.Close()
		return
	}
	cc := &countedConn{Conn: c, admitted: time.Now()}
	cc.release = func() {
		t.mu.Lock()
		delete(t.live, cc)
		if t.byAddr[key]--; t.byAddr[key] <= 0 {
			delete(t.byAddr, key)
		}
		t.mu.Unlock()
		<-t.slots
	}
	t.live[cc] = struct{}{}
	t.byAddr[key]++
	t.mu.Unlock()
	go t.classify(cc)
}

// takeSlotLocked takes a connection slot, evicting the oldest connection
// that has no allocation when all are taken. t.mu is held on entry and on
// return; it is let go while a victim closes (its release takes t.mu).
func (t *tcpListener) takeSlotLocked() bool {
	for attempt := 0; attempt < 4; attempt++ {
		select {
		case t.slots <- struct{}{}:
			return true
		default:
		}
		var victim *countedConn
		for c := range t.live {
			if !c.proven.Load() && !c.evicted.Load() && (victim == nil || c.admitted.Before(victim.admitted)) {
				victim = c
			}
		}
		if victim == nil {
			return false // every connection carries an allocation: a real load, refuse
		}
		victim.evicted.Store(true)
		t.mu.Unlock()
		t.srv.metrics.tcpRefused.WithLabelValues("evicted").Inc()
		_ = victim.Close()
		t.mu.Lock()
	}
	return false
}

// classify runs per connection until pion takes it over.
func (t *tcpListener) classify(c *countedConn) {
	defer func() {
		if r := recover(); r != nil {
			_ = c.Close()
			t.srv.panicked("tcp_conn", r)
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(min(firstByteTimeout, t.srv.cfg.idleTimeout)))
	var first [1]byte
	if _, err := c.Conn.Read(first[:]); err != nil {
		_ = c.Close()
		return
	}
	c.peeked = first[:]
	var conn net.Conn = c
	if first[0] == 0x16 {
		if t.tlsConf == nil {
			_ = c.Close()
			return
		}
		tc := tls.Server(c, t.tlsConf)
		// The whole handshake within the first-byte budget.
		ctx, cancel := context.WithTimeout(context.Background(), firstByteTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			_ = c.Close()
			return
		}
		conn = tc
	}
	fc := newFrameConn(t.srv, conn, c)
	select {
	case t.conns <- fc:
	case <-t.done:
		_ = fc.Close()
	}
}

// Accept implements net.Listener for pion.
func (t *tcpListener) Accept() (net.Conn, error) {
	select {
	case c := <-t.conns:
		return c, nil
	case <-t.done:
		return nil, net.ErrClosed
	}
}

func (t *tcpListener) Close() error {
	var err error
	t.once.Do(func() {
		close(t.done)
		err = t.ln.Close()
		t.mu.Lock()
		live := make([]*countedConn, 0, len(t.live))
		for c := range t.live {
			live = append(live, c)
		}
		t.mu.Unlock()
		for _, c := range live {
			_ = c.Close()
		}
	})
	return err
}

func (t *tcpListener) Addr() net.Addr { return t.ln.Addr() }

// countedConn returns its slot on Close and replays the sniffed byte.
type countedConn struct {
	net.Conn
	peeked   []byte
	release  func()
	once     sync.Once
	admitted time.Time
	proven   atomic.Bool // seen with an allocation: never evicted for a newcomer
	evicted  atomic.Bool
}

func (c *countedConn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 && len(p) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// frameConn is what pion reads a TCP client through: one whole frame per
// Read, each under its own deadline, requests screened before pion sees
// them (screenRequest), and a deadline on every write. Its buffers are the
// connection's byte budget: about 4 KiB.
type frameConn struct {
	net.Conn
	srv     *Server
	r       *bufio.Reader
	buf     []byte
	client  netip.AddrPort
	counted *countedConn
}

func newFrameConn(srv *Server, c net.Conn, counted *countedConn) *frameConn {
	ap, _ := addrPortOf(c.RemoteAddr())
	return &frameConn{Conn: c, srv: srv, r: bufio.NewReaderSize(c, 2048), buf: make([]byte, maxFrame), client: ap, counted: counted}
}

// Read returns the next frame. pion's STUN framing on top sees whole frames.
func (f *frameConn) Read(p []byte) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			f.srv.panicked("tcp_conn", r)
			n, err = 0, errors.New("turn: internal error on this connection")
		}
	}()
	for {
		if f.r.Buffered() == 0 {
			idle := f.srv.cfg.idleTimeout
			f.srv.mu.Lock()
			if f.srv.byClient[clientKey{addr: f.client}] != nil {
				// An authenticated Allocate succeeded on this connection.
				idle = allocationLifetime
				f.counted.proven.Store(true)
			}
			f.srv.mu.Unlock()
			_ = f.Conn.SetReadDeadline(time.Now().Add(idle))
		}
		frame, err := readFrame(f.r, f.buf, func() { _ = f.Conn.SetReadDeadline(time.Now().Add(f.srv.cfg.frameTimeout)) })
		if err != nil {
			return 0, err
		}
		if h := f.srv.packetHook.Load(); h != nil {
			(*h)(frame)
		}
		if resp := f.srv.screenRequest(frame, f.client, false); resp != nil {
			if _, err := f.Write(resp); err != nil {
				return 0, err
			}
			continue
		}
		if len(frame) > len(p) {
			return 0, errFrameTooLarge
		}
		return copy(p, frame), nil
	}
}

// Write sends with a deadline, so a client that stops reading cannot park
// pion's writers.
func (f *frameConn) Write(p []byte) (int, error) {
	_ = f.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return f.Conn.Write(p)
}

// certReloader serves the certificate from files a Nomad template may
// rewrite; it re-reads them when their modification time changes.
type certReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	certMod, keyMod   time.Time
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ci, err := os.Stat(r.certFile)
	if err != nil {
		return r.stale(fmt.Errorf("CertFile: %w", err))
	}
	ki, err := os.Stat(r.keyFile)
	if err != nil {
		return r.stale(fmt.Errorf("KeyFile: %w", err))
	}
	if r.cert != nil && ci.ModTime().Equal(r.certMod) && ki.ModTime().Equal(r.keyMod) {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return r.stale(fmt.Errorf("CertFile/KeyFile: %w", err))
	}
	r.cert, r.certMod, r.keyMod = &cert, ci.ModTime(), ki.ModTime()
	return r.cert, nil
}

// stale keeps serving the last good certificate while the files are being
// rewritten.
func (r *certReloader) stale(err error) (*tls.Certificate, error) {
	if r.cert != nil {
		return r.cert, nil
	}
	return nil, err
}

func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.get() },
	}
}
