package turn

import (
	"net/netip"

	"github.com/pion/stun/v4"
)

// screenRequest looks at a client's STUN request before pion does and
// returns the response to send instead, or nil to let pion handle it. It
// answers what pion would get wrong or let grow without bound:
//   - Refresh of an allocation that does not exist: 437 (RFC 8656 section
//     7.3; pion leaves it unanswered and the client retransmits until it
//     times out), UDP only;
//   - ChannelBind beyond the allocation's channel cap, and CreatePermission
//     beyond its permission cap: 508 (Insufficient Capacity), so a client
//     cannot make pion's per-allocation lists (scanned linearly) long;
//   - ChannelBind to a port of an allowed IP that was never advertised: 403,
//     so "every port of an allowed peer" cannot each get a channel.
//
// Only authenticated requests (integrity checked with the credential's key)
// are answered here; anything else goes on to pion, which answers 401/438.
func (s *Server) screenRequest(p []byte, client netip.AddrPort, udp bool) []byte {
	if len(p) < stunHeader || p[0]&0xC0 != 0 {
		return nil
	}
	// Method and class from the header (RFC 8489 section 5) before any
	// decoding: only three request methods are of interest.
	typ := uint16(p[0])<<8 | uint16(p[1])
	if typ&0x0110 != 0 { // not a request
		return nil
	}
	method := stun.Method(typ&0x000F | (typ&0x00E0)>>1 | (typ&0x3E00)>>2)
	switch method {
	case stun.MethodRefresh:
		if !udp {
			return nil
		}
	case stun.MethodChannelBind, stun.MethodCreatePermission:
	default:
		return nil
	}
	m := &stun.Message{Raw: append([]byte(nil), p...)}
	if err := m.Decode(); err != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return nil
	}
	s.mu.Lock()
	rc := s.byClient[clientKey{udp: udp, addr: client}]
	s.mu.Unlock()

	code := stun.ErrorCode(0)
	var capName string
	switch method {
	case stun.MethodRefresh:
		if rc != nil {
			return nil
		}
		code = stun.CodeAllocMismatch
	case stun.MethodChannelBind:
		if rc == nil {
			return nil
		}
		var num stun.RawAttribute
		var peer stun.XORMappedAddress
		if a, ok := m.Attributes.Get(stun.AttrChannelNumber); ok && len(a.Value) >= 2 {
			num = a
		} else {
			return nil
		}
		if err := peer.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
			return nil
		}
		ch := uint16(num.Value[0])<<8 | uint16(num.Value[1])
		if _, bound := (*rc.chans.Load())[ch]; bound {
			return nil // a refresh of its own channel
		}
		ip, ok := netip.AddrFromSlice(peer.IP)
		if !ok {
			return nil
		}
		ap := netip.AddrPortFrom(ip.Unmap(), uint16(peer.Port))
		switch {
		case len(*rc.chans.Load()) >= rc.maxChannels():
			code, capName = stun.CodeInsufficientCapacity, "channels"
		case !s.peerAllowed(rc.player.set, ap):
			if ok, _ := s.static.checkIP(rc.player.set, ap.Addr()); ok {
				// The IP is allowed (pion would grant it), the port is not.
				code = stun.CodeForbidden
				s.metrics.deniedPeers.WithLabelValues(reasonPort).Inc()
			}
		}
	case stun.MethodCreatePermission:
		if rc == nil {
			return nil
		}
		fresh := 0
		s.mu.Lock()
		held := len(rc.perms)
		for _, a := range m.Attributes {
			if a.Type != stun.AttrXORPeerAddress {
				continue
			}
			var peer stun.XORMappedAddress
			if err := peer.GetFromAs(&stun.Message{TransactionID: m.TransactionID, Attributes: stun.Attributes{a}}, stun.AttrXORPeerAddress); err != nil {
				continue
			}
			if ip, ok := netip.AddrFromSlice(peer.IP); ok {
				if _, have := rc.perms[ip.Unmap()]; !have {
					fresh++
				}
			}
		}
		s.mu.Unlock()
		if fresh > 0 && held+fresh > maxPermissions {
			code, capName = stun.CodeInsufficientCapacity, "permissions"
		}
	}
	if code == 0 {
		return nil
	}
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return nil
	}
	_, key, ok := s.authKey(user.String(), realm.String())
	if !ok || stun.MessageIntegrity(key).Check(m) != nil {
		return nil
	}
	resp, err := stun.Build(&stun.Message{TransactionID: m.TransactionID},
		stun.NewType(method, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: code},
		stun.MessageIntegrity(key))
	if err != nil {
		return nil
	}
	if capName != "" {
		s.metrics.capRejections.WithLabelValues(capName).Inc()
	}
	return resp.Raw
}

// screenRequestSafe is screenRequest behind the recover boundary: handled
// is true when resp is to be sent instead of passing the request to pion,
// or when screening it hit a bug (the request is then dropped).
func (s *Server) screenRequestSafe(p []byte, client netip.AddrPort, udp bool) (resp []byte, handled bool) {
	defer func() {
		if r := recover(); r != nil {
			s.panicked("screen", r)
			resp, handled = nil, true
		}
	}()
	resp = s.screenRequest(p, client, udp)
	return resp, resp != nil
}
