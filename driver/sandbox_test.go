package driver

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// TestHiddenEnv: the app's environment loses every variable that carries a
// session secret (as the value or inside it) and the well-known token
// variables, and keeps the rest of the job's environment.
func TestHiddenEnv(t *testing.T) {
	tc := &config.TaskConfig{Auth: config.AuthConfig{Token: "player-token-1234"}, Gateway: config.GatewayConfig{Secret: "fleet-secret-5678"}}
	env := map[string]string{
		"PLAYER_TOKEN":      "player-token-1234",
		"GATEWAY_SECRET":    "fleet-secret-5678",
		"AUTH_HEADER":       "Bearer fleet-secret-5678",
		"NOMAD_TOKEN":       "s.abc",
		"VAULT_TOKEN":       "hvs.x",
		"NOMAD_ALLOC_ID":    "a1",
		"GAME_MAP":          "Lobby",
		"NOMAD_SECRETS_DIR": "/secrets",
	}
	got := hiddenEnv(env, tc)
	want := []string{"AUTH_HEADER", "GATEWAY_SECRET", "NOMAD_TOKEN", "PLAYER_TOKEN", "VAULT_TOKEN"}
	if !slices.Equal(got, want) {
		t.Fatalf("hidden %v, want %v", got, want)
	}
	// A short secret is matched only as a whole value: "1" must not hide
	// every variable with a 1 in it.
	short := hiddenEnv(map[string]string{"A": "1", "B": "x1y"}, &config.TaskConfig{Auth: config.AuthConfig{Token: "1"}})
	if !slices.Equal(short, []string{"A"}) {
		t.Fatalf("short secret hid %v, want [A]", short)
	}
}

// TestPlanSandbox: what a session sees of the node.
func TestPlanSandbox(t *testing.T) {
	base := t.TempDir()
	allocDir := filepath.Join(base, "data", "alloc", "a1")
	taskDir := filepath.Join(allocDir, "game")
	for _, d := range []string{filepath.Join(taskDir, "local"), filepath.Join(taskDir, "private"), filepath.Join(base, "apps")} {
		must(t, os.MkdirAll(d, 0o755))
	}
	runtimeDir := filepath.Join(base, "rt", "a1-1234")
	pc := config.DefaultPluginConfig()
	cfg := &drivers.TaskConfig{Name: "game", AllocDir: allocDir, User: "pixelstream"}
	cases := []struct {
		name       string
		executable string
		wantExe    string
		wantMount  string // a TaskPath that must be among the mounts
		wantErr    string
	}{
		{"app in the task dir", filepath.Join(taskDir, "local", "Game.sh"), "/local/Game.sh", "", ""},
		{"app on the node", filepath.Join(base, "apps", "game"), filepath.Join(base, "apps", "game"), filepath.Join(base, "apps"), ""},
		{"app in a system dir", "/usr/bin/true", "/usr/bin/true", "/usr", ""},
		{"app in another alloc", filepath.Join(base, "data", "alloc", "b2", "game", "local", "x"), "", "", "executable:"},
		{"app at the root: the file alone", "/game", "/game", "/game", ""},
		{"app next to Nomad's data dir: the file alone", filepath.Join(base, "game"), filepath.Join(base, "game"), filepath.Join(base, "game"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan, err := planSandbox(pc, cfg, "/opt/nomad/plugins/nomad-driver-pixelstream", runtimeDir, c.executable, "/usr/bin/Xvfb", 999, 995)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("plan: %v, want an error naming %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if plan.executable != c.wantExe {
				t.Errorf("executable %q, want %q", plan.executable, c.wantExe)
			}
			byTask := map[string]*drivers.MountConfig{}
			for _, m := range plan.mounts {
				byTask[m.TaskPath] = m
				if within(m.HostPath, filepath.Join(base, "data", "alloc")) && !within(m.HostPath, allocDir) {
					t.Errorf("mounts another allocation's %s", m.HostPath)
				}
			}
			for _, p := range []string{"/usr", sandboxSelf, runtimeDir, sandboxAllocDir, sandboxPrivateDir, c.wantMount} {
				if p == "" {
					continue
				}
				if byTask[p] == nil {
					t.Errorf("no mount at %s: %v", p, plan.mounts)
				}
			}
			if strings.Contains(c.name, "the file alone") && byTask[filepath.Dir(c.executable)] != nil {
				t.Errorf("mounts %s, the directory the app's file alone should be mounted from", filepath.Dir(c.executable))
			}
			if m := byTask["/usr"]; m != nil && !m.Readonly {
				t.Error("/usr is writable in the sandbox")
			}
			if m := byTask[sandboxPrivateDir]; m != nil && filepath.Base(m.HostPath) != emptyDirName {
				t.Errorf("Nomad's private dir is not masked: %+v", m)
			}
		})
	}
	t.Run("Xvfb outside what sessions see", func(t *testing.T) {
		_, err := planSandbox(pc, cfg, "/x", runtimeDir, "", filepath.Join(base, "apps", "Xvfb"), 1, 1)
		if err == nil || !strings.Contains(err.Error(), "xvfb_path") {
			t.Fatalf("plan: %v, want an error naming xvfb_path", err)
		}
	})
	t.Run("sandbox_paths over the alloc dir", func(t *testing.T) {
		bad := pc
		bad.SandboxPaths = append(slices.Clone(pc.SandboxPaths), filepath.Join(base, "data"))
		_, err := planSandbox(bad, cfg, "/x", runtimeDir, "", "/usr/bin/Xvfb", 1, 1)
		if err == nil || !strings.Contains(err.Error(), "sandbox_paths") {
			t.Fatalf("plan: %v, want an error naming sandbox_paths", err)
		}
	})
}
