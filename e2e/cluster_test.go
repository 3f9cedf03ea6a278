//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cluster is three Nomad agents on this machine: one server and two
// clients, each client with its own data dir, ports, plugin dir, runtime
// dir, node_class and dynamic port range, as two machines would have. The
// server schedules with the "spread" algorithm, so sessions land on the
// least loaded client (each dispatched session is a job of its own, so a
// job's spread block would not spread them).
type cluster struct {
	t       *testing.T
	dir     string
	server  *agent // the CLI and API go through the server's HTTP address
	srvNode *clusterNode
	clients []*clusterNode
}

// clusterNode is one agent process of the cluster.
type clusterNode struct {
	name    string
	dir     string
	addr    string
	cfgFile string
	cmd     *exec.Cmd
	exited  chan struct{}
	logFile *os.File
	killed  bool
}

// startCluster starts the server and two clients (node classes c1 and c2)
// and waits until both clients are ready with the pixelstream driver.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	for _, b := range []string{"nomad", "nomad-driver-pixelstream", "streamer"} {
		if _, err := os.Stat(bin(b)); err != nil {
			t.Fatalf("%s missing: run `make build nomad` first (%v)", bin(b), err)
		}
	}
	// The agents (and the logmon, executor and session processes they
	// leave behind on a killed client) must not inherit the descriptors
	// this process got from its parent, such as the one holding
	// flock /tmp/e2e.lock: a leftover would hold the machine-wide lock.
	for fd := 3; fd < 1024; fd++ {
		syscall.CloseOnExec(fd)
	}
	// Short: the plugin's runtime_dir must stay within 56 bytes.
	dir, err := os.MkdirTemp("", "psgw-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	c := &cluster{t: t, dir: dir}
	t.Cleanup(c.shutdown)

	rpc := freePort(t)
	srv := c.node("server", `
server {
  enabled           = true
  bootstrap_expect  = 1
  # A lost client is noticed in seconds, not the default tens of seconds.
  heartbeat_grace   = "4s"
  min_heartbeat_ttl = "2s"
  default_scheduler_config {
    scheduler_algorithm = "spread"
  }
}
`, rpc)
	c.srvNode = srv
	c.server = &agent{t: t, dir: srv.dir, addr: srv.addr, http: http.DefaultClient}
	for i, class := range []string{"c1", "c2"} {
		lo := 21000 + i*3000
		plugins := filepath.Join(dir, class, "plugins")
		_ = os.MkdirAll(plugins, 0o755)
		if err := copyFile(bin("nomad-driver-pixelstream"), filepath.Join(plugins, "nomad-driver-pixelstream")); err != nil {
			t.Fatal(err)
		}
		n := c.node(class, fmt.Sprintf(`
plugin_dir = %q
client {
  enabled           = true
  servers           = ["127.0.0.1:%d"]
  node_class        = %q
  network_interface = "lo"
  min_dynamic_port  = %d
  max_dynamic_port  = %d
  options {
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
}
plugin "nomad-driver-pixelstream" {
  config {
    runtime_dir = %q
  }
}
# The gateway job runs the host's binary.
plugin "raw_exec" {
  config {
    enabled = true
  }
}
`, plugins, rpc, class, lo, lo+2999, filepath.Join(dir, class, "rt")), 0)
		c.clients = append(c.clients, n)
	}
	c.server.eventually(120*time.Second, "both clients ready with a healthy pixelstream driver", func() bool {
		for _, n := range append([]*clusterNode{srv}, c.clients...) {
			select {
			case <-n.exited:
				t.Fatalf("agent %s exited at start:\n%s", n.name, n.logTail(40))
			default:
			}
		}
		return len(c.readyNodes()) == 2
	})
	return c
}

// node writes an agent's config and starts it. rpc, when not 0, is the
// RPC port (the server's, which the clients are told).
func (c *cluster) node(name, extra string, rpc int) *clusterNode {
	t := c.t
	dir := filepath.Join(c.dir, name)
	// The data dir made here, traversable: sessions run as a non-root
	// user in task dirs below it (an agent that makes it itself, as a
	// client-only agent does, makes it 0700).
	_ = os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	if rpc == 0 {
		rpc = freePort(t)
	}
	httpPort, serf := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`
name                 = %q
data_dir             = %q
bind_addr            = "127.0.0.1"
log_level            = "DEBUG"
disable_update_check = true
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
ports {
  http = %d
  rpc  = %d
  serf = %d
}
`, name, filepath.Join(dir, "data"), httpPort, rpc, serf) + extra
	n := &clusterNode{name: name, dir: dir, addr: fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		cfgFile: filepath.Join(dir, "agent.hcl")}
	if err := os.WriteFile(n.cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	if n.logFile, err = os.Create(filepath.Join(dir, "agent.log")); err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(bin("nomad"), "agent", "-config", n.cfgFile)
	n.cmd.Stdout, n.cmd.Stderr = n.logFile, n.logFile
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	return n
}

func (n *clusterNode) logTail(lines int) string {
	b, _ := os.ReadFile(n.logFile.Name())
	l := strings.Split(string(b), "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

// nodeInfo is a client as the server sees it.
type nodeInfo struct {
	ID        string
	Name      string
	NodeClass string
	Status    string
	Drivers   map[string]struct{ Healthy bool }
}

// readyNodes lists the clients that are ready with a healthy driver.
func (c *cluster) readyNodes() []nodeInfo {
	var list []struct{ ID string }
	if err := c.server.api("/v1/nodes", &list); err != nil {
		return nil
	}
	var out []nodeInfo
	for _, l := range list {
		var n nodeInfo
		if c.server.api("/v1/node/"+l.ID, &n) == nil && n.Status == "ready" && n.Drivers["pixelstream"].Healthy {
			out = append(out, n)
		}
	}
	return out
}

// nodeClass maps a node id to its node_class.
func (c *cluster) nodeClass(id string) string {
	var n nodeInfo
	if err := c.server.api("/v1/node/"+id, &n); err != nil {
		return ""
	}
	return n.NodeClass
}

// client returns the client node of a node_class.
func (c *cluster) client(class string) *clusterNode {
	for _, n := range c.clients {
		if n.name == class {
			return n
		}
	}
	c.t.Fatalf("no client %q", class)
	return nil
}

// killClient kills a client agent and every process its sessions run (the
// executors, supervisors, Xvfb and the apps), as a machine dying would.
func (c *cluster) killClient(class string) {
	n := c.client(class)
	root := n.dir
	var victims []int
	for _, pid := range allPids() {
		if pid == n.cmd.Process.Pid {
			continue
		}
		if args := cmdline(pid); len(args) > 0 && strings.HasPrefix(args[0], root) {
			victims = append(victims, pid)
			victims = append(victims, descendants(pid)...)
		}
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.exited
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	n.killed = true
}

// descendants lists every process below pid.
func descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range allPids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses: fields start
		// after the last ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				children[pp] = append(children[pp], p)
			}
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, ch := range children[p] {
			out = append(out, ch)
			walk(ch)
		}
	}
	walk(pid)
	return out
}

// shutdown stops every job (the gateways first, then the sessions), then
// the agents; processes and mounts a killed client left are removed.
func (c *cluster) shutdown() {
	t := c.t
	if c.server != nil && c.srvNode != nil {
		var jobs []struct {
			ID, Type string
			ParentID string
		}
		if c.server.api("/v1/jobs", &jobs) == nil {
			for _, j := range jobs {
				if j.Type == "service" {
					_, _ = c.server.nomadErr("job", "stop", "-purge", j.ID)
				}
			}
			_ = c.server.api("/v1/jobs", &jobs)
			for _, j := range jobs {
				_, _ = c.server.nomadErr("job", "stop", "-purge", "-detach", j.ID)
			}
		}
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			var list []allocation
			busy := false
			if c.server.api("/v1/allocations", &list) == nil {
				for _, al := range list {
					busy = busy || al.ClientStatus == "running" || al.ClientStatus == "pending"
				}
			}
			if !busy {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		_, _ = c.server.nomadErr("system", "gc")
	}
	for _, n := range append(append([]*clusterNode{}, c.clients...), c.srvNode) {
		if n == nil || n.cmd == nil {
			continue
		}
		select {
		case <-n.exited:
		default:
			_ = n.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-n.exited:
			case <-time.After(30 * time.Second):
				_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
				<-n.exited
			}
		}
		if t.Failed() {
			t.Logf("agent %s log (last 40 lines):\n%s", n.name, n.logTail(40))
		}
		n.logFile.Close()
	}
	// What a killed client left running, and its mounts.
	for _, pid := range allPids() {
		if args := cmdline(pid); len(args) > 0 && strings.HasPrefix(args[0], c.dir+"/") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var under []string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], c.dir+"/") {
			under = append(under, f[4])
		}
	}
	for i := len(under) - 1; i >= 0; i-- {
		if err := syscall.Unmount(under[i], syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", under[i], err)
		}
	}
	_ = os.RemoveAll(c.dir)
}

// nomadOut runs the nomad CLI against the cluster and returns its output.
func (c *cluster) nomadOut(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(bin("nomad"), args...)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+c.server.addr)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("nomad %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}
