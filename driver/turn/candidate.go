package turn

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// parseCandidate extracts the transport address of one ICE candidate
// ("candidate:<foundation> <component> <transport> <priority> <address>
// <port> typ <type> ..."; an "a=" prefix is accepted). Only UDP candidates
// name an address a TURN UDP relay can send to, so others return ok=false
// with a nil error, as do mDNS (".local") hostnames, which the relay cannot
// resolve. Malformed lines return an error that says what is wrong.
func parseCandidate(line string) (ap netip.AddrPort, ok bool, err error) {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "a=")
	rest, found := strings.CutPrefix(line, "candidate:")
	if !found {
		return ap, false, fmt.Errorf("candidate %q: does not start with \"candidate:\"", clip(line))
	}
	f := strings.Fields(rest)
	if len(f) < 8 || f[6] != "typ" {
		return ap, false, fmt.Errorf("candidate %q: want \"<foundation> <component> <transport> <priority> <address> <port> typ <type>\"", clip(line))
	}
	if !strings.EqualFold(f[2], "udp") {
		return ap, false, nil
	}
	port, err := strconv.ParseUint(f[5], 10, 16)
	if err != nil || port == 0 {
		return ap, false, fmt.Errorf("candidate %q: port %q is not 1-65535", clip(line), f[5])
	}
	ip, err := netip.ParseAddr(f[4])
	if err != nil {
		if strings.HasSuffix(strings.ToLower(f[4]), ".local") {
			return ap, false, nil
		}
		return ap, false, fmt.Errorf("candidate %q: address %q is not an IP", clip(line), f[4])
	}
	return netip.AddrPortFrom(ip.WithZone("").Unmap(), uint16(port)), true, nil
}

// parseSDP collects the UDP transport addresses an SDP advertises: every
// a=candidate line, and the c=/m= connection address and port of each media
// section when they are real (not the 0.0.0.0:9 placeholder).
func parseSDP(sdp string) ([]netip.AddrPort, []error) {
	var out []netip.AddrPort
	var errs []error
	var sessionConn, mediaConn netip.Addr
	mediaPort := uint16(0)
	inMedia := false
	flushMedia := func() {
		c := mediaConn
		if !c.IsValid() {
			c = sessionConn
		}
		if inMedia && c.IsValid() && !c.IsUnspecified() && mediaPort != 0 && mediaPort != 9 {
			out = append(out, netip.AddrPortFrom(c, mediaPort))
		}
	}
	for line := range strings.Lines(sdp) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "a=candidate:"):
			ap, ok, err := parseCandidate(line)
			if err != nil {
				errs = append(errs, err)
			} else if ok {
				out = append(out, ap)
			}
		case strings.HasPrefix(line, "m="):
			flushMedia()
			inMedia, mediaConn, mediaPort = true, netip.Addr{}, 0
			f := strings.Fields(line[2:])
			if len(f) >= 3 && strings.Contains(strings.ToUpper(f[2]), "UDP") {
				portStr, _, _ := strings.Cut(f[1], "/")
				if p, err := strconv.ParseUint(portStr, 10, 16); err == nil {
					mediaPort = uint16(p)
				}
			}
		case strings.HasPrefix(line, "c="):
			// c=IN IP4 203.0.113.1[/ttl[/n]]
			f := strings.Fields(line[2:])
			if len(f) < 3 {
				errs = append(errs, fmt.Errorf("sdp line %q: want \"c=IN IP4|IP6 <address>\"", clip(line)))
				continue
			}
			host, _, _ := strings.Cut(f[2], "/")
			ip, err := netip.ParseAddr(host)
			if err != nil {
				continue // a hostname; nothing to relay to
			}
			ip = ip.WithZone("").Unmap()
			if inMedia {
				mediaConn = ip
			} else {
				sessionConn = ip
			}
		}
	}
	flushMedia()
	return out, errs
}

func clip(s string) string {
	const n = 120
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
