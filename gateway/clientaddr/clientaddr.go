// Package clientaddr finds the visitor's network address, which the
// gateway's per-address caps key on: the TCP peer, or, when the peer is a
// proxy the operator trusts (a load balancer in front of the replicas),
// the nearest untrusted address that proxy chain put in X-Forwarded-For.
// Addresses are parsed by net/netip.
package clientaddr

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// maxHops bounds how many X-Forwarded-For entries are looked at.
const maxHops = 16

// Resolver knows the trusted proxies.
type Resolver struct {
	trusted []netip.Prefix
}

// New parses trusted proxies: addresses ("10.0.0.5") or CIDRs ("10.0.0.0/8").
func New(trusted []string) (*Resolver, error) {
	r := &Resolver{}
	for _, s := range trusted {
		p, err := parse(s)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies: %q is neither an address nor a CIDR (e.g. \"10.0.0.0/8\")", s)
		}
		r.trusted = append(r.trusted, p)
	}
	return r, nil
}

func parse(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func (r *Resolver) trustedAddr(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// Of returns the visitor's address for a request from remoteAddr
// (host:port) carrying the X-Forwarded-For values xff.
func (r *Resolver) Of(remoteAddr string, xff []string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || len(r.trusted) == 0 || !r.trustedAddr(peer) {
		return host
	}
	// Right to left: each trusted proxy appended the address it saw.
	var hops []string
	for _, v := range xff {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i, n := len(hops)-1, 0; i >= 0 && n < maxHops; i, n = i-1, n+1 {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a forged or garbled entry: stop at the last good one
		}
		client = a.Unmap()
		if !r.trustedAddr(client) {
			break
		}
	}
	return client.String()
}
