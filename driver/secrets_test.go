package driver

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
)

// TestSessionNeverHoldsTheFleetSecret: a gateway pool session's config (the
// supervisor's only source) carries its own claim key, not the fleet
// secret, and is root's and unreadable to the task user.
func TestSessionNeverHoldsTheFleetSecret(t *testing.T) {
	const secret = "fleet-secret-0123456789abcdef"
	h := newHarness(t, nil)
	task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h"},
		Gateway: config.GatewayConfig{Secret: secret}})
	startTask(t, h, task)
	rts, _ := filepath.Glob(filepath.Join(sharedDir, "rt", task.AllocID[:8]+"-*"))
	if len(rts) != 1 {
		t.Fatalf("runtime dir: %v", rts)
	}
	path := filepath.Join(rts[0], sessionapi.ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) {
		t.Fatal("the session's config holds the fleet secret")
	}
	cfg, err := sessionapi.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := claim.SessionKey(secret, task.AllocID)
	if cfg.ClaimKey != hex.EncodeToString(want[:]) {
		t.Fatalf("claim key %q, want the session's own key", cfg.ClaimKey)
	}
	var st syscall.Stat_t
	must(t, syscall.Stat(path, &st))
	if st.Uid != 0 || st.Mode&0o077 != 0 {
		t.Fatalf("session config is uid %d mode %o, want root's 0600", st.Uid, st.Mode&0o777)
	}
}

// TestReadableSecretFileRefused: a job that renders a session secret into a
// file the app's user can read is refused with the file and the fix named.
func TestReadableSecretFileRefused(t *testing.T) {
	const token = "player-token-0123456789"
	cases := []struct {
		name string
		mode os.FileMode
		want string // "" = starts
	}{
		{"world-readable", 0o644, "secrets/player.env"},
		{"root-only", 0o400, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h"}, Auth: config.AuthConfig{Token: token}})
			must(t, os.WriteFile(filepath.Join(task.TaskDir().SecretsDir, "player.env"), []byte("PLAYER_TOKEN="+token+"\n"), c.mode))
			must(t, os.Chmod(filepath.Join(task.TaskDir().SecretsDir, "player.env"), c.mode))
			_, _, err := h.StartTask(task)
			if c.want == "" {
				if err != nil {
					t.Fatalf("StartTask: %v", err)
				}
				_ = h.StopTask(task.ID, 0, "SIGKILL")
				_ = h.DestroyTask(task.ID, true)
				return
			}
			if err == nil {
				_ = h.DestroyTask(task.ID, true)
				t.Fatal("started with the player token in a file the app can read")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `perms = "0400"`) {
				t.Fatalf("error %v, want it to name %s and the fix", err, c.want)
			}
		})
	}
}
