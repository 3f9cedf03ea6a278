//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsPrefix names the network namespaces the e2e tests create, followed
// by a role and the pid of the test process that owns them, so that a
// later run can tell a crashed run's leftovers from a live run's.
const netnsPrefix = "pse2e-"

// netns is a network namespace of the test's own (ip netns add): traffic
// sent into it cannot reach the host's interfaces unless the test wires it
// there, which it never does.
type netns struct {
	name, path string
}

// newNetns creates a namespace with its loopback up and removes it (with
// every link and iptables rule inside) when the test ends.
func newNetns(t *testing.T, role string) *netns {
	t.Helper()
	removeStaleNetns(t)
	n := &netns{name: fmt.Sprintf("%s%s-%d", netnsPrefix, role, os.Getpid())}
	n.path = filepath.Join("/run/netns", n.name)
	_ = exec.Command("ip", "netns", "del", n.name).Run() // this process's own earlier test
	sh(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("remove network namespace %s: %v %s", n.name, err, out)
		}
	})
	sh(t, "ip", "-n", n.name, "link", "set", "lo", "up")
	return n
}

// removeStaleNetns deletes the namespaces of e2e runs whose process is gone
// (a run that was killed before its cleanup).
func removeStaleNetns(t *testing.T) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), netnsPrefix) {
			continue
		}
		pid, err := strconv.Atoi(e.Name()[strings.LastIndexByte(e.Name(), '-')+1:])
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			t.Logf("remove a crashed run's network namespace %s: %v %s", e.Name(), err, out)
		}
	}
}

// command runs name inside the namespace. nsenter enters the network
// namespace only: unlike `ip netns exec` it keeps the mount namespace, so
// a Nomad agent keeps /sys and its cgroups.
func (n *netns) command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + n.path, "--", name}, args...)...)
}

// sh runs a command inside the namespace and fails the test on error.
func (n *netns) sh(t *testing.T, name string, args ...string) {
	t.Helper()
	sh(t, "nsenter", append([]string{"--net=" + n.path, "--", name}, args...)...)
}

// iptables adds a rule inside the namespace and removes it when the test
// (or subtest) ends.
func (n *netns) iptables(t *testing.T, table, chain string, rule ...string) {
	t.Helper()
	n.sh(t, "iptables", append([]string{"-w", "-t", table, "-I", chain, "1"}, rule...)...)
	t.Cleanup(func() {
		_ = n.command("iptables", append([]string{"-w", "-t", table, "-D", chain}, rule...)...).Run()
	})
}

// dial opens a connection from inside the namespace: the socket is made on
// a thread that has entered it, and a socket stays in the namespace it was
// made in. A nil namespace is the host's.
func (n *netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if n == nil {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Left locked when switching back fails: the thread then ends with
		// this goroutine instead of serving others in the wrong namespace.
		own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			done <- result{nil, fmt.Errorf("open this thread's network namespace: %w", err)}
			return
		}
		defer own.Close()
		target, err := os.Open(n.path)
		if err != nil {
			done <- result{nil, fmt.Errorf("open network namespace %s: %w", n.name, err)}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{nil, fmt.Errorf("enter network namespace %s: %w", n.name, err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// dialTimeout is net.DialTimeout from inside the namespace.
func (n *netns) dialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.dial(ctx, network, addr)
}

// client is an HTTP client whose connections start inside the namespace.
func (n *netns) client(timeout time.Duration, tlsConfig *tls.Config) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: n.dial, TLSClientConfig: tlsConfig}}
}
