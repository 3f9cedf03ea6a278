package turn

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseCandidate(t *testing.T) {
	cases := []struct {
		in      string
		want    string // "" means no address
		wantErr string
	}{
		{"candidate:842163049 1 udp 1677729535 203.0.113.7 61665 typ srflx raddr 10.0.0.2 rport 61665 generation 0", "203.0.113.7:61665", ""},
		{"a=candidate:1 1 UDP 2122260223 10.0.0.2 49152 typ host", "10.0.0.2:49152", ""},
		{"candidate:1 1 udp 2122260223 2001:db8::5 49152 typ host", "[2001:db8::5]:49152", ""},
		{"candidate:1 1 udp 2122260223 ::ffff:10.0.0.2 49152 typ host", "10.0.0.2:49152", ""},
		{"candidate:1 1 udp 2122260223 fe80::1%eth0 49152 typ host", "[fe80::1]:49152", ""},
		{"  candidate:1 1 udp 1 10.0.0.2 1 typ host\r\n", "10.0.0.2:1", ""},
		{"candidate:1 1 tcp 1518280447 10.0.0.2 9 typ host tcptype active", "", ""},
		{"candidate:1 1 udp 2122260223 4b1c8bd0-1c1d.local 49152 typ host", "", ""},
		{"", "", "does not start with"},
		{"a=ice-ufrag:abcd", "", "does not start with"},
		{"candidate:1 1 udp 1 10.0.0.2", "", "want"},
		{"candidate:1 1 udp 1 10.0.0.2 49152 type host", "", "want"},
		{"candidate:1 1 udp 1 10.0.0.2 0 typ host", "", "port"},
		{"candidate:1 1 udp 1 10.0.0.2 70000 typ host", "", "port"},
		{"candidate:1 1 udp 1 not-an-ip 5 typ host", "", "not an IP"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			ap, ok, err := parseCandidate(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			got := ""
			if ok {
				got = ap.String()
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseSDP(t *testing.T) {
	sdp := strings.Join([]string{
		"v=0",
		"o=- 1 2 IN IP4 127.0.0.1",
		"c=IN IP4 198.51.100.1",
		"m=audio 9 UDP/TLS/RTP/SAVPF 111",
		"c=IN IP4 0.0.0.0",
		"a=candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host",
		"a=candidate:2 1 tcp 1518280447 10.0.0.2 9 typ host tcptype active",
		"a=candidate:broken",
		"m=video 50002 UDP/TLS/RTP/SAVPF 96",
		"c=IN IP4 203.0.113.9",
		"a=candidate:3 1 udp 1686052607 203.0.113.9 50002 typ srflx raddr 10.0.0.2 rport 50002",
		"m=application 50004 UDP/DTLS/SCTP webrtc-datachannel",
		"m=application 7000 TCP/DTLS/SCTP webrtc-datachannel",
		"c=IN IP4 203.0.113.9",
		"",
	}, "\r\n")
	got, errs := parseSDP(sdp)
	want := []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.2:50000"),
		netip.MustParseAddrPort("203.0.113.9:50002"),
		netip.MustParseAddrPort("203.0.113.9:50002"),
		netip.MustParseAddrPort("198.51.100.1:50004"), // session-level c= applies
	}
	if !slices.Equal(got, want) {
		t.Errorf("addresses %v, want %v", got, want)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "candidate:broken") {
		t.Errorf("errors %v, want one naming the broken candidate", errs)
	}
}

func FuzzParseCandidate(f *testing.F) {
	f.Add("candidate:842163049 1 udp 1677729535 203.0.113.7 61665 typ srflx raddr 10.0.0.2 rport 61665")
	f.Add("a=candidate:1 1 udp 1 ::ffff:127.0.0.1 1 typ host")
	f.Add("candidate:1 1 udp 1 x.local 0 typ host")
	f.Fuzz(func(t *testing.T, s string) {
		ap, ok, err := parseCandidate(s)
		if ok && (err != nil || !ap.IsValid() || ap.Port() == 0 || ap.Addr().Is4In6() || ap.Addr().Zone() != "") {
			t.Fatalf("parseCandidate(%q) = %v, %v, %v", s, ap, ok, err)
		}
	})
}

func FuzzParseSDP(f *testing.F) {
	f.Add("v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 UDP/TLS/RTP/SAVPF 96\r\na=candidate:1 1 udp 1 10.0.0.2 5 typ host\r\n")
	f.Add("m=\nc=\nc=IN IP6 ::1/1/1\nm=a 1/2 udp")
	f.Add("m=video 65535 UDP 96\r\nc=IN IP6 fe80::1%eth0/126/125\r\nm=audio 65536 UDP 0\r\nm=x 18446744073709551615 UDP 0\r\nm=y 126 UDP 0")
	f.Fuzz(func(t *testing.T, s string) {
		aps, _ := parseSDP(s)
		for _, ap := range aps {
			if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Is4In6() || ap.Addr().Zone() != "" {
				t.Fatalf("parseSDP(%q) returned %v", s, ap)
			}
		}
	})
}
