//go:build e2e

// Package e2e drives a real Nomad agent (built by `make nomad`) with the
// plugin installed, through the nomad CLI as a user would.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// repo is the repository root; the e2e tests use what `make build nomad` wrote.
var repo, _ = filepath.Abs("..")

func bin(name string) string { return filepath.Join(repo, "build", name) }

// agent is a Nomad server+client on loopback with the plugin in its
// plugin_dir. It is not a -dev agent, so it can be killed and restarted with
// its state intact, as on a real node.
type agent struct {
	t       *testing.T
	dir     string
	cfgFile string
	addr    string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the agent process has exited
	logFile *os.File
	ns      *netns       // the network namespace the agent runs in; nil: the host's
	http    *http.Client // reaches the agent's API (inside ns)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// agentOption changes the agent's configuration before it starts.
type agentOption func(t *testing.T, cfg string) string

// withSandboxPaths lets sessions see more of the node (plugin config
// sandbox_paths: the defaults and paths), as an operator sets it for apps
// installed outside the task dir.
func withSandboxPaths(paths ...string) agentOption {
	return func(t *testing.T, cfg string) string {
		all := append(append([]string(nil), config.DefaultSandboxPaths...), paths...)
		quoted, _ := json.Marshal(all)
		if !strings.Contains(cfg, "    runtime_dir = ") {
			t.Fatal("the agent config has no runtime_dir line to put sandbox_paths next to")
		}
		return strings.Replace(cfg, "    runtime_dir = ", fmt.Sprintf("    sandbox_paths = %s\n    runtime_dir = ", quoted), 1)
	}
}

func startAgent(t *testing.T, opts ...agentOption) *agent {
	t.Helper()
	return startAgentIn(t, nil, opts...)
}

// startAgentIn starts the agent inside a network namespace of the test's
// own (nil: the host's): its loopback API, the node's addresses, Nomad's
// bridge and port mappings are all inside it.
func startAgentIn(t *testing.T, ns *netns, opts ...agentOption) *agent {
	t.Helper()
	for _, b := range []string{"nomad", "nomad-driver-pixelstream", "probe"} {
		if _, err := os.Stat(bin(b)); err != nil {
			t.Fatalf("%s missing: run `make build nomad` first (%v)", bin(b), err)
		}
	}
	dir, err := os.MkdirTemp("", "pixelstream-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	pluginDir := filepath.Join(dir, "plugins")
	_ = os.MkdirAll(pluginDir, 0o755)
	if err := copyFile(bin("nomad-driver-pixelstream"), filepath.Join(pluginDir, "nomad-driver-pixelstream")); err != nil {
		t.Fatal(err)
	}
	httpPort, rpcPort, serfPort := freePort(t), freePort(t), freePort(t)
	a := &agent{t: t, dir: dir, addr: fmt.Sprintf("http://127.0.0.1:%d", httpPort), ns: ns, http: http.DefaultClient}
	if ns != nil {
		a.http = ns.client(0, nil)
	}
	a.cfgFile = filepath.Join(dir, "agent.hcl")
	// The agent is the one `make demo` runs (example/agent.hcl), on ports of
	// its own and with its own runtime dir.
	example, err := os.ReadFile(filepath.Join(repo, "example", "agent.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(example), "@DIR@", dir)
	cfg = strings.Replace(cfg, `runtime_dir = "/run/pixelstream"`, fmt.Sprintf("runtime_dir = %q", filepath.Join(dir, "rt")), 1)
	if !strings.Contains(cfg, filepath.Join(dir, "rt")) {
		t.Fatal("example/agent.hcl no longer sets runtime_dir = \"/run/pixelstream\"; update the e2e agent")
	}
	for _, o := range opts {
		cfg = o(t, cfg)
	}
	cfg += fmt.Sprintf(`
log_level = "DEBUG"
ports {
  http = %d
  rpc  = %d
  serf = %d
}
`, httpPort, rpcPort, serfPort)
	if err := os.WriteFile(a.cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a.logFile, err = os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.shutdown)
	a.start()
	return a
}

func (a *agent) start() {
	a.t.Helper()
	a.cmd = a.command(bin("nomad"), "agent", "-config", a.cfgFile)
	a.cmd.Stdout, a.cmd.Stderr = a.logFile, a.logFile
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(a.cmd, a.exited)
	a.waitDriverHealthy()
}

// waitDriverHealthy waits until the node is ready with the driver healthy.
func (a *agent) waitDriverHealthy() {
	a.t.Helper()
	a.eventually(90*time.Second, "the node to be ready with a healthy pixelstream driver", func() bool {
		select {
		case <-a.exited:
			a.t.Fatalf("the Nomad agent exited at start (see its log below)")
		default:
		}
		// The node list omits drivers; read the node itself.
		var list []struct{ ID string }
		if err := a.api("/v1/nodes", &list); err != nil || len(list) == 0 {
			return false
		}
		var node struct {
			Status  string
			Drivers map[string]struct{ Healthy bool }
		}
		if err := a.api("/v1/node/"+list[0].ID, &node); err != nil {
			return false
		}
		return node.Status == "ready" && node.Drivers["pixelstream"].Healthy
	})
}

// kill9 kills the agent and the plugin process it started, as a crash would.
func (a *agent) kill9() (pluginPid int) {
	a.t.Helper()
	pluginPid = a.pluginPid()
	_ = a.cmd.Process.Kill()
	<-a.exited
	if pluginPid > 0 {
		_ = syscall.Kill(pluginPid, syscall.SIGKILL)
	}
	return pluginPid
}

// pluginPid finds the plugin process: the plugin binary run without arguments
// (the executors and supervisors are the same binary with arguments).
func (a *agent) pluginPid() int {
	path := filepath.Join(a.dir, "plugins", "nomad-driver-pixelstream")
	for _, pid := range allPids() {
		args := cmdline(pid)
		if len(args) == 1 && args[0] == path {
			return pid
		}
	}
	return 0
}

func (a *agent) shutdown() {
	// Stop every job first so sessions end the way a user would end them.
	var jobs []struct{ ID string }
	running := a.cmd != nil && a.exited != nil
	if running {
		select {
		case <-a.exited:
			running = false
		default:
		}
	}
	if running && a.api("/v1/jobs", &jobs) == nil {
		for _, j := range jobs {
			_, _ = a.nomadErr("job", "stop", "-purge", j.ID)
		}
		// The agent leaves running allocations alone when it exits: wait
		// until every session has ended and its alloc dir (with Nomad's
		// secrets and private tmpfs mounts) is gone, or the test leaves
		// executors and mounts behind.
		if left := a.waitAllocsGone(60 * time.Second); left != "" {
			a.t.Errorf("stopping every job left this behind after 60s:\n%s", left)
		}
	}
	if running {
		_ = a.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-a.exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	if a.t.Failed() {
		b, _ := os.ReadFile(a.logFile.Name())
		lines := strings.Split(string(b), "\n")
		a.t.Logf("agent log (last 60 lines):\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
	a.logFile.Close()
	_ = os.RemoveAll(a.dir)
}

// waitAllocsGone waits until no allocation is pending or running, no
// process runs from the agent's data dir and nothing is mounted under it.
// It returns what was still there at the timeout ("" when all went).
func (a *agent) waitAllocsGone(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		var list []allocation
		if err := a.api("/v1/allocations", &list); err != nil {
			left = append(left, "allocation list: "+err.Error())
		}
		for _, al := range list {
			if al.ClientStatus == "pending" || al.ClientStatus == "running" {
				left = append(left, fmt.Sprintf("allocation %s %s", al.ID, al.ClientStatus))
			}
		}
		if len(left) == 0 {
			// Terminal allocations are collected on the next GC; ask for it
			// so their mounts go now.
			_, _ = a.nomadErr("system", "gc")
			left = append(left, a.leftUnder()...)
		}
		if len(left) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(left, "\n")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// leftUnder lists processes (other than the agent and its plugin) whose
// command line or working dir is in the agent's dir, and mounts under it.
func (a *agent) leftUnder() []string {
	var left []string
	dataDir := filepath.Join(a.dir, "data")
	plugin := filepath.Join(a.dir, "plugins", "nomad-driver-pixelstream")
	for _, pid := range allPids() {
		if pid == a.cmd.Process.Pid || !alive(pid) {
			continue
		}
		args := cmdline(pid)
		if len(args) == 1 && args[0] == plugin {
			continue // the plugin itself goes with the agent
		}
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if strings.HasPrefix(cwd, dataDir) || (len(args) > 0 && strings.HasPrefix(args[0], a.dir)) {
			left = append(left, fmt.Sprintf("process %d: %s", pid, strings.Join(args, " ")))
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dataDir+"/") {
			left = append(left, "mount "+f[4])
		}
	}
	return left
}

// command runs name in the agent's network namespace.
func (a *agent) command(name string, args ...string) *exec.Cmd {
	if a.ns != nil {
		return a.ns.command(name, args...)
	}
	return exec.Command(name, args...)
}

// nomad runs the nomad CLI against the agent and fails the test on error.
func (a *agent) nomad(args ...string) string {
	a.t.Helper()
	out, err := a.nomadErr(args...)
	if err != nil {
		a.t.Fatalf("nomad %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (a *agent) nomadErr(args ...string) (string, error) {
	cmd := a.command(bin("nomad"), args...)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+a.addr)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (a *agent) api(path string, out any) error {
	resp, err := a.http.Get(a.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// eventually polls cond until it holds or the timeout passes.
func (a *agent) eventually(timeout time.Duration, what string, cond func() bool) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			a.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type allocation struct {
	ID           string
	ClientStatus string
	TaskStates   map[string]struct {
		State    string
		Failed   bool
		Restarts int
		Events   []struct {
			Type           string
			DisplayMessage string
			ExitCode       int
		}
	}
}

func (a *agent) allocs(job string) []allocation {
	var list []allocation
	_ = a.api("/v1/job/"+job+"/allocations", &list)
	return list
}

// waitAlloc waits until the job has an allocation in the given client status.
func (a *agent) waitAlloc(job, status string) allocation {
	a.t.Helper()
	var found allocation
	a.eventually(90*time.Second, fmt.Sprintf("an allocation of %s to be %s", job, status), func() bool {
		for _, al := range a.allocs(job) {
			if al.ClientStatus == status {
				found = al
				return true
			}
			if al.ClientStatus == "failed" && status != "failed" {
				a.t.Fatalf("allocation failed: %+v", al.TaskStates)
			}
		}
		return false
	})
	return found
}

func allPids() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// alive reports whether pid is a live (non-zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
