//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHostileSuiteWhileBrowserStreams runs the hostile-input suite
// (hostile/) against a live session of a real agent while headless Chromium
// plays it: the browser keeps getting frames through every attack, and the
// session is the same process afterwards, never restarted.
func TestHostileSuiteWhileBrowserStreams(t *testing.T) {
	a := startAgent(t)
	br := startChromium(t)
	s := submitSession(t, a, "under-attack", 640, 480, "")
	defer func() {
		if t.Failed() {
			s.dumpLogs(t, a)
		}
	}()
	s.wait(t, a)
	super := supervisorPid(a, s.alloc)
	if super == 0 {
		t.Fatalf("no session supervisor found for allocation %s", s.alloc)
	}

	p, status, _ := br.open(t, "watcher", s.url(false, ""))
	if status != 200 {
		t.Fatalf("player page answered %d", status)
	}
	st := p.play(t)

	cmd := exec.Command("go", "test", "-count=1", "-v", "./hostile/")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("PIXELSTREAM_HOSTILE_TARGET=ws://127.0.0.1:%d/", s.http),
		fmt.Sprintf("PIXELSTREAM_HOSTILE_PID=%d", super))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the hostile suite: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// While the suite attacks, the browser keeps playing: checked in
	// rounds until the suite ends.
	rounds := 0
	for running := true; running; {
		select {
		case err := <-done:
			running = false
			if err != nil {
				t.Errorf("hostile suite against the live session failed: %v\n%s", err, failures(out.String()))
			}
		default:
			st = p.advances(t, st, 10, 30*time.Second, fmt.Sprintf("during the hostile suite (round %d)", rounds))
			rounds++
		}
	}
	st = p.advances(t, st, 30, 30*time.Second, "after the hostile suite")
	ran := strings.Count(out.String(), "--- PASS")
	t.Logf("hostile suite: %d passing tests and rows against the live session; the browser advanced through %d rounds, now %s", ran, rounds, st)
	if ran == 0 {
		t.Errorf("the hostile suite ran nothing against the live session:\n%s", tail(out.String(), 40))
	}

	d := a.allocDetail(s.alloc)
	if d.ClientStatus != "running" || d.TaskStates["game"].Restarts != 0 {
		t.Errorf("after the suite the allocation is %s with %d restarts, want running with none", d.ClientStatus, d.TaskStates["game"].Restarts)
	}
	if now := supervisorPid(a, s.alloc); now != super {
		t.Errorf("session supervisor is pid %d after the suite, was %d", now, super)
	}
}

// supervisorPid is the pid of the allocation's session supervisor, 0 if none.
func supervisorPid(a *agent, allocID string) int {
	for _, p := range sessionProcs(a, allocID) {
		if f := strings.Fields(p.args); len(f) > 1 && f[1] == "session" {
			return p.pid
		}
	}
	return 0
}

// failures keeps what go test printed about failing tests: everything
// but the run, pass and skip lines and the passing rows' logs.
func failures(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "=== RUN") || strings.HasPrefix(t, "--- PASS") || strings.HasPrefix(t, "--- SKIP") ||
			strings.Contains(t, "peak RSS") || strings.Contains(t, "attacker: close") || strings.Contains(t, "external target has none") {
			continue
		}
		keep = append(keep, l)
	}
	return tail(strings.Join(keep, "\n"), 120)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
