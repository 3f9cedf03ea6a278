package turn

import (
	"net/netip"
	"slices"
)

// Peer policy. Default deny: a relayed packet may reach only
//   - addresses (IP and port) the session's streamer advertised to the player
//     that owns the allocation (AllowFromSDP / AllowFromCandidate), or
//   - the static AllowPeers / AllowPeerAddrs entries (standalone mode).
//
// Some classes are refused even when the streamer advertises them: loopback,
// unspecified, link-local (which holds the 169.254.169.254 metadata service),
// other cloud metadata addresses (100.100.100.200, 192.0.0.192,
// 168.63.129.16, fd00:ec2::254, fd20:ce::254), multicast/broadcast, and the
// IPv4-in-IPv6 forms of any of them. IPv6 forms that a translator or tunnel
// turns into IPv4 (NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16,
// Teredo 2001::/32, SIIT ::ffff:0:0:0/96) are refused even under an operator
// catch-all: only an entry naming the range opens them, and never towards an
// embedded IPv4 address of a refused class. A streamer on
// the same node also advertises a host candidate on the node's own interface,
// which is reachable from the relay, so refusing its loopback candidates costs
// nothing and keeps every loopback service of the node out of reach. Private
// addresses (RFC 1918, ULA, CGNAT) are not special: they are refused unless
// advertised, and an advertised one is the player's own streamer, allowed on
// the advertised ports only. Only an operator's static entry that is at least
// as specific as a denied class opens it (127.0.0.1/32 opens that address; a
// catch-all 0.0.0.0/0 does not open loopback or link-local).

// deniedClass is a range refused unless a static entry narrows into it.
type deniedClass struct {
	prefix netip.Prefix
	reason string
	// fixed classes cannot be opened even by a static entry.
	fixed bool
}

var deniedClasses = []deniedClass{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified", true},
	{netip.MustParsePrefix("::/128"), "unspecified", true},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback", false},
	{netip.MustParsePrefix("::1/128"), "loopback", false},
	{netip.MustParsePrefix("169.254.0.0/16"), "link_local", false},
	{netip.MustParsePrefix("fe80::/10"), "link_local", false},
	// Cloud metadata services outside link-local: Alibaba (100.100.100.200,
	// inside CGNAT space), Oracle (192.0.0.192), Azure's WireServer
	// (168.63.129.16), AWS's IPv6 IMDS (inside the ULA range) and GCP's.
	{netip.MustParsePrefix("100.100.100.200/32"), "metadata", false},
	{netip.MustParsePrefix("192.0.0.192/32"), "metadata", false},
	{netip.MustParsePrefix("168.63.129.16/32"), "metadata", false},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "metadata", false},
	{netip.MustParsePrefix("fd20:ce::254/128"), "metadata", false},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast", false},
	{netip.MustParsePrefix("ff00::/8"), "multicast", false},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast", true},
	// Deprecated IPv4-compatible IPv6 (::a.b.c.d): some stacks route it as IPv4.
	{netip.MustParsePrefix("::/96"), "ipv4_compatible", true},
	// SIIT IPv4-translated addresses (::ffff:0:a.b.c.d, RFC 2765): a
	// translator on the path turns them into IPv4. (IPv4-mapped ::ffff:a.b.c.d
	// never gets here: every address is unmapped first.)
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "siit", true},
}

// translatedClass is an IPv6 range that a translator or tunnel on the path
// turns into IPv4 traffic: relaying to it reaches the embedded IPv4 address,
// so "0.0.0.0/0 ::/0" would open loopback, metadata and private IPv4 through
// the back door. Refused unless an operator entry at least minBits long names
// it, and even then only when the embedded IPv4 addresses are themselves
// allowed.
type translatedClass struct {
	prefix  netip.Prefix
	reason  string
	minBits int
	// embedded returns the IPv4 addresses a packet to ip can end up at.
	embedded func(ip netip.Addr) []netip.Addr
}

var translatedClasses = []translatedClass{
	// NAT64 well-known prefix (RFC 6052): the IPv4 address is the last 32 bits.
	{netip.MustParsePrefix("64:ff9b::/96"), "nat64", 96, last32},
	// Local-use NAT64 (RFC 8215): the operator picks the prefix length, so
	// only an entry that names a /96 in it opens it (then the last 32 bits).
	{netip.MustParsePrefix("64:ff9b:1::/48"), "nat64", 96, last32},
	// 6to4 (RFC 3056): 2002:AABB:CCDD::/48 tunnels to AA.BB.CC.DD.
	{netip.MustParsePrefix("2002::/16"), "6to4", 48, func(ip netip.Addr) []netip.Addr {
		b := ip.As16()
		return []netip.Addr{netip.AddrFrom4([4]byte(b[2:6]))}
	}},
	// Teredo (RFC 4380): 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC, server IPv4
	// in the clear and the client's IPv4 inverted.
	{netip.MustParsePrefix("2001::/32"), "teredo", 64, func(ip netip.Addr) []netip.Addr {
		b := ip.As16()
		c := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return []netip.Addr{netip.AddrFrom4([4]byte(b[4:8])), netip.AddrFrom4(c)}
	}},
}

func last32(ip netip.Addr) []netip.Addr {
	b := ip.As16()
	return []netip.Addr{netip.AddrFrom4([4]byte(b[12:16]))}
}

// classify returns the denied class of ip (already unmapped), or nil.
func classify(ip netip.Addr) *deniedClass {
	for i := range deniedClasses {
		if deniedClasses[i].prefix.Contains(ip) {
			return &deniedClasses[i]
		}
	}
	return nil
}

// translated returns the translated class of ip, or nil.
func translated(ip netip.Addr) *translatedClass {
	if !ip.Is6() || ip.Is4In6() {
		return nil
	}
	for i := range translatedClasses {
		if translatedClasses[i].prefix.Contains(ip) {
			return &translatedClasses[i]
		}
	}
	return nil
}

// staticRules are the operator's AllowPeers/AllowPeerAddrs.
type staticRules struct {
	prefixes []netip.Prefix
	addrs    []netip.AddrPort
}

func newStaticRules(prefixes []netip.Prefix, addrs []netip.AddrPort) staticRules {
	r := staticRules{}
	for _, p := range prefixes {
		r.prefixes = append(r.prefixes, netip.PrefixFrom(p.Addr().Unmap(), unmapBits(p)).Masked())
	}
	for _, a := range addrs {
		r.addrs = append(r.addrs, netip.AddrPortFrom(a.Addr().Unmap(), a.Port()))
	}
	return r
}

func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}
	return p.Bits()
}

// ipMatch reports whether a static entry admits ip on some port; minBits is
// the specificity an entry needs (0 outside denied classes).
func (r *staticRules) ipMatch(ip netip.Addr, minBits int) bool {
	for _, p := range r.prefixes {
		if p.Bits() >= minBits && p.Contains(ip) {
			return true
		}
	}
	for _, a := range r.addrs {
		if a.Addr() == ip {
			return true
		}
	}
	return false
}

func (r *staticRules) addrMatch(ap netip.AddrPort, minBits int) bool {
	for _, p := range r.prefixes {
		if p.Bits() >= minBits && p.Contains(ap.Addr()) {
			return true
		}
	}
	return slices.Contains(r.addrs, ap)
}

// check decides an address of a translated class: only a specific operator
// entry opens it, and never towards an embedded IPv4 address of a denied
// class (NAT64 of 127.0.0.1 is loopback, whatever the entry says).
func (tc *translatedClass) check(opened bool, ip netip.Addr) (bool, string) {
	if !opened {
		return false, tc.reason
	}
	for _, v4 := range tc.embedded(ip) {
		if classify(v4) != nil {
			return false, tc.reason
		}
	}
	return true, ""
}

// Verdict reasons, used as metric labels.
const (
	reasonNotAdvertised = "not_advertised"
	reasonPort          = "port_not_advertised"
)

// checkIP decides CreatePermission/ChannelBind, where only the IP is known.
func (r *staticRules) checkIP(set *peerSet, ip netip.Addr) (bool, string) {
	ip = ip.Unmap()
	if c := classify(ip); c != nil {
		if !c.fixed && r.ipMatch(ip, c.prefix.Bits()) {
			return true, ""
		}
		return false, c.reason
	}
	if tc := translated(ip); tc != nil {
		return tc.check(r.ipMatch(ip, tc.minBits), ip)
	}
	if set.hasIP(ip) || r.ipMatch(ip, 0) {
		return true, ""
	}
	return false, reasonNotAdvertised
}

// checkAddr decides one relayed packet, where the port is known too.
func (r *staticRules) checkAddr(set *peerSet, ap netip.AddrPort) (bool, string) {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if c := classify(ap.Addr()); c != nil {
		if !c.fixed && r.addrMatch(ap, c.prefix.Bits()) {
			return true, ""
		}
		return false, c.reason
	}
	if tc := translated(ap.Addr()); tc != nil {
		return tc.check(r.addrMatch(ap, tc.minBits), ap.Addr())
	}
	if set.has(ap) || r.addrMatch(ap, 0) {
		return true, ""
	}
	if set.hasIP(ap.Addr()) {
		return false, reasonPort
	}
	return false, reasonNotAdvertised
}

// Advertised relay addresses of this very server are allowed whatever the
// address class.
//
// Why: when both the player and the streamer relay (Epic's frontend with
// ForceTURN drops every streamer candidate that is not a relay candidate,
// so the streamer relays too, as it does with Epic's own stack), each
// allocation sends to the other's relay address, which is this server's
// relay IP. On a node whose relay IP is loopback (a demo, a test) that
// address falls in a refused class. The socket behind it is an
// authenticated allocation of this same session that still applies its own
// permissions to what it receives, so reaching it opens nothing else; and
// only an address the other side advertised is admitted, as for any peer.

// ownRelayIP reports whether ip is the address this server's relay
// sockets bind to.
func (s *Server) ownRelayIP(ip netip.Addr) bool {
	return s.cfg.relayIP.IsValid() && ip.Unmap() == s.cfg.relayIP.Unmap()
}

// ownRelay reports whether ap is one of this server's live relay sockets.
func (s *Server) ownRelay(ap netip.AddrPort) bool {
	if !s.ownRelayIP(ap.Addr()) {
		return false
	}
	s.mu.Lock()
	_, ok := s.relays[ap.Port()]
	s.mu.Unlock()
	return ok
}

// peerAllowed is the per-packet decision: the policy, or an advertised
// relay socket of this server.
func (s *Server) peerAllowed(set *peerSet, ap netip.AddrPort) bool {
	if ok, _ := s.static.checkAddr(set, ap); ok {
		return true
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return set.has(ap) && s.ownRelay(ap)
}

// advertisesOwnRelay reports whether set holds, on ip, a port that is one of
// this server's live relay sockets. It walks the live relays (bounded by
// the session quota), not the set.
func (s *Server) advertisesOwnRelay(set *peerSet, ip netip.Addr) bool {
	ip = ip.Unmap()
	if !s.ownRelayIP(ip) {
		return false
	}
	s.mu.Lock()
	ports := make([]uint16, 0, len(s.relays))
	for port := range s.relays {
		ports = append(ports, port)
	}
	s.mu.Unlock()
	for _, port := range ports {
		if set.has(netip.AddrPortFrom(ip, port)) {
			return true
		}
	}
	return false
}
