package session

import (
	"slices"
	"testing"
)

func TestWithAddr(t *testing.T) {
	cases := []struct {
		in       []string
		hostport string
		want     []string
	}{
		{[]string{"turn:172.26.64.5:3478?transport=udp", "turn:172.26.64.5:3478?transport=tcp"}, "203.0.113.10:41000",
			[]string{"turn:203.0.113.10:41000?transport=udp", "turn:203.0.113.10:41000?transport=tcp"}},
		{[]string{"turns:10.0.0.5:3478?transport=tcp"}, "[2001:db8::1]:443", []string{"turns:[2001:db8::1]:443?transport=tcp"}},
		{[]string{"turn:[::1]:3478?transport=udp"}, "127.0.0.1:3478", []string{"turn:127.0.0.1:3478?transport=udp"}},
		{[]string{"turn:10.0.0.5:3478"}, "10.0.0.6:1", []string{"turn:10.0.0.6:1"}},
		{nil, "10.0.0.6:1", []string{}},
	}
	for _, c := range cases {
		if got := withAddr(c.in, c.hostport); !slices.Equal(got, c.want) {
			t.Errorf("withAddr(%q, %s) = %q, want %q", c.in, c.hostport, got, c.want)
		}
	}
}

func TestInNamespace(t *testing.T) {
	for listen, want := range map[string]bool{"0.0.0.0:8080": true, "[::]:8080": true, "10.0.0.5:8080": false, "": false, "127.0.0.1:0": false} {
		if got := inNamespace(listen); got != want {
			t.Errorf("inNamespace(%q) = %v, want %v", listen, got, want)
		}
	}
}
