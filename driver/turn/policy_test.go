package turn

import (
	"net/netip"
	"testing"
)

func TestPolicy(t *testing.T) {
	set := newPeerSet()
	set.add("streamer", []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.2:50000"),
		netip.MustParseAddrPort("203.0.113.9:50002"),
		netip.MustParseAddrPort("127.0.0.1:50000"), // advertised, still refused
	})
	static := newStaticRules(
		[]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("::ffff:127.0.0.5/128"), netip.MustParsePrefix("0.0.0.0/0")},
		[]netip.AddrPort{netip.MustParseAddrPort("169.254.1.1:9000")},
	)
	cases := []struct {
		peer     string
		ipOK     bool
		addrOK   bool
		reason   string // of the address verdict
		comments string
	}{
		{"10.0.0.2:50000", true, true, "", "advertised private host candidate"},
		{"[::ffff:10.0.0.2]:50000", true, true, "", "mapped form of an advertised address"},
		{"203.0.113.9:50002", true, true, "", "advertised srflx"},
		{"198.51.100.77:1234", true, true, "", "static CIDR, any port"},
		{"8.8.8.8:53", true, true, "", "0.0.0.0/0 opens ordinary addresses"},
		{"127.0.0.1:50000", false, false, "loopback", "advertised loopback stays refused"},
		{"[::ffff:127.0.0.1]:50000", false, false, "loopback", "IPv4-mapped loopback"},
		{"[::1]:50000", false, false, "loopback", ""},
		{"127.0.0.5:80", true, true, "", "static /32 (mapped form) opens one loopback address"},
		{"0.0.0.0:50000", false, false, "unspecified", ""},
		{"[::]:50000", false, false, "unspecified", ""},
		{"[::ffff:0.0.0.0]:1", false, false, "unspecified", ""},
		{"169.254.169.254:80", false, false, "link_local", "metadata"},
		{"[::ffff:169.254.169.254]:80", false, false, "link_local", "mapped metadata"},
		{"169.254.1.1:9000", true, true, "", "static IP:PORT opens one link-local port"},
		{"169.254.1.1:9001", true, false, "link_local", "but not its other ports"},
		{"[fe80::1]:5000", false, false, "link_local", ""},
		{"[fd00:ec2::254]:80", false, false, "metadata", ""},
		{"224.0.0.251:5353", false, false, "multicast", ""},
		{"[ff02::fb]:5353", false, false, "multicast", ""},
		{"255.255.255.255:9", false, false, "broadcast", ""},
		{"[::127.0.0.1]:9", false, false, "ipv4_compatible", ""},
	}
	for _, tc := range cases {
		t.Run(tc.peer, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tc.peer)
			if ok, reason := static.checkIP(set, ap.Addr()); ok != tc.ipOK {
				t.Errorf("checkIP = %v (%s), want %v", ok, reason, tc.ipOK)
			}
			ok, reason := static.checkAddr(set, ap)
			if ok != tc.addrOK || reason != tc.reason {
				t.Errorf("checkAddr = %v (%q), want %v (%q)", ok, reason, tc.addrOK, tc.reason)
			}
		})
	}
	// Without static rules, only what was advertised passes.
	none := newStaticRules(nil, nil)
	for peer, want := range map[string]string{
		"8.8.8.8:53": reasonNotAdvertised, "10.0.0.3:50000": reasonNotAdvertised, "10.0.0.2:22": reasonPort} {
		if ok, reason := none.checkAddr(set, netip.MustParseAddrPort(peer)); ok || reason != want {
			t.Errorf("default deny: checkAddr(%s) = %v (%q), want refused (%q)", peer, ok, reason, want)
		}
	}
}
