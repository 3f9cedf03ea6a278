package driver

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/client/lib/cgroupslib"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/session"
)

// sharedDir holds copies of the test binary and the probe app where the
// non-root task user can execute them (go test's own dirs are root-only).
var sharedDir string

// sessionBinary is the copy of this test binary that the executor
// re-executes as the session supervisor.
var sessionBinary string

// probeBinary is the project's test app (example/probe).
var probeBinary string

func TestMain(m *testing.M) {
	// The executor re-executes this test binary: as "executor" (handled in
	// the executor package's init) and as "session".
	if len(os.Args) > 1 && os.Args[1] == "session" {
		os.Exit(session.Main(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == ExecutorCommand {
		os.Exit(ServeExecutor(os.Args[2:]))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// The executor puts tasks into Nomad's cgroups, which the client agent
	// creates at start-up; in tests nobody else does.
	if err := cgroupslib.Init(hclog.NewNullLogger(), topology.UsableCores().String()); err != nil {
		fmt.Fprintln(os.Stderr, "init Nomad cgroups (the tests must run as root, like a Nomad client):", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "pixelstream-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sharedDir = dir
	self, _ := os.Executable()
	sessionBinary = filepath.Join(dir, "driver.test")
	if err := copyFile(self, sessionBinary, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "copy test binary:", err)
		return 1
	}
	probeBinary = filepath.Join(dir, "probe")
	if p := os.Getenv("PIXELSTREAM_PROBE"); p != "" {
		// A machine without Go (a lent GPU node) brings a prebuilt probe.
		if err := copyFile(p, probeBinary, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "copy probe:", err)
			return 1
		}
		return m.Run()
	}
	build := exec.Command("go", "build", "-o", probeBinary, "../example/probe")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build probe:", err)
		return 1
	}
	return m.Run()
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
