package audio

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestConfigErrorsNameTheField(t *testing.T) {
	long := "/tmp/" + strings.Repeat("r", 100)
	cases := []struct {
		name  string
		tweak func(*Config)
		want  []string
	}{
		{"empty runtime dir", func(c *Config) { c.RuntimeDir = "" }, []string{"RuntimeDir is empty"}},
		{"relative runtime dir", func(c *Config) { c.RuntimeDir = "rt" }, []string{`RuntimeDir "rt" is not absolute`}},
		{"unclean runtime dir", func(c *Config) { c.RuntimeDir = "/tmp/x/../rt" }, []string{`use "/tmp/rt"`}},
		{"runtime dir too long for a socket", func(c *Config) { c.RuntimeDir = long }, []string{"RuntimeDir", "108-byte unix socket limit", "at most 94 fit"}},
		{"empty state dir", func(c *Config) { c.StateDir = "" }, []string{"StateDir is empty"}},
		{"relative state dir", func(c *Config) { c.StateDir = "state" }, []string{`StateDir "state" is not absolute`}},
		{"nil log", func(c *Config) { c.Log = nil }, []string{"Log writer is nil", "io.Discard"}},
		{"negative restarts", func(c *Config) { c.MaxRestarts = -1 }, []string{"MaxRestarts is -1"}},
		{"negative timeout", func(c *Config) { c.ReadyTimeout = -time.Second }, []string{"ReadyTimeout is -1s"}},
		{"missing program", func(c *Config) { c.Bins.WirePlumber = "/nonexistent/wireplumber" },
			[]string{"/nonexistent/wireplumber", "apt-get install wireplumber"}},
		{"two mistakes at once", func(c *Config) { c.RuntimeDir = ""; c.Log = nil }, []string{"RuntimeDir is empty", "Log writer is nil"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{RuntimeDir: "/tmp/psa-cfg/rt", StateDir: "/tmp/psa-cfg/state", Log: io.Discard}
			tc.tweak(&cfg)
			s, err := Start(context.Background(), cfg)
			if err == nil {
				_ = s.Stop(context.Background())
				t.Fatal("Start accepted a bad config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, serr := os.Stat("/tmp/psa-cfg"); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("a refused config created files: %v", serr)
			}
		})
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	cases := []struct {
		name      string
		bins      func(*Binaries)
		component string
		want      string
	}{
		{"session manager exits", func(b *Binaries) { b.WirePlumber = "/bin/false" }, CompWirePlumber, "exited with status 1"},
		{"pulse server exits", func(b *Binaries) { b.PipeWirePulse = "/bin/false" }, CompPipeWirePulse, "exited with status 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt, state := testDirs(t)
			cfg := Config{RuntimeDir: rt, StateDir: state, Log: io.Discard, Credential: credFor(t, testUser)}
			tc.bins(&cfg.Bins)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s, err := Start(ctx, cfg)
			if err == nil {
				_ = s.Stop(ctx)
				t.Fatal("Start succeeded with a component that cannot run")
			}
			var ce *ComponentError
			if !errors.As(err, &ce) || ce.Component != tc.component || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v: want a *ComponentError for %s saying %q", err, tc.component, tc.want)
			}
			if left := processesWithEnv(t, rt); len(left) > 0 {
				t.Errorf("processes left after a failed Start: %v", left)
			}
			if _, err := os.Stat(rt); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("runtime dir after a failed Start: %v, want it gone", err)
			}
		})
	}
}

func TestRuntimeDirInUseIsRefusedAndKept(t *testing.T) {
	rt, state := testDirs(t)
	if err := os.Mkdir(rt, 0o700); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(rt, "someone-else")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cred := credFor(t, testUser)
	if cred != nil {
		if err := os.Chown(rt, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Start(context.Background(), Config{RuntimeDir: rt, StateDir: state, Log: io.Discard, Credential: cred})
	if err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("Start in a used runtime dir: %v, want a refusal saying it is not empty", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("Start removed another's runtime dir: %v", err)
	}
}

func TestDetect(t *testing.T) {
	t.Run("installed", func(t *testing.T) {
		info := Detect()
		if !info.Available || len(info.Missing) > 0 || info.Hint != "" {
			t.Fatalf("Detect() = %+v, want available (the packages in .ci/apt-audio.txt are installed)", info)
		}
		if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(info.PipeWireVersion) {
			t.Errorf("PipeWireVersion = %q, want x.y.z", info.PipeWireVersion)
		}
	})
	t.Run("missing", func(t *testing.T) {
		info := DetectBinaries(Binaries{WirePlumber: "/nonexistent/wireplumber", PipeWirePulse: "/nonexistent/pipewire-pulse"})
		if info.Available {
			t.Fatalf("Detect with missing programs = %+v, want unavailable", info)
		}
		if len(info.Missing) != 2 || !strings.Contains(info.Hint, "apt-get install pipewire-pulse wireplumber") {
			t.Errorf("Missing %v, Hint %q: want both programs and the packages to install", info.Missing, info.Hint)
		}
	})
}
