package turn

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		{"minimal", Config{Listen: "10.0.0.5:3478"}, ""},
		{"missing listen", Config{}, "Listen"},
		{"listen without port", Config{Listen: "10.0.0.5"}, "Listen"},
		{"unspecified listen needs public ip", Config{Listen: "0.0.0.0:3478"}, "PublicIP"},
		{"unspecified listen with public ip", Config{Listen: "0.0.0.0:3478", PublicIP: "203.0.113.1"}, ""},
		{"bad public ip", Config{Listen: "10.0.0.5:3478", PublicIP: "turn.example.com"}, "PublicIP"},
		{"bad relay ip", Config{Listen: "10.0.0.5:3478", RelayIP: "x"}, "RelayIP"},
		{"family mismatch", Config{Listen: "10.0.0.5:3478", PublicIP: "2001:db8::1"}, "address family"},
		{"cert without key", Config{Listen: "10.0.0.5:3478", CertFile: "/x.pem"}, "CertFile/KeyFile"},
		{"missing cert file", Config{Listen: "10.0.0.5:3478", CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"}, "CertFile"},
		{"short secret", Config{Listen: "10.0.0.5:3478", Secret: []byte("short")}, "Secret"},
		{"negative ttl", Config{Listen: "10.0.0.5:3478", CredentialTTL: -time.Second}, "CredentialTTL"},
		{"negative grace", Config{Listen: "10.0.0.5:3478", RevokeGrace: -time.Second}, "RevokeGrace"},
		{"negative quota", Config{Listen: "10.0.0.5:3478", Quotas: Quotas{PerPlayer: -1}}, "Quotas.PerPlayer"},
		{"half port range", Config{Listen: "10.0.0.5:3478", RelayPortMin: 50000}, "RelayPortMin"},
		{"inverted port range", Config{Listen: "10.0.0.5:3478", RelayPortMin: 50000, RelayPortMax: 40000}, "RelayPortMin"},
		{"too many sockets", Config{Listen: "10.0.0.5:3478", Sockets: 1000}, "Sockets"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestDefaultsApplied(t *testing.T) {
	st, err := Config{Listen: "10.0.0.5:3478"}.validate(2)
	if err != nil {
		t.Fatal(err)
	}
	if st.realm != DefaultRealm || st.ttl != DefaultCredentialTTL || st.grace != DefaultRevokeGrace ||
		st.quotas != DefaultQuotas || st.sockets != 2 || st.sockBuf != DefaultSocketBuffer ||
		st.publicIP.String() != "10.0.0.5" || st.relayIP.String() != "10.0.0.5" {
		t.Errorf("defaults not applied: %+v", st)
	}
}
