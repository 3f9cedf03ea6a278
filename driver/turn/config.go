package turn

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by New when the corresponding Config field is zero.
const (
	DefaultRealm         = "pixelstream"
	DefaultCredentialTTL = 24 * time.Hour
	DefaultRevokeGrace   = 30 * time.Second
	DefaultSocketBuffer  = 2 << 20
	DefaultMaxTCPConns   = 1024
	// DefaultMaxTCPConnsPerAddr bounds TCP/TLS connections from one IPv4
	// address or IPv6 /64: a browser needs one per TURN URL it tries.
	DefaultMaxTCPConnsPerAddr = 32
	// DefaultTCPFrameTimeout and DefaultTCPIdleTimeout: see Config.
	DefaultTCPFrameTimeout = 5 * time.Second
	DefaultTCPIdleTimeout  = 30 * time.Second
)

// Quotas bound how many allocations the server hands out. A request over any
// of them is answered with 486 (Allocation Quota Reached) and counted in
// pixelstream_turn_quota_rejections_total{quota=...}. Every quota is a
// share per credential id (one player connection, one streamer connection)
// except PerSession, which streamers are outside of; none counts over the
// server's whole life, so no client can deny everyone for good.
type Quotas struct {
	// PerPlayer is the number of allocations one id may hold at once.
	// A browser makes one per TURN URL and local interface (typically 2-6).
	PerPlayer int
	// PerSession is the number of allocations all players together may
	// hold. A streamer connection (StreamerCredentials, MarkStreamer) is not
	// counted there: it has a budget of its own of the same size, and no
	// PerPlayer or Lifetime limit (it relays for every player of its life).
	PerSession int
	// Lifetime is the number of allocations one id may create over its
	// life (until its credentials expire or are revoked); it stops a
	// client that churns allocate/deallocate, and it stops only that client.
	Lifetime int
}

// DefaultQuotas are used for each Quotas field left at zero.
var DefaultQuotas = Quotas{PerPlayer: 12, PerSession: 200, Lifetime: 500}

// Config configures a Server. Zero values mean "the default" where a default
// is documented; everything else is validated by New.
type Config struct {
	// Listen is "ip:port"; UDP and TCP (and TLS, sniffed on the TCP port) are
	// served on the same number. Port 0 picks a free port (tests).
	Listen string
	// PublicIP is the address put in the ICE server URLs and in
	// XOR-RELAYED-ADDRESS; "" means the listen IP.
	PublicIP string
	// RelayIP is the local address relay sockets bind to; "" means the listen IP.
	RelayIP string
	// RelayPortMin and RelayPortMax bound the relay ports (inclusive); both
	// zero means ephemeral ports chosen by the kernel.
	RelayPortMin, RelayPortMax uint16
	// Realm is the TURN realm; "" means DefaultRealm.
	Realm string
	// CertFile and KeyFile (both or neither) enable turns: on the TCP port.
	// The files are re-read when they change (a Nomad template renewing them).
	CertFile, KeyFile string
	// Secret is the TURN REST shared secret; nil means a random per-process
	// secret that never leaves the process.
	Secret []byte
	// CredentialTTL is how long minted credentials are valid; 0 means
	// DefaultCredentialTTL.
	CredentialTTL time.Duration
	// RevokeGrace is how long a player's credentials and allocations survive
	// Revoke; 0 means DefaultRevokeGrace.
	RevokeGrace time.Duration
	// Quotas bound allocations; zero fields take DefaultQuotas.
	Quotas Quotas
	// AllowPeers are static peer ranges every allocation may reach on any
	// port (standalone --allow-peer CIDR or IP). An entry at least as specific
	// as an always-denied class (e.g. 127.0.0.1/32 inside 127.0.0.0/8) opens
	// that part of it; 0.0.0.0/0 does not open loopback or link-local.
	AllowPeers []netip.Prefix
	// AllowPeerAddrs are static peer IP:port pairs every allocation may reach
	// (standalone --allow-peer IP:PORT), with the same override rule.
	AllowPeerAddrs []netip.AddrPort
	// Sockets is the number of UDP sockets on the listen port
	// (SO_REUSEPORT), each with its own relay loop; 0 means one per CPU, at most 4.
	Sockets int
	// SocketBuffer is SO_RCVBUF/SO_SNDBUF for every UDP socket; 0 means
	// DefaultSocketBuffer (2 MiB). The kernel caps it at net.core.[rw]mem_max.
	SocketBuffer int
	// MaxTCPConns bounds concurrent TCP/TLS client connections; 0 means DefaultMaxTCPConns.
	MaxTCPConns int
	// MaxTCPConnsPerAddr bounds them per client IPv4 address or IPv6 /64;
	// 0 means DefaultMaxTCPConnsPerAddr.
	MaxTCPConnsPerAddr int
	// TCPFrameTimeout is how long a TCP/TLS frame may take to arrive once
	// its first byte is in; 0 means DefaultTCPFrameTimeout.
	TCPFrameTimeout time.Duration
	// TCPIdleTimeout is how long a TCP/TLS connection without an allocation
	// may stay silent between frames (with one, the allocation's lifetime);
	// 0 means DefaultTCPIdleTimeout.
	TCPIdleTimeout time.Duration
	// Registry receives the server's metrics; nil means a private registry.
	Registry *prometheus.Registry
	// Logger receives the server's logs; nil means hclog.NewNullLogger().
	Logger hclog.Logger
}

// settings is a validated Config with defaults applied.
type settings struct {
	listen           netip.AddrPort
	publicIP         netip.Addr
	relayIP          netip.Addr
	portMin, portMax uint16
	realm            string
	certFile         string
	keyFile          string
	secret           []byte
	ttl              time.Duration
	grace            time.Duration
	quotas           Quotas
	sockets          int
	sockBuf          int
	maxTCP           int
	maxTCPAddr       int
	frameTimeout     time.Duration
	idleTimeout      time.Duration
}

func (c Config) validate(numCPU int) (settings, error) {
	var s settings
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	ap, err := netip.ParseAddrPort(c.Listen)
	if err != nil {
		bad("Listen: %q is not ip:port (e.g. 10.0.0.5:3478): %v", c.Listen, err)
	} else {
		s.listen = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	parseIP := func(field, v string, dflt netip.Addr) netip.Addr {
		if v == "" {
			return dflt
		}
		ip, err := netip.ParseAddr(v)
		if err != nil || ip.Zone() != "" {
			bad("%s: %q is not an IP address (e.g. 203.0.113.10)", field, v)
			return netip.Addr{}
		}
		return ip.Unmap()
	}
	s.publicIP = parseIP("PublicIP", c.PublicIP, s.listen.Addr())
	s.relayIP = parseIP("RelayIP", c.RelayIP, s.listen.Addr())
	if s.publicIP.IsValid() && s.publicIP.IsUnspecified() {
		bad("PublicIP: must be set to a reachable address when Listen is %s (clients cannot be sent to an unspecified address)", c.Listen)
	}
	if s.publicIP.IsValid() && s.relayIP.IsValid() && s.publicIP.Is4() != s.relayIP.Is4() {
		bad("PublicIP: %s and RelayIP %s must be the same address family", s.publicIP, s.relayIP)
	}
	switch {
	case c.RelayPortMin == 0 && c.RelayPortMax == 0:
	case c.RelayPortMin == 0 || c.RelayPortMax < c.RelayPortMin:
		bad("RelayPortMin/RelayPortMax: %d-%d is not a range; give both, min <= max (e.g. 49152-65535)", c.RelayPortMin, c.RelayPortMax)
	}
	s.portMin, s.portMax = c.RelayPortMin, c.RelayPortMax

	s.realm = c.Realm
	if s.realm == "" {
		s.realm = DefaultRealm
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		bad("CertFile/KeyFile: give both or neither (got cert %q, key %q)", c.CertFile, c.KeyFile)
	}
	for field, f := range map[string]string{"CertFile": c.CertFile, "KeyFile": c.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad("%s: %v", field, err)
		}
	}
	s.certFile, s.keyFile = c.CertFile, c.KeyFile

	if c.Secret != nil && len(c.Secret) < 16 {
		bad("Secret: %d bytes is too short; use at least 16 random bytes, or nil for a per-process random secret", len(c.Secret))
	}
	s.secret = append([]byte(nil), c.Secret...)

	s.ttl = orDefault(c.CredentialTTL, DefaultCredentialTTL)
	s.grace = orDefault(c.RevokeGrace, DefaultRevokeGrace)
	if c.CredentialTTL < 0 {
		bad("CredentialTTL: %v is negative", c.CredentialTTL)
	}
	if c.RevokeGrace < 0 {
		bad("RevokeGrace: %v is negative", c.RevokeGrace)
	}

	s.quotas = c.Quotas
	for _, q := range []struct {
		name string
		v    *int
		d    int
	}{{"Quotas.PerPlayer", &s.quotas.PerPlayer, DefaultQuotas.PerPlayer},
		{"Quotas.PerSession", &s.quotas.PerSession, DefaultQuotas.PerSession},
		{"Quotas.Lifetime", &s.quotas.Lifetime, DefaultQuotas.Lifetime}} {
		if *q.v < 0 {
			bad("%s: %d is negative", q.name, *q.v)
		}
		*q.v = orDefault(*q.v, q.d)
	}

	s.sockets = c.Sockets
	if s.sockets == 0 {
		s.sockets = min(max(numCPU, 1), 4)
	}
	if s.sockets < 0 || s.sockets > 64 {
		bad("Sockets: %d is out of range 1-64", c.Sockets)
	}
	s.sockBuf = orDefault(c.SocketBuffer, DefaultSocketBuffer)
	if c.SocketBuffer < 0 {
		bad("SocketBuffer: %d is negative", c.SocketBuffer)
	}
	s.maxTCP = orDefault(c.MaxTCPConns, DefaultMaxTCPConns)
	if c.MaxTCPConns < 0 {
		bad("MaxTCPConns: %d is negative", c.MaxTCPConns)
	}
	s.maxTCPAddr = orDefault(c.MaxTCPConnsPerAddr, DefaultMaxTCPConnsPerAddr)
	if c.MaxTCPConnsPerAddr < 0 {
		bad("MaxTCPConnsPerAddr: %d is negative", c.MaxTCPConnsPerAddr)
	}
	s.frameTimeout = orDefault(c.TCPFrameTimeout, DefaultTCPFrameTimeout)
	s.idleTimeout = orDefault(c.TCPIdleTimeout, DefaultTCPIdleTimeout)
	if c.TCPFrameTimeout < 0 || c.TCPIdleTimeout < 0 {
		bad("TCPFrameTimeout/TCPIdleTimeout: %v/%v: negative", c.TCPFrameTimeout, c.TCPIdleTimeout)
	}
	for _, p := range c.AllowPeers {
		if !p.IsValid() {
			bad("AllowPeers: invalid prefix %v", p)
		}
	}
	for _, a := range c.AllowPeerAddrs {
		if !a.IsValid() || a.Port() == 0 {
			bad("AllowPeerAddrs: %v needs an IP and a non-zero port", a)
		}
	}
	if len(errs) > 0 {
		return settings{}, fmt.Errorf("turn config: %w", errors.Join(errs...))
	}
	return s, nil
}

func orDefault[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}
