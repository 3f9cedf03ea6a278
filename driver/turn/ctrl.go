package turn

import (
	"net"
	"net/netip"
	"sync"
	"time"
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
			if resp, handled := c.srv.screenRequestSafe(p[:n], pk.from, true); handled {
				if resp != nil {
					_, _ = c.WriteTo(resp, net.UDPAddrFromAddrPort(pk.from))
				}
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
