//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// consul is a -dev Consul agent on loopback (built by `make consul`).
type consul struct {
	addr    string // host:port of the HTTP API
	cmd     *exec.Cmd
	logFile *os.File
}

// startConsul starts a Consul dev agent on free ports and waits until it has
// elected itself leader, so that services registered with it are served.
func startConsul(t *testing.T) *consul {
	t.Helper()
	if _, err := os.Stat(bin("consul")); err != nil {
		t.Skipf("%s missing: run `make consul` to build the pinned Consul agent (%v)", bin("consul"), err)
	}
	httpPort := freePort(t)
	c := &consul{addr: fmt.Sprintf("127.0.0.1:%d", httpPort)}
	var err error
	c.logFile, err = os.Create(filepath.Join(t.TempDir(), "consul.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin("consul"), "agent", "-dev",
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", fmt.Sprint(httpPort),
		"-dns-port", fmt.Sprint(freePort(t)),
		"-grpc-port", fmt.Sprint(freePort(t)),
		"-grpc-tls-port", fmt.Sprint(freePort(t)),
		"-serf-lan-port", fmt.Sprint(freePort(t)),
		"-serf-wan-port", fmt.Sprint(freePort(t)),
		"-server-port", fmt.Sprint(freePort(t)),
		// Publish every check result at once: by default a check whose status
		// stays the same has its new output held back for five minutes, and
		// the output is what shows that Consul really ran the check.
		"-hcl", `check_update_interval = "0s"`,
		// No call to HashiCorp's update-check service.
		"-hcl", `disable_update_check = true`)
	c.cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1")
	c.cmd.Stdout, c.cmd.Stderr = c.logFile, c.logFile
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start consul: %v", err)
	}
	t.Cleanup(func() { c.shutdown(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		var leader string
		if err := c.api("/v1/status/leader", &leader); err == nil && leader != "" {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("consul at %s elected no leader within 60s", c.addr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *consul) shutdown(t *testing.T) {
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _, _ = c.cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	if t.Failed() {
		b, _ := os.ReadFile(c.logFile.Name())
		lines := strings.Split(string(b), "\n")
		t.Logf("consul log (last 40 lines):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
	c.logFile.Close()
}

func (c *consul) api(path string, out any) error {
	resp, err := http.Get("http://" + c.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// consulInstance is one service instance as Consul's health API reports it,
// with the status of its own check (not the node's).
type consulInstance struct {
	ID, Address string
	Port        int
	Tags        []string
	Meta        map[string]string
	Status      string // "passing", "warning" or "critical"
	Output      string // what Consul's last check run saw
}

// instance returns the service instance registered for the allocation, or
// false while there is none.
func (c *consul) instance(service, allocID string) (consulInstance, bool) {
	var entries []struct {
		Service struct {
			ID, Address string
			Port        int
			Tags        []string
			Meta        map[string]string
		}
		Checks []struct {
			ServiceID, Status, Output string
		}
	}
	if err := c.api("/v1/health/service/"+service, &entries); err != nil {
		return consulInstance{}, false
	}
	for _, e := range entries {
		// Nomad names its registrations _nomad-task-<alloc id>-...
		if !strings.Contains(e.Service.ID, allocID) {
			continue
		}
		in := consulInstance{ID: e.Service.ID, Address: e.Service.Address, Port: e.Service.Port,
			Tags: e.Service.Tags, Meta: e.Service.Meta}
		for _, ch := range e.Checks {
			if ch.ServiceID == e.Service.ID {
				in.Status, in.Output = ch.Status, ch.Output
			}
		}
		return in, in.Status != ""
	}
	return consulInstance{}, false
}

// consulJob is a service job whose group registers name in Consul on the
// "http" port with an HTTP check on /readyz, tagged with the streamer id.
// The session runs executable with args (the driver adds the Unreal flags).
func consulJob(t *testing.T, name, streamerID, executable string, args ...string) string {
	t.Helper()
	quoted, _ := json.Marshal(args)
	src := fmt.Sprintf(`
job %[1]q {
  datacenters = ["*"]
  group "session" {
    meta {
      streamer_id = %[2]q
    }
    network {
      port "http" {}
    }
    restart {
      attempts = 0
      mode     = "fail"
    }
    service {
      name     = %[1]q
      port     = "http"
      provider = "consul"
      tags     = ["pixelstream", "streamer-${NOMAD_META_streamer_id}"]
      meta {
        streamer_id = "${NOMAD_META_streamer_id}"
      }
      check {
        type     = "http"
        path     = "/readyz"
        interval = "1s"
        timeout  = "1s"
      }
    }
    task "game" {
      driver       = "pixelstream"
      kill_timeout = "5s"
      config {
        executable   = %[3]q
        args         = %[4]s
        streamer_id  = "${NOMAD_META_streamer_id}"
        resolution   = "640x480"
        render       = "none"
        audio        = false
        http_port    = "http"
        stop_timeout = "5s"
      }
      resources {
        cpu    = 300
        memory = 256
      }
    }
  }
}
`, name, streamerID, executable, quoted)
	path := filepath.Join(t.TempDir(), name+".nomad.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitCheck waits until Consul's check of the allocation's instance reports
// status after having actually run (its output names the HTTP status it saw),
// and returns the instance.
func (a *agent) waitCheck(c *consul, service, allocID, status, output string) consulInstance {
	a.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		in, ok := c.instance(service, allocID)
		if ok && in.Status == status && strings.Contains(in.Output, output) {
			return in
		}
		if time.Now().After(deadline) {
			var services map[string][]string
			_ = c.api("/v1/catalog/services", &services)
			ready := "unreachable"
			if resp, err := http.Get(fmt.Sprintf("http://%s:%d/readyz", in.Address, in.Port)); err == nil {
				ready = resp.Status
				resp.Body.Close()
			}
			a.t.Fatalf("consul did not report %s %s (check output containing %q) within 60s; last seen: %+v (registered: %v, /readyz now %s); catalog: %v",
				service, status, output, in, ok, ready, services)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logsOnFailure shows the task's output when the test fails.
func (a *agent) logsOnFailure(allocID string) {
	t := a.t
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := a.nomadErr("alloc", "logs", allocID, "game")
			errOut, _ := a.nomadErr("alloc", "logs", "-stderr", allocID, "game")
			t.Logf("task stdout:\n%s\ntask stderr:\n%s", out, errOut)
		}
	})
}

// streamerPid finds the stand-in streamer that runs with the given streamer id.
func streamerPid(id string) int {
	for _, pid := range allPids() {
		args := cmdline(pid)
		if len(args) > 0 && args[0] == bin("streamer") && slices.Contains(args, "-PixelStreamingID="+id) {
			return pid
		}
	}
	return 0
}

// TestConsulService runs sessions whose group registers a Consul service with
// an HTTP check on /readyz, against a real Consul agent, and checks that
// Consul shows the service passing only while a streamer is connected.
func TestConsulService(t *testing.T) {
	c := startConsul(t)
	// The Nomad agent takes its Consul address from CONSUL_HTTP_ADDR when its
	// config has no consul block (Nomad's documented default).
	t.Setenv("CONSUL_HTTP_ADDR", c.addr)
	// The reconnect case runs the streamer under a shell that outlives it
	// and starts it again once a gate file appears, as Unreal reconnects to
	// signalling after a drop. The shell's arguments name the streamer and
	// the gate on the node: the plugin config lets sessions see both, as an
	// operator whose launcher uses node paths would set it.
	gate, err := os.MkdirTemp("", "pixelstream-consul-gate-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(gate) })
	_ = os.Chmod(gate, 0o755)
	a := startAgent(t, withSandboxPaths(filepath.Dir(bin("streamer")), gate))
	// Nomad places jobs with Consul services only on nodes where it has
	// fingerprinted Consul.
	a.eventually(60*time.Second, "the node to fingerprint consul", func() bool {
		var list []struct{ ID string }
		if err := a.api("/v1/nodes", &list); err != nil || len(list) == 0 {
			return false
		}
		var node struct{ Attributes map[string]string }
		return a.api("/v1/node/"+list[0].ID, &node) == nil && node.Attributes["consul.version"] != ""
	})

	t.Run("a streamer that never connects keeps the service critical", func(t *testing.T) {
		a.t = t
		a.nomad("job", "run", "-detach", consulJob(t, "consul-hung", "hung-streamer", bin("probe")))
		al := a.waitAlloc("consul-hung", "running")
		in := a.waitCheck(c, "consul-hung", al.ID, "critical", "503")
		if got := a.allocs("consul-hung"); len(got) != 1 || got[0].ClientStatus != "running" {
			t.Fatalf("the session should still be running while its check is critical: %+v", got)
		}
		if in.Port != a.playerPort(al.ID) {
			t.Errorf("consul checks port %d, the session's player port is %d", in.Port, a.playerPort(al.ID))
		}
	})

	t.Run("passing while the streamer is connected, critical when it goes, passing when it is back", func(t *testing.T) {
		a.t = t
		const id = "consul-e2e-streamer"
		// The task keeps running while the stream is gone (see the gate above).
		script := fmt.Sprintf(`"$0" "$@"; until [ -e %q ]; do sleep 0.2; done; exec "$0" "$@"`, filepath.Join(gate, "again"))
		a.nomad("job", "run", "-detach", consulJob(t, "consul-ready", id, "/bin/sh", "-c", script, bin("streamer")))
		al := a.waitAlloc("consul-ready", "running")
		a.logsOnFailure(al.ID)
		port := a.playerPort(al.ID)
		a.waitReady(port, "")

		in := a.waitCheck(c, "consul-ready", al.ID, "passing", "200")
		if !slices.Contains(in.Tags, "streamer-"+id) || in.Meta["streamer_id"] != id {
			t.Errorf("consul instance tags %v meta %v: want tag streamer-%s and meta streamer_id=%s", in.Tags, in.Meta, id, id)
		}
		if in.Address != "127.0.0.1" || in.Port != port {
			t.Errorf("consul instance at %s:%d, the session's player port is 127.0.0.1:%d", in.Address, in.Port, port)
		}
		// The id Consul advertises is the one the session is streaming.
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/streamers", port))
		if err != nil {
			t.Fatal(err)
		}
		// Wilbur's shape: one object per streamer.
		var listed []struct {
			StreamerID string `json:"streamerId"`
		}
		err = json.NewDecoder(resp.Body).Decode(&listed)
		resp.Body.Close()
		var streamers []string
		for _, l := range listed {
			streamers = append(streamers, l.StreamerID)
		}
		if err != nil || !slices.Equal(streamers, []string{id}) {
			t.Fatalf("session streams %v (%v), consul advertises %s", streamers, err, id)
		}

		pid := streamerPid(id)
		if pid == 0 {
			t.Fatalf("no streamer process with -PixelStreamingID=%s", id)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill the streamer: %v", err)
		}
		a.waitCheck(c, "consul-ready", al.ID, "critical", "503")
		if got := a.allocs("consul-ready"); len(got) != 1 || got[0].ClientStatus != "running" {
			t.Fatalf("the session should still be running without its streamer: %+v", got)
		}

		if err := os.WriteFile(filepath.Join(gate, "again"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		a.waitCheck(c, "consul-ready", al.ID, "passing", "200")
	})
}
