package turn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawAddr is a socket address in the kernel's layout, built once per peer or
// client so the hot path passes it to sendto/sendmmsg without conversion.
type rawAddr struct {
	b [unix.SizeofSockaddrInet6]byte
	n uint32
}

func toRaw(ap netip.AddrPort) rawAddr {
	var r rawAddr
	ip := ap.Addr().Unmap()
	binary.BigEndian.PutUint16(r.b[2:4], ap.Port())
	if ip.Is4() {
		binary.NativeEndian.PutUint16(r.b[0:2], unix.AF_INET)
		a := ip.As4()
		copy(r.b[4:8], a[:])
		r.n = unix.SizeofSockaddrInet4
		return r
	}
	binary.NativeEndian.PutUint16(r.b[0:2], unix.AF_INET6)
	a := ip.As16()
	copy(r.b[8:24], a[:])
	r.n = unix.SizeofSockaddrInet6
	return r
}

// fromRaw decodes a sockaddr the kernel filled in; IPv4-mapped IPv6 comes
// back unmapped so policy and table lookups see one form.
func fromRaw(b *[unix.SizeofSockaddrInet6]byte) netip.AddrPort {
	port := binary.BigEndian.Uint16(b[2:4])
	switch binary.NativeEndian.Uint16(b[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port)
	}
	return netip.AddrPort{}
}

// newUDPSocket makes a non-blocking UDP socket bound to bind, with large
// buffers so bursts of video frames are queued rather than dropped.
func newUDPSocket(bind netip.AddrPort, reusePort bool, bufSize int) (int, netip.AddrPort, error) {
	family := unix.AF_INET
	if bind.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, netip.AddrPort{}, fmt.Errorf("udp socket: %w", err)
	}
	fail := func(what string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("udp socket %s %s: %w", bind, what, err)
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail("SO_REUSEPORT", err)
		}
	}
	if bufSize > 0 {
		// Best effort: the kernel caps these at net.core.{r,w}mem_max.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bufSize)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, bufSize)
	}
	raw := toRaw(bind)
	if _, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&raw.b[0])), uintptr(raw.n)); e != 0 {
		return fail("bind", e)
	}
	var got rawAddr
	l := uint32(len(got.b))
	if _, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&got.b[0])), uintptr(unsafe.Pointer(&l))); e != 0 {
		return fail("getsockname", e)
	}
	return fd, fromRaw(&got.b), nil
}

// socketBuffer reports the receive buffer the kernel granted (it doubles the
// request for bookkeeping, and caps it).
func socketBuffer(fd int) int {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return 0
	}
	return v
}

// sendTo sends one datagram without involving the Go scheduler: the socket
// is non-blocking, so the call cannot block.
func sendTo(fd int, p []byte, to *rawAddr) error {
	if len(p) == 0 {
		return nil
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		0, uintptr(unsafe.Pointer(&to.b[0])), uintptr(to.n))
	if e != 0 {
		return e
	}
	return nil
}

// mmsghdr is struct mmsghdr; Go pads it to the kernel's size on every arch.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

func recvmmsg(fd int, msgs []mmsghdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)),
		unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func sendmmsg(fd int, msgs []mmsghdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)),
		unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func isAgain(err error) bool {
	return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK)
}
