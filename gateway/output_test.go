package gateway_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pixelstream/nomad-driver-pixelstream/gateway"
)

// TestMain lets a test run the gateway's Main in a child process (the
// whole of what an operator would see on stdout and stderr).
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("PIXELSTREAM_TEST_GATEWAY_MAIN"); ok {
		os.Exit(gateway.Main(strings.Split(args, "\n")))
	}
	os.Exit(m.Run())
}

// TestNoSecretInAnyOutput feeds bad flags to a gateway whose config file
// sets every secret (fleet secret, operator token, Nomad token, visitor
// token or JWT key): the usage text and the errors (under Nomad: the task's
// stderr log) never show one; a secret flag's default reads "(set)".
func TestNoSecretInAnyOutput(t *testing.T) {
	secrets := map[string]string{
		"secret":         "fleet-secret-SHOULD-NOT-LEAK-0001",
		"operator_token": "operator-token-SHOULD-NOT-LEAK-02",
		"nomad_token":    "nomad-token-SHOULD-NOT-LEAK-00003",
		"hmac_key":       "jwt-hmac-key-SHOULD-NOT-LEAK-0000000000004",
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "gw.hcl")
	hcl := `secret = "` + secrets["secret"] + `"
operator_token = "` + secrets["operator_token"] + `"
nomad_token = "` + secrets["nomad_token"] + `"
auth {
  mode = "jwt"
  algorithm = "HS256"
  hmac_key = "` + secrets["hmac_key"] + `"
  issuer = "i"
  audience = "a"
}
`
	if err := os.WriteFile(conf, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-config", conf, "-typo"},
		{"-config", conf, "-h"},
		{"-config", conf, "-min-free", "many"},
		{"-config", conf, "-listen", "nowhere", "-max-sessions", "0"},
		{"-config", conf, "-operator-listen", "127.0.0.1:1", "-listen", "256.0.0.1:1"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PIXELSTREAM_TEST_GATEWAY_MAIN="+strings.Join(args, "\n"))
		out, _ := cmd.CombinedOutput()
		if len(out) == 0 {
			t.Fatalf("gateway %v printed nothing; want usage or an error", args)
		}
		for name, v := range secrets {
			if strings.Contains(string(out), v) {
				t.Fatalf("gateway %v printed the %s:\n%s", args, name, out)
			}
		}
		if args[2] == "-typo" && !strings.Contains(string(out), "(set)") {
			t.Fatalf("usage of a configured gateway does not say the secrets are (set):\n%s", out)
		}
	}
}
