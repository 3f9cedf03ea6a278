package turn

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Allow-list sizing. Every address in an allow-list came from a signalling
// message someone sent, so each source (the streamer towards one player, or
// one player towards its streamer) has a fixed share: a browser gathers
// well under 32 candidates per ICE round, and re-gathering (ICE restart)
// replaces the oldest ones.
const (
	// maxAddrsPerSource bounds the addresses one source adds to one list;
	// the oldest is forgotten when a new one arrives.
	maxAddrsPerSource = 64
	// maxSourcesPerSet bounds the sources of one list (players of one
	// streamer); signalling's max-players cap is far below it.
	maxSourcesPerSet = 4096
)

// peerSet is what one allocation owner (a player, or a streamer connection)
// may reach: the addresses others advertised to it, each source with its own
// bounded share. Updates are O(1) under the set's own lock and never copy
// the set; the data plane caches its verdicts by version, so the per-packet
// cost is two atomic loads while the set does not change.
type peerSet struct {
	version atomic.Uint64

	mu      sync.RWMutex
	addrs   map[netip.AddrPort]uint32 // how many sources advertised it
	ips     map[netip.Addr]uint32     // how many addrs on that IP
	sources map[string]*sourceRing
}

// sourceRing is one source's share, oldest first once full.
type sourceRing struct {
	buf  [maxAddrsPerSource]netip.AddrPort
	n    int
	next int
}

func newPeerSet() *peerSet {
	return &peerSet{addrs: map[netip.AddrPort]uint32{}, ips: map[netip.Addr]uint32{}, sources: map[string]*sourceRing{}}
}

func (p *peerSet) hasIP(ip netip.Addr) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.ips[ip] > 0
}

func (p *peerSet) has(ap netip.AddrPort) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.addrs[ap] > 0
}

// size is the number of distinct addresses (tests, metrics).
func (p *peerSet) size() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.addrs)
}

// add records aps from source; it reports false when the set already has
// maxSourcesPerSet other sources and refused this one.
func (p *peerSet) add(source string, aps []netip.AddrPort) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.sources[source]
	if r == nil {
		if len(p.sources) >= maxSourcesPerSet {
			return false
		}
		r = &sourceRing{}
		p.sources[source] = r
	}
	changed := false
	for _, ap := range aps {
		if slices.Contains(r.buf[:r.n], ap) {
			continue
		}
		if r.n == len(r.buf) {
			p.decLocked(r.buf[r.next])
			r.buf[r.next] = ap
			r.next = (r.next + 1) % len(r.buf)
		} else {
			r.buf[r.n] = ap
			r.n++
		}
		p.addrs[ap]++
		p.ips[ap.Addr()]++
		changed = true
	}
	if changed {
		p.version.Add(1)
	}
	return true
}

// drop forgets everything source added.
func (p *peerSet) drop(source string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.sources[source]
	if r == nil {
		return
	}
	for _, ap := range r.buf[:r.n] {
		p.decLocked(ap)
	}
	delete(p.sources, source)
	p.version.Add(1)
}

func (p *peerSet) decLocked(ap netip.AddrPort) {
	if p.addrs[ap]--; p.addrs[ap] == 0 {
		delete(p.addrs, ap)
	}
	if p.ips[ap.Addr()]--; p.ips[ap.Addr()] == 0 {
		delete(p.ips, ap.Addr())
	}
}
