//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// lifecycleJob is a batch job running app with the given extra config lines.
func lifecycleJob(t *testing.T, name, app, extra string) string {
	t.Helper()
	src := fmt.Sprintf(`
job %q {
  datacenters = ["*"]
  type        = "batch"
  group "session" {
    network {
      port "http" {}
    }
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    task "game" {
      driver       = "pixelstream"
      kill_timeout = "5s"
      config {
        executable   = %q
        resolution   = "640x480"
        render       = "none"
        audio        = false
        http_port    = "http"
        stop_timeout = "5s"
%s
      }
      resources {
        cpu    = 300
        memory = 256
      }
    }
  }
}
`, name, app, extra)
	path := filepath.Join(t.TempDir(), name+".nomad.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// playerPort is the host port of the allocation's "http" label.
func (a *agent) playerPort(allocID string) int {
	a.t.Helper()
	var alloc struct {
		AllocatedResources struct {
			Shared struct {
				Ports []struct {
					Label string
					Value int
				}
			}
		}
	}
	if err := a.api("/v1/allocation/"+allocID, &alloc); err != nil {
		a.t.Fatal(err)
	}
	for _, p := range alloc.AllocatedResources.Shared.Ports {
		if p.Label == "http" {
			return p.Value
		}
	}
	a.t.Fatalf("allocation %s has no http port", allocID)
	return 0
}

// waitReady waits until the session's /readyz answers 200.
func (a *agent) waitReady(port int, query string) {
	a.t.Helper()
	a.eventually(60*time.Second, "the stream to be ready", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz%s", port, query))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// connectPlayer subscribes a signalling-only player (no WebRTC) to the
// default streamer; for the session's accounting it is a connected player.
func connectPlayer(t *testing.T, port int, query string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://127.0.0.1:%d/%s", port, query), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("player connect (HTTP %d): %v", status, err)
	}
	var cfg map[string]any
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.ReadJSON(&cfg); err != nil || cfg["type"] != "config" {
		t.Fatalf("player config: %v %v", cfg, err)
	}
	if err := c.WriteJSON(map[string]string{"type": "subscribe", "streamerId": "DefaultStreamer"}); err != nil {
		t.Fatal(err)
	}
	return c
}

// taskEvents returns the task's event messages and the last exit code seen.
func taskEvents(al allocation) (string, int) {
	var msgs []string
	code := -1
	for _, e := range al.TaskStates["game"].Events {
		msgs = append(msgs, e.Type+": "+e.DisplayMessage)
		if e.Type == "Terminated" {
			code = e.ExitCode
		}
	}
	return strings.Join(msgs, "\n"), code
}

func TestSessionLifecycle(t *testing.T) {
	a := startAgent(t)

	t.Run("idle timeout ends an unwatched session with exit code 0", func(t *testing.T) {
		a.t = t
		a.nomad("job", "run", "-detach", lifecycleJob(t, "idle", bin("streamer"), `idle_timeout = "3s"`))
		al := a.waitAlloc("idle", "complete")
		events, code := taskEvents(al)
		if code != 0 || al.TaskStates["game"].Failed || !strings.Contains(events, "Idle timeout: no player connected for 3s") {
			t.Fatalf("exit code %d, failed=%v, events:\n%s", code, al.TaskStates["game"].Failed, events)
		}
	})

	t.Run("a connected player keeps it running; leaving starts the countdown", func(t *testing.T) {
		a.t = t
		// Long enough for the player to connect on a loaded machine.
		a.nomad("job", "run", "-detach", lifecycleJob(t, "watched", bin("streamer"), `idle_timeout = "6s"`))
		al := a.waitAlloc("watched", "running")
		port := a.playerPort(al.ID)
		a.waitReady(port, "")
		player := connectPlayer(t, port, "")
		// Three idle timeouts pass with the player connected: still running.
		until := time.Now().Add(18 * time.Second)
		a.eventually(30*time.Second, "three idle timeouts to pass", func() bool {
			for _, x := range a.allocs("watched") {
				if x.ClientStatus != "running" {
					t.Fatalf("session ended with a player connected: %s", x.ClientStatus)
				}
			}
			return time.Now().After(until)
		})
		player.Close()
		al = a.waitAlloc("watched", "complete")
		if events, code := taskEvents(al); code != 0 || !strings.Contains(events, "Idle timeout") {
			t.Fatalf("exit code %d, events:\n%s", code, events)
		}
	})

	t.Run("startup timeout fails a session whose streamer never connects", func(t *testing.T) {
		a.t = t
		// The probe opens the display but never speaks to signalling.
		a.nomad("job", "run", "-detach", lifecycleJob(t, "hung", bin("probe"), `startup_timeout = "3s"`))
		al := a.waitAlloc("hung", "failed")
		events, _ := taskEvents(al)
		for _, want := range []string{"startup_timeout: the app's streamer did not connect to signalling within 3s", "probe: display"} {
			if !strings.Contains(events, want) {
				t.Errorf("events lack %q:\n%s", want, events)
			}
		}
	})

	t.Run("max duration warns the player, then ends the session", func(t *testing.T) {
		a.t = t
		a.nomad("job", "run", "-detach", lifecycleJob(t, "capped", bin("streamer"),
			`max_session_duration = "14s"
        max_session_warning  = "7s"`))
		al := a.waitAlloc("capped", "running")
		port := a.playerPort(al.ID)
		a.waitReady(port, "")
		player := connectPlayer(t, port, "")
		defer player.Close()
		_ = player.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			var m map[string]any
			if err := player.ReadJSON(&m); err != nil {
				t.Fatalf("no sessionWarning before the connection ended: %v", err)
			}
			if m["type"] == "sessionWarning" {
				if !strings.Contains(fmt.Sprint(m["message"]), "ends in 7s") {
					t.Fatalf("warning %v", m)
				}
				break
			}
		}
		al = a.waitAlloc("capped", "complete")
		if events, code := taskEvents(al); code != 0 || !strings.Contains(events, "Max session duration reached (14s)") ||
			!strings.Contains(events, "Warned 1 player") {
			t.Fatalf("exit code %d, events:\n%s", code, events)
		}
	})

	t.Run("per-user session: dispatch with a token, watch, leave, it ends", func(t *testing.T) {
		a.t = t
		a.nomad("job", "run", "-detach", "-var", "streamer="+bin("streamer"), "-var", "idle_timeout=6s", "../example/session.nomad.hcl")
		const token = "0123456789abcdef0123"
		out := a.nomad("job", "dispatch", "-detach", "-meta", "token="+token, "pixelstream-session")
		var child string
		for _, f := range strings.Fields(out) {
			if strings.HasPrefix(f, "pixelstream-session/dispatch-") {
				child = f
			}
		}
		if child == "" {
			t.Fatalf("no dispatched job id in:\n%s", out)
		}
		al := a.waitAlloc(child, "running")
		port := a.playerPort(al.ID)
		a.waitReady(port, "")
		// Without the token: refused before any message.
		if _, resp, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://127.0.0.1:%d/", port), nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("player without token: %v %v", resp, err)
		}
		player := connectPlayer(t, port, "?token="+token)
		player.Close()
		al = a.waitAlloc(child, "complete")
		if events, code := taskEvents(al); code != 0 || !strings.Contains(events, "Idle timeout") || !strings.Contains(events, "player") {
			t.Fatalf("exit code %d, events:\n%s", code, events)
		}
	})
}
