package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secret = "-secret=gateway-secret-0123456789"

func TestLoadFileThenFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.hcl")
	if err := os.WriteFile(path, []byte(`
listen       = "0.0.0.0:9000"
min_free     = 2
max_sessions = 5
route        = "redirect"
dispatch_meta = { game = "demo" }
auth {
  mode     = "jwt"
  algorithm = "HS256"
  hmac_key = "0123456789abcdef0123456789abcdef"
  issuer   = "iss"
  audience = "aud"
}
tls {
  cert_file = "c.pem"
  key_file  = "k.pem"
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load([]string{"-config", path, "-max-sessions=7", secret}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "0.0.0.0:9000" || cfg.MinFree != 2 || cfg.MaxSessions != 7 || cfg.Route != RouteRedirect ||
		cfg.Auth.Mode != AuthJWT || cfg.Auth.Cookie != "pixelstream_auth" || cfg.TLS.CertFile != "c.pem" ||
		cfg.DispatchMeta["game"] != "demo" || cfg.Job != "pixelstream-session" {
		t.Fatalf("loaded %+v auth %+v", cfg, cfg.Auth)
	}
}

func TestLoadRefusesBadFieldsByName(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "secret:"},
		{[]string{secret, "-min-free=5", "-max-sessions=2"}, "min_free:"},
		{[]string{secret, "-max-sessions=0"}, "max_sessions:"},
		{[]string{secret, "-route=teleport"}, "route:"},
		{[]string{secret, "-listen=nope"}, "listen:"},
		{[]string{secret, "-nomad-addr=127.0.0.1:4646"}, "nomad_addr:"},
		{[]string{secret, "-auth-mode=jwt"}, "auth.algorithm:"},
		{[]string{secret, "-auth-mode=jwt", "-auth-jwt-algorithm=HS256", "-auth-jwt-hmac-key=short"}, "auth.hmac_key:"},
		{[]string{secret, "-auth-mode=token", "-auth-token=short"}, "auth.token:"},
		{[]string{secret, "-state-interval=1ms"}, "state_interval:"},
		{[]string{secret, "-tls-cert-file=c.pem"}, "tls:"},
		{[]string{secret, "-dispatch-meta= x=y"}, "dispatch_meta:"},
		{[]string{secret, "stray"}, "unexpected argument"},
		{[]string{secret, "-operator-token=short"}, "operator_token:"},
		{[]string{secret, "-operator-token=gateway-secret-0123456789"}, "operator_token: must not be the fleet secret"},
		{[]string{secret, "-operator-listen=nope"}, "operator_listen:"},
		{[]string{secret, "-max-claims-per-address=0"}, "max_claims_per_address:"},
		{[]string{secret, "-max-waiting-per-address=0"}, "max_waiting_per_address:"},
		{[]string{secret, "-max-event-streams=0"}, "max_event_streams:"},
		{[]string{secret, "-frame-ancestor=https://a.example/path"}, "frame_ancestors:"},
		{[]string{secret, "-frame-ancestor=*"}, "frame_ancestors:"},
		{[]string{secret, "-trusted-proxy=10.0.0.0/33"}, "trusted_proxies:"},
		{[]string{secret, "-session-server-name=s.example"}, "session_tls.server_name:"},
	} {
		_, err := Load(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%v): %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
}

func TestSecretFromEnvironment(t *testing.T) {
	t.Setenv("PIXELSTREAM_GATEWAY_SECRET", "from-the-environment-0123")
	cfg, err := Load(nil, io.Discard)
	if err != nil || cfg.Secret != "from-the-environment-0123" {
		t.Fatalf("%v %v", cfg, err)
	}
}
