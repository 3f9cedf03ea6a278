package signalling

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a listener refuses a connection, the label of
// pixelstream_signalling_connections_refused_total.
const (
	refusedPerAddress = "per_address"
	refusedTotal      = "total"
)

// connCaps are the connection caps of one listener. They count TCP
// connections from accept to close, so idle HTTP keep-alive connections and
// upgraded WebSockets count alike.
type connCaps struct {
	// perAddress caps the connections one remote address holds: an IPv4
	// address, or an IPv6 /64 (what one subscriber usually gets). 0: no cap.
	perAddress int
	// total caps the listener's connections together. 0: no cap.
	total int
}

// listenerMetrics count what the caps and the accept loop did.
type listenerMetrics struct {
	refused      *prometheus.CounterVec // listener, reason
	acceptErrors *prometheus.CounterVec // listener
	open         *prometheus.GaugeVec   // listener
}

func newListenerMetrics(reg prometheus.Registerer) (*listenerMetrics, error) {
	const ns = "pixelstream_signalling"
	m := &listenerMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_refused_total",
			Help: "TCP connections closed at accept because a connection cap was reached, by listener and cap."}, []string{"listener", "reason"}),
		acceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "accept_errors_total",
			Help: "Temporary accept failures (out of file descriptors, buffers or memory) the accept loop backed off from, by listener."}, []string{"listener"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "tcp_connections",
			Help: "Open TCP connections (HTTP and WebSocket), by listener."}, []string{"listener"}),
	}
	for _, c := range []prometheus.Collector{m.refused, m.acceptErrors, m.open} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metric: %w", err)
		}
	}
	return m, nil
}

// Accept backoff after a temporary failure such as EMFILE: short at first
// (a burst of closes frees descriptors quickly), capped so a long shortage
// costs a wake-up a second, not a spinning core.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// maxRefusing bounds the refused connections being answered (503, then a
// short drain so the answer is not lost to a reset) at one time; beyond it a
// refused connection is just closed, so a flood costs no more than a close.
const maxRefusing = 32

// refuseDrain bounds how long and how much a refused connection is read
// after its 503 before it is closed.
const (
	refuseDrainTime  = 500 * time.Millisecond
	refuseDrainBytes = 16 << 10
)

// capListener wraps a listener with connection caps and an accept loop
// that survives running out of file descriptors.
type capListener struct {
	net.Listener
	name    string
	caps    connCaps
	log     hclog.Logger
	refused map[string]prometheus.Counter
	errs    prometheus.Counter
	open    prometheus.Gauge

	mu     sync.Mutex
	byAddr map[netip.Prefix]int
	total  int

	refusing  chan struct{} // semaphore of refusals being answered
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

func newCapListener(ln net.Listener, name string, caps connCaps, m *listenerMetrics, log hclog.Logger) *capListener {
	return &capListener{
		Listener: ln,
		name:     name,
		caps:     caps,
		log:      log,
		refused: map[string]prometheus.Counter{
			refusedPerAddress: m.refused.WithLabelValues(name, refusedPerAddress),
			refusedTotal:      m.refused.WithLabelValues(name, refusedTotal),
		},
		errs:     m.acceptErrors.WithLabelValues(name),
		open:     m.open.WithLabelValues(name),
		byAddr:   make(map[netip.Prefix]int),
		refusing: make(chan struct{}, maxRefusing),
		done:     make(chan struct{}),
	}
}

// Accept returns the next connection within the caps. Connections over a
// cap are answered and closed here and never reach the HTTP server.
// Temporary failures (EMFILE and the like) are retried with backoff rather
// than returned, so no caller can end the accept loop over them.
func (l *capListener) Accept() (net.Conn, error) {
	backoff := time.Duration(0)
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			if !temporaryAcceptError(err) {
				return nil, err
			}
			l.errs.Inc()
			if backoff == 0 {
				backoff = acceptBackoffMin
				l.log.Warn("accept failed; backing off until resources free up", "listener", l.name, "error", err)
			} else {
				backoff = min(2*backoff, acceptBackoffMax)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		if backoff != 0 {
			l.log.Info("accepting again", "listener", l.name)
			backoff = 0
		}
		key, keyed := addrKey(nc.RemoteAddr())
		if reason := l.admit(key, keyed); reason != "" {
			l.refused[reason].Inc()
			l.log.Debug("refusing connection over the cap", "listener", l.name, "remote", nc.RemoteAddr().String(), "cap", reason)
			l.refuse(nc)
			continue
		}
		l.open.Inc()
		return &countedConn{Conn: nc, l: l, key: key, keyed: keyed}, nil
	}
}

// Close stops Accept, including one waiting out a backoff.
func (l *capListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// admit counts a new connection in, or says which cap refuses it.
func (l *capListener) admit(key netip.Prefix, keyed bool) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.caps.total > 0 && l.total >= l.caps.total {
		return refusedTotal
	}
	if keyed && l.caps.perAddress > 0 && l.byAddr[key] >= l.caps.perAddress {
		return refusedPerAddress
	}
	l.total++
	if keyed {
		l.byAddr[key]++
	}
	return ""
}

func (l *capListener) release(key netip.Prefix, keyed bool) {
	l.mu.Lock()
	l.total--
	if keyed {
		if n := l.byAddr[key] - 1; n > 0 {
			l.byAddr[key] = n
		} else {
			delete(l.byAddr, key)
		}
	}
	l.mu.Unlock()
	l.open.Dec()
}

// refuse answers a connection over a cap with 503 and Retry-After when few
// refusals are in flight, else just closes it. The answer is written before
// the request is read (HTTP/1.1 clients read a response that comes early),
// then the request is drained briefly so closing does not reset the
// connection and destroy the answer before the client reads it.
func (l *capListener) refuse(nc net.Conn) {
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = nc.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer nc.Close()
		const body = "503 service unavailable: too many connections from your address, or to this server; retry later\n"
		_ = nc.SetDeadline(time.Now().Add(refuseDrainTime))
		if _, err := io.WriteString(nc, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n"+
			"Content-Type: text/plain; charset=utf-8\r\nContent-Length: "+fmt.Sprint(len(body))+"\r\n\r\n"+body); err != nil {
			return
		}
		if cw, ok := nc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(nc, refuseDrainBytes))
	}()
}

// addrKey is the unit a per-address cap counts: an IPv4 address or an IPv6
// /64. IPv4-mapped IPv6 addresses count as their IPv4 address.
func addrKey(a net.Addr) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}, false // not an IP connection (tests with pipes)
	}
	ip := ap.Addr().Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p, true
}

// temporaryAcceptError reports an accept failure that resources freeing up
// will cure: out of descriptors (process or system), buffers or memory.
func temporaryAcceptError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// countedConn releases its place under the caps when closed, once.
type countedConn struct {
	net.Conn
	l      *capListener
	key    netip.Prefix
	keyed  bool
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.key, c.keyed)
	}
	return err
}

// SyscallConn exposes the socket to the WebSocket read loops (epoll), as
// the unwrapped connection would.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// CloseWrite half-closes a TCP connection, as the unwrapped one would.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("connection cannot half-close")
}
