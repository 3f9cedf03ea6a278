package turn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The relay loops are the data plane. Each loop owns one epoll instance, one
// of the SO_REUSEPORT UDP sockets on the listen port, and a share of the
// relay sockets. ChannelData from UDP clients and datagrams from bound peers
// are relayed here without entering pion: batched reads (recvmmsg), batched
// writes to clients (sendmmsg), no goroutine wake-up per packet, no
// allocation per packet. Everything else (STUN/TURN requests, Send and Data
// indications, clients on TCP) is handed to pion's goroutines.

const (
	batchSize  = 32
	maxSend    = 128
	packetSize = 1600 + channelHeader // pion's inbound MTU plus room for the header
	// channelHeader is the ChannelData header (channel number, length).
	channelHeader = 4
)

type endpointKind uint8

const (
	kindWake endpointKind = iota
	kindListener
	kindRelay
)

type endpoint struct {
	kind  endpointKind
	fd    int
	ctrl  *ctrlConn
	relay *relayConn
}

// loopStats are written by one loop (and by slow-path writers) and summed
// at scrape time.
type loopStats struct {
	c2pPackets, c2pBytes atomic.Uint64
	p2cPackets, p2cBytes atomic.Uint64
	denied, dropped      atomic.Uint64
	_                    [64]byte // keep loops' counters on separate cache lines
}

type loop struct {
	srv    *Server
	epfd   int
	epf    *os.File
	raw    syscall.RawConn
	wakefd int
	ctrl   *ctrlConn // this loop's socket on the listen port

	mu  sync.Mutex // serialises endpoint table updates
	eps atomic.Pointer[map[int32]*endpoint]

	// seq is odd while the loop handles a batch of events; a relay socket is
	// closed only once every loop has been seen idle or past that batch, so
	// no loop can write to a descriptor number the kernel has reused.
	seq   atomic.Uint64
	stop  atomic.Bool
	done  chan struct{}
	stats loopStats

	events []unix.EpollEvent
	// listener reads
	lmsgs  []mmsghdr
	liov   []unix.Iovec
	lbufs  [][]byte
	lnames []rawAddr
	// relay reads land in send slots at offset channelHeader, so the
	// ChannelData header is written in front without copying the payload.
	rmsgs  []mmsghdr
	riov   []unix.Iovec
	rnames []rawAddr
	slots  [][]byte
	smsgs  []mmsghdr
	siov   []unix.Iovec
	sdst   []*clientLink // keeps each queued destination alive until the flush
	sendN  int
}

func newLoop(s *Server, ctrl *ctrlConn) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll fd non-blocking: %w", err)
	}
	// A non-blocking descriptor handed to os.NewFile joins the netpoller.
	epf := os.NewFile(uintptr(epfd), "relay-epoll")
	raw, err := epf.SyscallConn()
	if err != nil {
		epf.Close()
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		epf.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	l := &loop{srv: s, epfd: epfd, epf: epf, raw: raw, wakefd: wfd, ctrl: ctrl, done: make(chan struct{})}
	empty := map[int32]*endpoint{}
	l.eps.Store(&empty)
	l.events = make([]unix.EpollEvent, 128)
	l.lmsgs, l.liov, l.lnames = make([]mmsghdr, batchSize), make([]unix.Iovec, batchSize), make([]rawAddr, batchSize)
	l.lbufs = make([][]byte, batchSize)
	for i := range l.lbufs {
		l.lbufs[i] = make([]byte, packetSize)
		l.liov[i].Base = &l.lbufs[i][0]
		l.liov[i].SetLen(packetSize)
		l.lmsgs[i].hdr.Iov = &l.liov[i]
		l.lmsgs[i].hdr.SetIovlen(1)
		l.lmsgs[i].hdr.Name = &l.lnames[i].b[0]
	}
	l.rmsgs, l.riov, l.rnames = make([]mmsghdr, batchSize), make([]unix.Iovec, batchSize), make([]rawAddr, batchSize)
	for i := range l.rmsgs {
		l.rmsgs[i].hdr.Iov = &l.riov[i]
		l.rmsgs[i].hdr.SetIovlen(1)
		l.rmsgs[i].hdr.Name = &l.rnames[i].b[0]
	}
	l.slots = make([][]byte, maxSend)
	l.smsgs, l.siov, l.sdst = make([]mmsghdr, maxSend), make([]unix.Iovec, maxSend), make([]*clientLink, maxSend)
	for i := range l.slots {
		l.slots[i] = make([]byte, packetSize)
		l.siov[i].Base = &l.slots[i][0]
		l.smsgs[i].hdr.Iov = &l.siov[i]
		l.smsgs[i].hdr.SetIovlen(1)
	}
	if err := l.register(&endpoint{kind: kindWake, fd: wfd}); err != nil {
		l.closeFDs()
		return nil, err
	}
	if ctrl != nil {
		if err := l.register(&endpoint{kind: kindListener, fd: ctrl.fd, ctrl: ctrl}); err != nil {
			l.closeFDs()
			return nil, err
		}
	}
	return l, nil
}

func (l *loop) register(ep *endpoint) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.eps.Load()
	next := make(map[int32]*endpoint, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[int32(ep.fd)] = ep
	l.eps.Store(&next)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ep.fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ep.fd, &ev); err != nil {
		delete(next, int32(ep.fd))
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

func (l *loop) unregister(fd int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	old := *l.eps.Load()
	next := make(map[int32]*endpoint, len(old))
	for k, v := range old {
		if k != int32(fd) {
			next[k] = v
		}
	}
	l.eps.Store(&next)
}

func (l *loop) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(l.wakefd, one[:])
}

func (l *loop) closeFDs() {
	l.epf.Close()
	unix.Close(l.wakefd)
}

// run waits for events through Go's netpoller rather than blocking in
// epoll_wait: the loop's epoll descriptor is itself pollable, so an idle
// loop parks its goroutine and no OS thread sits in a long system call
// (which would make the runtime hand its P around on every batch).
func (l *loop) run() {
	defer close(l.done)
	for !l.stop.Load() {
		err := l.raw.Read(func(fd uintptr) bool {
			n, err := epollWaitNow(int(fd), l.events)
			if err != nil || n == 0 {
				return err != nil && !errors.Is(err, unix.EINTR)
			}
			l.seq.Add(1)
			l.handleSafe(n)
			l.seq.Add(1)
			return true
		})
		if err != nil {
			if !l.stop.Load() {
				l.srv.log.Error("relay loop stopped", "error", err)
			}
			return
		}
	}
}

// handleSafe is the loop's recover boundary: a bug triggered by one packet
// drops the rest of that batch (and its queued sends), is logged and
// counted, and the loop goes on serving everyone else.
func (l *loop) handleSafe(n int) {
	defer func() {
		if r := recover(); r != nil {
			clear(l.sdst[:l.sendN])
			l.sendN = 0
			l.srv.panicked("relay_loop", r)
		}
	}()
	l.handle(n)
}

func (l *loop) handle(n int) {
	eps := *l.eps.Load()
	for i := 0; i < n; i++ {
		ep := eps[l.events[i].Fd]
		if ep == nil {
			continue
		}
		switch ep.kind {
		case kindListener:
			l.readListener(ep)
		case kindRelay:
			l.readRelay(ep.relay)
		case kindWake:
			var b [8]byte
			_, _ = unix.Read(l.wakefd, b[:])
		}
	}
	l.flush()
}

func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// quietSince reports whether the loop has left the batch it was in when
// seq was sampled (or was idle then).
func (l *loop) quietSince(sampled uint64) bool {
	return sampled%2 == 0 || l.seq.Load() != sampled
}

// readListener drains the client-facing socket: ChannelData from UDP
// clients goes straight out of the bound relay socket, the rest to pion.
func (l *loop) readListener(ep *endpoint) {
	s := l.srv
	for range 4 { // bounded, so one busy socket cannot starve the others
		for i := range l.lmsgs {
			l.lmsgs[i].hdr.Namelen = uint32(len(l.lnames[i].b))
		}
		n, err := recvmmsg(ep.fd, l.lmsgs)
		if err != nil || n == 0 {
			return
		}
		clients := *s.udpClients.Load()
		for i := 0; i < n; i++ {
			m := &l.lmsgs[i]
			if m.hdr.Flags&unix.MSG_TRUNC != 0 {
				l.stats.dropped.Add(1)
				continue
			}
			l.clientPacket(ep.ctrl, clients, l.lbufs[i][:m.n], fromRaw(&l.lnames[i].b))
		}
		if n < len(l.lmsgs) {
			return
		}
	}
}

// clientPacket handles one datagram from a client: ChannelData on a bound
// channel goes straight out of the relay socket, anything else to pion.
// It touches no loop state, so the fuzz target calls it directly.
func (l *loop) clientPacket(ctrl *ctrlConn, clients map[netip.AddrPort]*relayConn, b []byte, src netip.AddrPort) {
	if h := l.srv.packetHook.Load(); h != nil {
		(*h)(b)
	}
	num, payload, isChannel, ok := parseChannelData(b)
	if !isChannel {
		ctrl.deliver(b, src)
		return
	}
	var ch *channel
	if rc := clients[src]; rc != nil && ok {
		ch = (*rc.chans.Load())[num]
	}
	if ch == nil {
		l.stats.dropped.Add(1)
		return
	}
	if !ch.allowed(&ch.c2p, l.srv) {
		l.stats.denied.Add(1)
		return
	}
	if err := sendTo(ch.relay.fd, payload, &ch.peerRaw); err != nil {
		l.stats.dropped.Add(1)
		return
	}
	l.stats.c2pPackets.Add(1)
	l.stats.c2pBytes.Add(uint64(len(payload)))
}

// readRelay drains one relay socket: datagrams from a channel-bound peer of
// a UDP client become ChannelData queued for one sendmmsg; the rest is
// checked against the policy and handed to pion (Data indications, TCP
// clients).
func (l *loop) readRelay(rc *relayConn) {
	s := l.srv
	for range 4 {
		if maxSend-l.sendN < batchSize {
			l.flush()
		}
		base := l.sendN
		for i := range l.rmsgs {
			l.riov[i].Base = &l.slots[base+i][channelHeader]
			l.riov[i].SetLen(packetSize - channelHeader)
			l.rmsgs[i].hdr.Namelen = uint32(len(l.rnames[i].b))
		}
		n, err := recvmmsg(rc.fd, l.rmsgs)
		if err != nil || n == 0 {
			return
		}
		link := rc.link.Load()
		peers := *rc.peers.Load()
		for i := 0; i < n; i++ {
			size := int(l.rmsgs[i].n)
			if l.rmsgs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
				l.stats.dropped.Add(1)
				continue
			}
			src := fromRaw(&l.rnames[i].b)
			slot := l.slots[base+i]
			ch := peers[src]
			if ch == nil || link == nil || !link.udp {
				rc.deliverSlow(slot[channelHeader:channelHeader+size], src, &l.stats)
				continue
			}
			if !ch.allowed(&ch.p2c, s) {
				l.stats.denied.Add(1)
				continue
			}
			binary.BigEndian.PutUint16(slot[0:2], ch.num)
			binary.BigEndian.PutUint16(slot[2:4], uint16(size))
			if l.sendN != base+i {
				// An earlier packet of this batch was not queued: move this
				// one's buffer into the next free send slot.
				l.slots[l.sendN], l.slots[base+i] = l.slots[base+i], l.slots[l.sendN]
				l.siov[l.sendN].Base = &l.slots[l.sendN][0]
				l.siov[base+i].Base = &l.slots[base+i][0]
			}
			j := l.sendN
			l.siov[j].SetLen(channelHeader + size)
			l.smsgs[j].hdr.Name = &link.raw.b[0]
			l.smsgs[j].hdr.Namelen = link.raw.n
			l.sdst[j] = link
			l.sendN++
		}
		if n < len(l.rmsgs) {
			return
		}
	}
}

// flush sends the queued ChannelData to clients from this loop's socket on
// the listen port (every socket there shares the address clients talk to).
func (l *loop) flush() {
	sent := 0
	for sent < l.sendN {
		n, err := sendmmsg(l.ctrl.fd, l.smsgs[sent:l.sendN])
		switch {
		case err == nil:
			var bytes uint64
			for j := sent; j < sent+n; j++ {
				bytes += uint64(l.siov[j].Len) - channelHeader
			}
			l.stats.p2cPackets.Add(uint64(n))
			l.stats.p2cBytes.Add(bytes)
			sent += n
		case errors.Is(err, unix.EINTR):
		case isAgain(err):
			// Socket buffer full: drop the rest, as a router would.
			l.stats.dropped.Add(uint64(l.sendN - sent))
			sent = l.sendN
		default:
			// One bad destination must not hold up the rest of the batch.
			l.stats.dropped.Add(1)
			sent++
		}
	}
	clear(l.sdst[:l.sendN])
	l.sendN = 0
}
