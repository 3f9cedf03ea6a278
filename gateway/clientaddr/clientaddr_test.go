package clientaddr

import "testing"

func TestOf(t *testing.T) {
	r, err := New([]string{"10.0.0.0/8", "192.168.1.5"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct visitor", "203.0.113.7:5000", nil, "203.0.113.7"},
		{"direct visitor cannot claim another address", "203.0.113.7:5000", []string{"198.51.100.1"}, "203.0.113.7"},
		{"through the load balancer", "10.1.2.3:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"spoofed entry before the real client", "10.1.2.3:4000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"two trusted hops", "192.168.1.5:80", []string{"198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"garbage from the client", "10.1.2.3:4000", []string{"not-an-ip"}, "10.1.2.3"},
		{"trusted peer, no header", "10.1.2.3:4000", nil, "10.1.2.3"},
		{"IPv6 visitor", "[2001:db8::1]:443", nil, "2001:db8::1"},
		{"IPv4-mapped", "10.1.2.3:4000", []string{"::ffff:198.51.100.9"}, "198.51.100.9"},
	} {
		if got := r.Of(tc.remote, tc.xff); got != tc.want {
			t.Errorf("%s: Of(%q, %q) = %q, want %q", tc.name, tc.remote, tc.xff, got, tc.want)
		}
	}
	if _, err := New([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad CIDR was accepted")
	}
	if none, _ := New(nil); none.Of("10.1.2.3:1", []string{"198.51.100.1"}) != "10.1.2.3" {
		t.Error("without trusted proxies X-Forwarded-For must be ignored")
	}
}

// FuzzOf: X-Forwarded-For is a header anyone sends.
func FuzzOf(f *testing.F) {
	r, _ := New([]string{"10.0.0.0/8"})
	for _, s := range []string{"", ",", "1.2.3.4", "10.0.0.1, 10.0.0.2, 1.1.1.1", "::ffff:1.2.3.4", "[::1]", "1.2.3.4:80"} {
		f.Add("10.0.0.9:1", s)
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		_ = r.Of(remote, []string{xff})
	})
}
