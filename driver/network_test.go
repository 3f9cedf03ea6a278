package driver

import (
	"testing"

	nstructs "github.com/hashicorp/nomad/nomad/structs"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// TestPortBindings checks where a session binds its ports and what it tells
// players, in host mode, in a group network namespace (bridge), and with
// turn.public_address/public_port in front.
func TestPortBindings(t *testing.T) {
	ports := &nstructs.AllocatedPorts{
		{Label: "http", Value: 25001, To: 8080, HostIP: "10.0.0.5"},
		{Label: "turn", Value: 25002, To: 3478, HostIP: "10.0.0.5"},
		{Label: "same", Value: 25003, To: -1, HostIP: "10.0.0.5"},
		{Label: "unset", Value: 25004, HostIP: "10.0.0.5"},
	}
	bridge := &drivers.NetworkIsolationSpec{Mode: drivers.NetIsolationModeGroup, Path: "/var/run/netns/x"}
	cases := []struct {
		name                   string
		iso                    *drivers.NetworkIsolationSpec
		label                  string
		turn                   config.TURNConfig
		listen, public, advert string
	}{
		{"host mode", nil, "http", config.TURNConfig{}, "10.0.0.5:25001", "10.0.0.5:25001", "10.0.0.5:25001"},
		{"host mode ignores to", nil, "turn", config.TURNConfig{}, "10.0.0.5:25002", "10.0.0.5:25002", "10.0.0.5:25002"},
		{"bridge binds to", bridge, "http", config.TURNConfig{}, "0.0.0.0:8080", "10.0.0.5:25001", "10.0.0.5:25001"},
		{"bridge to -1 is the host port", bridge, "same", config.TURNConfig{}, "0.0.0.0:25003", "10.0.0.5:25003", "10.0.0.5:25003"},
		{"bridge without to", bridge, "unset", config.TURNConfig{}, "0.0.0.0:25004", "10.0.0.5:25004", "10.0.0.5:25004"},
		{"public address", bridge, "turn", config.TURNConfig{PublicAddress: "203.0.113.10"}, "0.0.0.0:3478", "10.0.0.5:25002", "203.0.113.10:25002"},
		{"public address and port", nil, "turn", config.TURNConfig{PublicAddress: "203.0.113.10", PublicPort: "41000"}, "10.0.0.5:25002", "10.0.0.5:25002", "203.0.113.10:41000"},
		{"public port only", bridge, "turn", config.TURNConfig{PublicPort: "41000"}, "0.0.0.0:3478", "10.0.0.5:25002", "10.0.0.5:41000"},
		{"ipv6 public address", nil, "turn", config.TURNConfig{PublicAddress: "2001:db8::1"}, "10.0.0.5:25002", "10.0.0.5:25002", "[2001:db8::1]:25002"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := &drivers.TaskConfig{NetworkIsolation: c.iso, Resources: &drivers.Resources{Ports: ports}}
			b, err := portAddr(cfg, "turn_port", c.label)
			if err != nil {
				t.Fatal(err)
			}
			tc := &config.TaskConfig{TURN: c.turn}
			if b.listen != c.listen || b.public != c.public || advertisedTURN(b, tc) != c.advert {
				t.Fatalf("got listen %s public %s advertised %s; want %s %s %s", b.listen, b.public, advertisedTURN(b, tc), c.listen, c.public, c.advert)
			}
			if b.bridge != (c.iso != nil) {
				t.Fatalf("bridge = %v with isolation %+v", b.bridge, c.iso)
			}
		})
	}
	t.Run("relay address from Nomad's alloc address", func(t *testing.T) {
		cfg := &drivers.TaskConfig{NetworkIsolation: bridge, Resources: &drivers.Resources{Ports: ports},
			Env: map[string]string{"NOMAD_ALLOC_IP_turn": "172.26.64.7"}}
		b, _ := portAddr(cfg, "turn_port", "turn")
		if got := relayIP(cfg, "turn", b); got != "172.26.64.7" {
			t.Fatalf("relay IP %q, want 172.26.64.7", got)
		}
		cfg.NetworkIsolation = nil
		b, _ = portAddr(cfg, "turn_port", "turn")
		if got := relayIP(cfg, "turn", b); got != "" {
			t.Fatalf("host mode relay IP %q, want none (the listen address)", got)
		}
	})
	t.Run("missing label names the field", func(t *testing.T) {
		_, err := portAddr(&drivers.TaskConfig{Resources: &drivers.Resources{Ports: ports}}, "http_port", "web")
		if err == nil || err.Error() != `http_port: no port labelled "web" in the group's network block; add network { port "web" {} } to the group` {
			t.Fatalf("error: %v", err)
		}
	})
}
