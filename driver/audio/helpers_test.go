package audio

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// testUser is the non-root user the stacks run as when the tests run as root
// (as in CI). Create it with: useradd --system --create-home pixelstream
const testUser = "pixelstream"

// secondUser runs the other stack of the isolation test; Debian always has it.
const secondUser = "nobody"

// credFor returns the credential to run a stack as name, or nil when the
// tests do not run as root (then everything runs as the current user).
func credFor(t *testing.T, name string) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("tests run as root and start the audio stack as user %q, which does not exist: %v (create it: useradd --system --create-home %s)", name, err, name)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// syncBuffer collects the stack's component output for assertions.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testDirs makes a short base dir the stack's user can traverse.
func testDirs(t *testing.T) (runtimeDir, stateDir string) {
	t.Helper()
	base, err := os.MkdirTemp("/tmp", "psa-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(base, "rt"), filepath.Join(base, "state")
}

type testStack struct {
	*Stack
	cred *syscall.Credential
	log  *syncBuffer
	home string
}

// startStack starts a stack as cred; tweak adjusts the config first.
func startStack(t *testing.T, cred *syscall.Credential, tweak func(*Config)) *testStack {
	t.Helper()
	rt, state := testDirs(t)
	logs := &syncBuffer{}
	cfg := Config{
		RuntimeDir: rt,
		StateDir:   state,
		Log:        logs,
		Logger:     hclog.New(&hclog.LoggerOptions{Name: "audio", Level: hclog.Debug, Output: testWriter{t}}),
		Credential: cred,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v\ncomponent output:\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if t.Failed() {
			t.Logf("component output:\n%s", logs.String())
		}
	})
	return &testStack{Stack: s, cred: cred, log: logs, home: state}
}

// testWriter sends the stack's own log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// appCmd builds a command run the way the session runs the app: as the
// stack's user with the stack's Env.
func appCmd(ctx context.Context, s *testStack, asUser *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.home, "LANG=C"}, s.Env()...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: asUser}
	return cmd
}

// runApp runs a client of stack s as user asUser and returns its combined output.
func runApp(s *testStack, asUser *syscall.Credential, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := appCmd(ctx, s, asUser, name, args...).CombinedOutput()
	return string(out), err
}

func mustRunApp(t *testing.T, s *testStack, name string, args ...string) string {
	t.Helper()
	out, err := runApp(s, s.cred, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func pidOf(t *testing.T, s *Stack, name string) int {
	t.Helper()
	for _, c := range s.Components() {
		if c.Name == name {
			if c.PID == 0 {
				t.Fatalf("%s is not running: %+v", name, c)
			}
			return c.PID
		}
	}
	t.Fatalf("no component %q in %+v", name, s.Components())
	return 0
}

// processesWithEnv lists pids whose environment mentions the runtime dir:
// every daemon of a stack has it as XDG_RUNTIME_DIR.
func processesWithEnv(t *testing.T, runtimeDir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	needle := []byte("XDG_RUNTIME_DIR=" + runtimeDir + "\x00")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue // gone, or not ours to read (then not ours at all)
		}
		if bytes.Contains(env, needle) {
			pids = append(pids, pid)
		}
	}
	return pids
}
