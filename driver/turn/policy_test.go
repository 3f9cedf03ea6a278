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
		[]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("::ffff:127.0.0.5/128"),
			netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
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
		// Case 16: translated forms and metadata, under the 0.0.0.0/0 and
		// ::/0 above.
		{"100.100.100.200:80", false, false, "metadata", "Alibaba metadata, not opened by 0.0.0.0/0"},
		{"192.0.0.192:80", false, false, "metadata", "Oracle metadata"},
		{"168.63.129.16:80", false, false, "metadata", "Azure WireServer"},
		{"[fd20:ce::254]:80", false, false, "metadata", "GCP IPv6 metadata"},
		{"[64:ff9b::7f00:1]:80", false, false, "nat64", "NAT64 of 127.0.0.1"},
		{"[64:ff9b::808:808]:53", false, false, "nat64", "NAT64 of a public address: ::/0 is not specific enough"},
		{"[64:ff9b:1:2::a9fe:a9fe]:80", false, false, "nat64", "local-use NAT64"},
		{"[2002:a9fe:a9fe::1]:80", false, false, "6to4", "6to4 of the metadata address"},
		{"[2001:0:4136:e378:8000:63bf:3fff:fdd2]:80", false, false, "teredo", "Teredo"},
		{"[::ffff:0:7f00:1]:80", false, false, "siit", "SIIT IPv4-translated loopback"},
		{"[::ffff:0:808:808]:80", false, false, "siit", "SIIT of a public address"},
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

// Case 16: an operator entry that names a translated range opens it, but
// never towards an embedded IPv4 address of a denied class.
func TestTranslatedOpenedOnlyBySpecificEntries(t *testing.T) {
	r := newStaticRules([]netip.Prefix{netip.MustParsePrefix("64:ff9b::/96"), netip.MustParsePrefix("2002:c633:6401::/48")}, nil)
	set := newPeerSet()
	cases := []struct {
		peer string
		ok   bool
	}{
		{"[64:ff9b::808:808]:53", true},     // NAT64 to 8.8.8.8: the operator named the prefix
		{"[64:ff9b::7f00:1]:53", false},     // to 127.0.0.1: never
		{"[64:ff9b::a9fe:a9fe]:80", false},  // to 169.254.169.254: never
		{"[64:ff9b::6464:64c8]:80", false},  // to 100.100.100.200: never
		{"[2002:c633:6401::1]:80", true},    // 6to4 of 198.51.100.1: the operator named its /48
		{"[2002:7f00:1::1]:80", false},      // 6to4 of loopback, outside the entry anyway
		{"[2001:0:a9fe:a9fe::1]:80", false}, // Teredo: not named
		{"[64:ff9b:1::808:808]:80", false},  // local-use NAT64: not named
	}
	for _, tc := range cases {
		ap := netip.MustParseAddrPort(tc.peer)
		if ok, reason := r.checkAddr(set, ap); ok != tc.ok {
			t.Errorf("checkAddr(%s) = %v (%s), want %v", tc.peer, ok, reason, tc.ok)
		}
		if ok, reason := r.checkIP(set, ap.Addr()); ok != tc.ok {
			t.Errorf("checkIP(%s) = %v (%s), want %v", tc.peer, ok, reason, tc.ok)
		}
	}
}
