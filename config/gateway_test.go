package config

import (
	"strings"
	"testing"
	"time"
)

// TestTaskConfigGatewayBlock: the gateway block parses through the
// client's path, and bad combinations are refused naming the field.
func TestTaskConfigGatewayBlock(t *testing.T) {
	tc, err := parseTask(t, `executable = "local/Game.sh"
gateway {
  secret         = "0123456789abcdef0123"
  claim_timeout  = "30s"
  return_to_pool = true
}`)
	if err != nil {
		t.Fatal(err)
	}
	if tc.Gateway.Secret != "0123456789abcdef0123" || !tc.Gateway.ReturnToPool || tc.Gateway.ClaimTTL() != 30*time.Second {
		t.Fatalf("gateway block: %+v", tc.Gateway)
	}
	if err := tc.Validate(); err != nil {
		t.Fatalf("valid gateway block refused: %v", err)
	}
	if (GatewayConfig{}).ClaimTTL() != 60*time.Second {
		t.Fatal("claim_timeout default is not 60s")
	}

	for _, tc := range []struct {
		name string
		g    GatewayConfig
		auth string
		want string
	}{
		{"short secret", GatewayConfig{Secret: "short"}, "", "gateway.secret: use at least 16"},
		{"with auth.token", GatewayConfig{Secret: "0123456789abcdef0123"}, "0123456789abcdef0123", "auth.token: a pool session"},
		{"bad claim_timeout", GatewayConfig{Secret: "0123456789abcdef0123", ClaimTimeout: "soon"}, "", "gateway.claim_timeout"},
		{"claim_timeout too long", GatewayConfig{Secret: "0123456789abcdef0123", ClaimTimeout: "2h"}, "", "gateway.claim_timeout"},
		{"options without a secret", GatewayConfig{ReturnToPool: true}, "", "gateway.secret: a gateway block needs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseTask(t, `executable = "local/Game.sh"`)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Gateway, cfg.Auth.Token = tc.g, tc.auth
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
