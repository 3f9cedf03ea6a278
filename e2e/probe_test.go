//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProbeJobLifecycle runs example/probe.nomad.hcl through a real agent:
// logs, exec, signal, an agent and plugin crash with the session surviving,
// and a stop that leaves nothing behind.
func TestProbeJobLifecycle(t *testing.T) {
	a := startAgent(t)
	// Every example job is valid for this Nomad.
	for _, job := range [][]string{
		{"-var", "probe=" + bin("probe"), "../example/probe.nomad.hcl"},
		{"-var", "streamer=" + bin("streamer"), "../example/demo.nomad.hcl"},
		{"../example/unreal.nomad.hcl"},
	} {
		a.nomad(append([]string{"job", "validate"}, job...)...)
	}
	a.nomad("job", "run", "-detach", "-var", "probe="+bin("probe"), "../example/probe.nomad.hcl")
	alloc := a.waitAlloc("probe", "running")

	// nomad alloc logs shows the app's output: its display at the job's size.
	var logs string
	a.eventually(30*time.Second, "the probe's display line in nomad alloc logs", func() bool {
		logs, _ = a.nomadErr("alloc", "logs", alloc.ID, "game")
		return strings.Contains(logs, "size=1280x720")
	})
	disp := regexp.MustCompile(`display (:\d+) size=1280x720`).FindStringSubmatch(logs)[1]
	// The probe prints its pid in the session's PID namespace; the node
	// knows it by another number.
	appPid := 0
	for _, p := range sessionProcs(a, alloc.ID) {
		if args := cmdline(p.pid); len(args) > 0 && args[0] == bin("probe") {
			appPid = p.pid
		}
	}
	if appPid == 0 {
		t.Fatal("the probe's process is not among the session's on the node")
	}
	if uid := regexp.MustCompile(`uid=(\d+)`).FindStringSubmatch(logs)[1]; uid == "0" {
		t.Fatal("the app runs as root")
	}

	// The supervisor's own lines are on stderr.
	stderr := a.nomad("alloc", "logs", "-stderr", alloc.ID, "game")
	if !strings.Contains(stderr, "pixelstream: app started") {
		t.Errorf("stderr lacks the supervisor's start line:\n%s", stderr)
	}

	// nomad alloc exec lands in the task's environment with DISPLAY set.
	out := a.nomad("alloc", "exec", "-task", "game", alloc.ID, "sh", "-c", `echo "DISPLAY=$DISPLAY"`)
	if strings.TrimSpace(out) != "DISPLAY="+disp {
		t.Fatalf("alloc exec printed %q, want DISPLAY=%s", out, disp)
	}

	// nomad alloc signal reaches the app.
	a.nomad("alloc", "signal", "-s", "SIGUSR1", alloc.ID, "game")
	a.eventually(20*time.Second, "the app to report SIGUSR1", func() bool {
		logs, _ = a.nomadErr("alloc", "logs", alloc.ID, "game")
		return strings.Contains(logs, "probe: signal SIGUSR1")
	})

	// Kill -9 the agent and the plugin, start the agent again: the same app
	// keeps running, and its logs keep flowing through the new agent.
	pluginPid := a.kill9()
	if pluginPid == 0 {
		t.Fatal("plugin process not found")
	}
	if !alive(appPid) {
		t.Fatal("the app died with the agent")
	}
	a.start()
	alloc = a.waitAlloc("probe", "running")
	if got := alloc.TaskStates["game"].Restarts; got != 0 {
		t.Fatalf("task restarted %d times after the agent restart", got)
	}
	if !alive(appPid) {
		t.Fatalf("app pid %d gone after the agent restart", appPid)
	}
	ticks := func() int {
		l, _ := a.nomadErr("alloc", "logs", alloc.ID, "game")
		m := regexp.MustCompile(`probe: tick (\d+)`).FindAllStringSubmatch(l, -1)
		if len(m) == 0 {
			return 0
		}
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return n
	}
	first := ticks()
	a.eventually(30*time.Second, "new log lines after the restart", func() bool { return ticks() > first+2 })
	logs = a.nomad("alloc", "logs", alloc.ID, "game")
	if strings.Count(logs, "probe: pid=") != 1 {
		t.Fatalf("the app was started more than once:\n%s", logs)
	}
	// The recovered driver still controls the session.
	out = a.nomad("alloc", "exec", "-task", "game", alloc.ID, "sh", "-c", `echo "DISPLAY=$DISPLAY"`)
	if strings.TrimSpace(out) != "DISPLAY="+disp {
		t.Fatalf("alloc exec after recovery printed %q", out)
	}

	// nomad job stop ends the session and leaves nothing behind.
	xvfbPids := pidsOf("Xvfb", a.dir)
	if len(xvfbPids) != 1 {
		t.Fatalf("want one Xvfb of this agent's session, found %v", xvfbPids)
	}
	a.nomad("job", "stop", "-detach", "probe")
	a.waitAlloc("probe", "complete")
	if alive(appPid) {
		t.Errorf("app pid %d still alive after job stop", appPid)
	}
	for _, p := range xvfbPids {
		if alive(p) {
			t.Errorf("Xvfb pid %d still alive after job stop", p)
		}
	}
	// The display's socket (in the sandbox's /tmp, the task dir's tmp/) is
	// gone.
	sock := filepath.Join(a.dir, "data", "alloc", alloc.ID, "game", "tmp", ".X11-unix", "X"+strings.TrimPrefix(disp, ":"))
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("%s left behind", sock)
	}
	a.eventually(30*time.Second, "the runtime dir to be emptied", func() bool {
		entries, _ := os.ReadDir(a.dir + "/rt")
		return len(entries) == 0
	})
	for _, pid := range allPids() {
		args := cmdline(pid)
		if len(args) > 1 && strings.HasPrefix(args[0], a.dir) && args[1] == "session" {
			t.Errorf("session supervisor pid %d still running: %v", pid, args)
		}
	}
}

// pidsOf finds processes whose command line has name as its program and
// contains every one of the given words.
func pidsOf(name string, words ...string) []int {
	var out []int
	for _, pid := range allPids() {
		args := cmdline(pid)
		if len(args) == 0 || !strings.HasSuffix(args[0], name) {
			continue
		}
		all := strings.Join(args, " ")
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(all, w)
		}
		if ok {
			out = append(out, pid)
		}
	}
	return out
}
