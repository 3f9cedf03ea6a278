package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// tcpListener serves TURN over TCP and TLS on the same port: the first
// byte tells them apart (a TLS record starts with 0x16, a STUN message with
// 0b00, ChannelData with 0b01). It also bounds concurrent connections and
// the time a client may take to send that first byte.
type tcpListener struct {
	ln      net.Listener
	tlsConf *tls.Config // nil: no TLS
	log     hclog.Logger
	slots   chan struct{}
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	refused atomic.Uint64

	mu   sync.Mutex
	live map[*countedConn]struct{} // closed with the listener: a stopped server keeps no client
}

const firstByteTimeout = 10 * time.Second

func newTCPListener(ln net.Listener, tlsConf *tls.Config, maxConns int, log hclog.Logger) *tcpListener {
	t := &tcpListener{ln: ln, tlsConf: tlsConf, log: log,
		slots: make(chan struct{}, maxConns), conns: make(chan net.Conn), done: make(chan struct{}),
		live: map[*countedConn]struct{}{}}
	go t.acceptLoop()
	return t
}

func (t *tcpListener) acceptLoop() {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				t.log.Warn("tcp accept failed; TCP listener stopped", "error", err)
			}
			t.Close()
			return
		}
		select {
		case t.slots <- struct{}{}:
		default:
			t.refused.Add(1)
			_ = c.Close()
			continue
		}
		cc := &countedConn{Conn: c}
		cc.release = func() {
			t.mu.Lock()
			delete(t.live, cc)
			t.mu.Unlock()
			<-t.slots
		}
		t.mu.Lock()
		t.live[cc] = struct{}{}
		t.mu.Unlock()
		go t.classify(cc)
	}
}

func (t *tcpListener) classify(c *countedConn) {
	_ = c.SetReadDeadline(time.Now().Add(firstByteTimeout))
	var first [1]byte
	if _, err := c.Conn.Read(first[:]); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	c.peeked = first[:]
	var conn net.Conn = c
	if first[0] == 0x16 {
		if t.tlsConf == nil {
			_ = c.Close()
			return
		}
		conn = tls.Server(c, t.tlsConf)
	}
	select {
	case t.conns <- conn:
	case <-t.done:
		_ = conn.Close()
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
	peeked  []byte
	release func()
	once    sync.Once
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
