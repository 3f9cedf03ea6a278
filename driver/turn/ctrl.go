package turn

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// ctrlConn is one UDP socket on the listen port as pion sees it: ReadFrom
// yields the packets the loop does not relay itself (STUN and TURN
// requests, Send indications), WriteTo answers on the same socket.
type ctrlConn struct {
	srv       *Server
	fd        int
	local     *net.UDPAddr
	in        chan slowPacket
	closed    chan struct{}
	closeOnce sync.Once
	dropped   *loopStats
}

func (c *ctrlConn) deliver(p []byte, from netip.AddrPort) {
	bp := packetPool.Get().(*[]byte)
	n := copy(*bp, p)
	select {
	case c.in <- slowPacket{buf: bp, n: n, from: from}:
	default:
		packetPool.Put(bp)
		c.dropped.dropped.Add(1)
	}
}

// ReadFrom implements net.PacketConn for pion's read loop.
func (c *ctrlConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		select {
		case pk := <-c.in:
			n := copy(p, (*pk.buf)[:pk.n])
			packetPool.Put(pk.buf)
			if c.srv.answerOrphanRefresh(c, p[:n], pk.from) {
				continue
			}
			return n, net.UDPAddrFromAddrPort(pk.from), nil
		case <-c.closed:
			return 0, nil, net.ErrClosed
		}
	}
}

// WriteTo implements net.PacketConn.
func (c *ctrlConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, err := addrPortOf(addr)
	if err != nil {
		return 0, err
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	raw := toRaw(ap)
	if err := sendTo(c.fd, p, &raw); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *ctrlConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *ctrlConn) LocalAddr() net.Addr              { return c.local }
func (c *ctrlConn) SetDeadline(time.Time) error      { return nil }
func (c *ctrlConn) SetReadDeadline(time.Time) error  { return nil }
func (c *ctrlConn) SetWriteDeadline(time.Time) error { return nil }

// answerOrphanRefresh answers an authenticated Refresh for an allocation
// that does not exist with 437 (Allocation Mismatch), as RFC 8656 section
// 7.3 requires; pion leaves it unanswered and the client retransmits until
// it times out. Requests that fail authentication go on to pion, which
// answers 401/438 as usual.
func (s *Server) answerOrphanRefresh(c *ctrlConn, p []byte, from netip.AddrPort) bool {
	if len(p) < 20 || p[0]&0xC0 != 0 {
		return false
	}
	m := &stun.Message{Raw: append([]byte(nil), p...)}
	if err := m.Decode(); err != nil || m.Type != stun.NewType(stun.MethodRefresh, stun.ClassRequest) ||
		!m.Contains(stun.AttrMessageIntegrity) {
		return false
	}
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return false
	}
	s.mu.Lock()
	rc := s.byClient[clientKey{udp: true, addr: from}]
	s.mu.Unlock()
	if rc != nil {
		return false
	}
	_, key, ok := s.authKey(user.String(), realm.String())
	if !ok || stun.MessageIntegrity(key).Check(m) != nil {
		return false
	}
	resp, err := stun.Build(&stun.Message{TransactionID: m.TransactionID},
		stun.NewType(stun.MethodRefresh, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeAllocMismatch},
		stun.MessageIntegrity(key))
	if err != nil {
		return false
	}
	_, _ = c.WriteTo(resp.Raw, net.UDPAddrFromAddrPort(from))
	return true
}
