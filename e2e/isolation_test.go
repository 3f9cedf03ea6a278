//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// TestIsolation runs two sessions on one agent, the second with a hostile
// app (example/hostile) that tries, the real way, to read, signal, trace or
// impersonate the first and to read its own session's secrets; the first
// keeps streaming to a headless Chromium player throughout. Then a hostile
// app plants a symlink where the driver prepares the home dir and exits, so
// Nomad restarts it: the target must stay root's. Both with the default (no
// user: a uid per session) and with one user named for every job.
func TestIsolation(t *testing.T) {
	if _, err := os.Stat(bin("hostile")); err != nil {
		t.Fatalf("%s missing: run `make build` first", bin("hostile"))
	}
	for _, c := range []struct{ name, user string }{
		{"a uid per session", ""},
		{"one shared user", "pixelstream"},
	} {
		t.Run(c.name, func(t *testing.T) { testIsolation(t, c.user) })
	}
}

type hostileResult struct {
	Attempt string `json:"attempt"`
	Blocked bool   `json:"blocked"`
	Detail  string `json:"detail"`
}

var streamerEvent = regexp.MustCompile(`streamer on (127\.0\.0\.1:\d+)`)

func testIsolation(t *testing.T, user string) {
	a := startAgent(t)
	userLine := ""
	if user != "" {
		userLine = fmt.Sprintf("user = %q", user)
	}

	// The victim: a demo session with a player token, watched in Chromium.
	token := fmt.Sprintf("victim-token-%d", time.Now().UnixNano())
	path := demoVariant(t, "victim", token)
	if userLine != "" {
		b, _ := os.ReadFile(path)
		src := strings.Replace(string(b), `driver       = "pixelstream"`, `driver       = "pixelstream"`+"\n      "+userLine, 1)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.nomad("job", "run", "-detach", "-var", "streamer="+bin("streamer"), "-var", "resolution=640x480", path)
	victim := &session{job: "victim", width: 640, height: 480, token: token}
	victim.wait(t, a)
	defer func() {
		if t.Failed() {
			victim.dumpLogs(t, a)
		}
	}()
	browser := startChromium(t)
	page, _, _ := browser.open(t, "victim", victim.url(true, ""))
	st := page.play(t)

	// Where the victim is, as any process on the node can find it.
	var pids []string
	var appCmdline []string
	for _, p := range sessionProcs(a, victim.alloc) {
		pids = append(pids, fmt.Sprint(p.pid))
		if args := cmdline(p.pid); strings.Contains(strings.Join(args, " "), "-PixelStreamingURL=") {
			appCmdline = args
		}
	}
	if len(pids) < 3 || appCmdline == nil {
		t.Fatalf("victim's processes not found on the node: %v", pids)
	}
	taskDir := filepath.Join(a.dir, "data", "alloc", victim.alloc, "game")
	rts, _ := filepath.Glob(filepath.Join(a.dir, "rt", victim.alloc[:8]+"-*"))
	if len(rts) != 1 {
		t.Fatalf("victim's runtime dir: %v", rts)
	}
	streamerAddr := ""
	for _, e := range a.allocDetail(victim.alloc).TaskStates["game"].Events {
		if m := streamerEvent.FindStringSubmatch(e.DisplayMessage); m != nil {
			streamerAddr = m[1]
		}
	}
	if streamerAddr == "" {
		t.Fatal("victim's streamer address not in its events")
	}

	// Another user on the node reads the victim app's command line, key
	// and all, and poses as its streamer: refused at the upgrade.
	var streamerURL string
	for _, arg := range appCmdline {
		if v, ok := strings.CutPrefix(arg, "-PixelStreamingURL="); ok {
			streamerURL = v
		}
	}
	if resp := dialAsNobody(t, streamerURL); resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("another user with the streamer key from the app's command line: %v, want 401", resp)
	}

	// The hostile session.
	args, _ := json.Marshal([]string{
		"-victim-pids", strings.Join(pids, ","),
		"-victim-task-dir", taskDir,
		"-victim-alloc-dir", filepath.Join(a.dir, "data", "alloc", victim.alloc, "alloc"),
		"-victim-runtime-dir", rts[0],
		"-victim-streamer", streamerAddr,
	})
	a.nomad("job", "run", "-detach", hostileJob(t, "attacker", userLine, string(args), 0))
	attacker := a.waitAlloc("attacker", "running")
	var results []hostileResult
	var logs string
	a.eventually(90*time.Second, "the hostile app's report", func() bool {
		logs, _ = a.nomadErr("alloc", "logs", attacker.ID, "game")
		return strings.Contains(logs, `HOSTILE {"attempt":"done"`)
	})
	for _, line := range strings.Split(logs, "\n") {
		if rest, ok := strings.CutPrefix(line, "HOSTILE "); ok {
			var r hostileResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				t.Fatalf("hostile report line %q: %v", line, err)
			}
			results = append(results, r)
		}
	}
	if len(results) < 30 {
		t.Fatalf("the hostile app reported %d attempts:\n%s", len(results), logs)
	}
	for _, r := range results {
		mark := "blocked"
		if !r.Blocked {
			mark = "SUCCEEDED"
			t.Errorf("attack succeeded: %s: %s", r.Attempt, r.Detail)
		}
		t.Logf("%-9s %s: %s", mark, r.Attempt, r.Detail)
	}
	for _, secret := range []string{token, "attacker-own-secret-7f3a9c"} {
		if strings.Contains(logs, secret) {
			t.Errorf("a session secret (%s) is in the hostile app's output", secret)
		}
	}

	// The bystander kept streaming throughout, and still does.
	page.advances(t, st, 30, 30*time.Second, "after the hostile app's attempts")
	if al := a.allocDetail(victim.alloc); al.ClientStatus != "running" || al.TaskStates["game"].Restarts != 0 {
		t.Fatalf("victim is %s with %d restarts after the attack", al.ClientStatus, al.TaskStates["game"].Restarts)
	}

	// The restart attack: local/home becomes a symlink to a root-owned
	// directory, the app exits, Nomad restarts the task, the driver
	// prepares the task dir again as root.
	target := filepath.Join(t.TempDir(), "root-owned")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	symArgs, _ := json.Marshal([]string{"-symlink-home-to", target})
	a.nomad("job", "run", "-detach", hostileJob(t, "symlinker", userLine, string(symArgs), 1))
	sym := a.waitAlloc("symlinker", "failed")
	var saw bool
	for _, e := range a.allocDetail(sym.ID).TaskStates["game"].Events {
		if strings.Contains(e.DisplayMessage, "local/home is not a directory") {
			saw = true
		}
	}
	if !saw {
		t.Errorf("the restart was not refused with the symlink named; events: %+v", a.allocDetail(sym.ID).TaskStates["game"].Events)
	}
	var fi syscall.Stat_t
	if err := syscall.Stat(target, &fi); err != nil || fi.Uid != 0 || fi.Mode&0o777 != 0o755 {
		t.Fatalf("symlink target after the restart: uid %d mode %o (%v), want root's 0755", fi.Uid, fi.Mode&0o777, err)
	}
	page.advances(t, page.state(t), 30, 30*time.Second, "after the restart attack")
}

// hostileJob is a job running example/hostile with args (a JSON list), as
// userLine says, restarted restarts times.
func hostileJob(t *testing.T, name, userLine, args string, restarts int) string {
	t.Helper()
	src := fmt.Sprintf(`
job %[1]q {
  datacenters = ["*"]
  group "g" {
    network {
      port "http" {}
    }
    restart {
      attempts = %[5]d
      delay    = "1s"
      mode     = "fail"
    }
    task "game" {
      driver = "pixelstream"
      %[2]s
      # The attacker's own secret, delivered as the README says.
      template {
        data        = "PLAYER_TOKEN=attacker-own-secret-7f3a9c"
        destination = "secrets/player.env"
        env         = true
        perms       = "0400"
      }
      config {
        executable   = %[3]q
        args         = %[4]s
        render       = "none"
        unreal_flags = false
        http_port    = "http"
        auth {
          token = "${PLAYER_TOKEN}"
        }
      }
      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
`, name, userLine, bin("hostile"), args, restarts)
	path := filepath.Join(t.TempDir(), name+".nomad.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// dialAsNobody connects to url as a WebSocket from a socket of user nobody:
// the test runs as root, so one locked thread takes that effective uid
// while it creates the socket.
func dialAsNobody(t *testing.T, url string) *http.Response {
	t.Helper()
	const nobody = 65534
	ch := make(chan *http.Response, 1)
	go func() {
		runtime.LockOSThread()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), nobody, ^uintptr(0)); e != 0 {
			ch <- nil
			return
		}
		c, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			c.Close()
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0)); e == 0 {
			runtime.UnlockOSThread()
		}
		if resp == nil && err == nil {
			resp = &http.Response{StatusCode: http.StatusSwitchingProtocols, Status: "101 upgraded"}
		}
		ch <- resp
	}()
	return <-ch
}
