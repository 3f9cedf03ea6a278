package driver

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// TestAudioInSession: with audio on, the app's environment reaches a
// PulseAudio-compatible PipeWire server with the session's sink as default;
// sound played there is captured from the sink's monitor; stopping the task
// leaves no audio process or runtime dir.
func TestAudioInSession(t *testing.T) {
	h := newHarness(t, nil)
	task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h"}, Audio: true})
	startTask(t, h, task)
	waitLog(t, task, "stdout", regexp.MustCompile(`display :\d+`))

	res, err := h.ExecTask(task.ID, []string{"pactl", "info"}, 20*time.Second)
	if err != nil || res.ExitResult.ExitCode != 0 {
		t.Fatalf("pactl info: %v %+v\n%s", err, res.ExitResult, res.Stdout)
	}
	info := string(res.Stdout)
	for _, want := range []string{"PipeWire", "Default Sink: pixelstream_sink"} {
		if !strings.Contains(info, want) {
			t.Errorf("pactl info lacks %q:\n%s", want, info)
		}
	}

	// Play two seconds of a square wave and record the monitor meanwhile.
	script := `parec -d pixelstream_sink.monitor --raw --format=s16le --rate=8000 --channels=1 > "$HOME/capture.raw" &
rec=$!
awk 'BEGIN { for (i = 0; i < 16000; i++) printf "%c%c", 0, (int(i / 8) % 2) ? 64 : 192 }' | pacat --raw --format=s16le --rate=8000 --channels=1
kill $rec; wait $rec 2>/dev/null; exit 0`
	res, err = h.ExecTask(task.ID, []string{"sh", "-c", script}, 30*time.Second)
	if err != nil || res.ExitResult.ExitCode != 0 {
		t.Fatalf("play and capture: %v %+v\n%s", err, res.ExitResult, res.Stdout)
	}
	raw, err := os.ReadFile(filepath.Join(task.TaskDir().LocalDir, "home", "capture.raw"))
	if err != nil {
		t.Fatal(err)
	}
	peak := 0
	for i := 0; i+1 < len(raw); i += 2 {
		v := int(int16(binary.LittleEndian.Uint16(raw[i:])))
		if v < 0 {
			v = -v
		}
		peak = max(peak, v)
	}
	if len(raw) < 1000 || peak < 1000 {
		t.Fatalf("monitor capture is silent: %d bytes, peak %d", len(raw), peak)
	}

	attrs := inspect(t, h, task.ID)
	var pids []int
	for _, c := range []string{"dbus", "pipewire", "wireplumber", "pipewire-pulse"} {
		f := strings.Fields(attrs["component."+c])
		if len(f) < 2 || f[0] != "running" {
			t.Fatalf("component %s = %q", c, attrs["component."+c])
		}
		pid, _ := strconv.Atoi(strings.TrimPrefix(f[1], "pid="))
		pids = append(pids, pid)
	}
	if err := h.StopTask(task.ID, 5*time.Second, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	waitExit(t, h, task.ID)
	if err := h.DestroyTask(task.ID, false); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if pidAlive(pid) {
			t.Errorf("audio process %d still running after stop", pid)
		}
	}
	if _, err := os.Stat(attrs["runtime_dir"]); !os.IsNotExist(err) {
		t.Errorf("runtime dir %s left behind", attrs["runtime_dir"])
	}
}

// TestAudioComponentHealedThenReported: a killed pipewire comes back (a task
// event says so, and pactl works again); killed past the restart budget, the
// task fails with an event naming it.
func TestAudioComponentHealedThenReported(t *testing.T) {
	h := newHarness(t, nil)
	task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h"}, Audio: true})
	events, err := h.TaskEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	startTask(t, h, task)
	waitLog(t, task, "stdout", regexp.MustCompile(`display :\d+`))

	pipewirePid := func() int {
		f := strings.Fields(inspect(t, h, task.ID)["component.pipewire"])
		pid, _ := strconv.Atoi(strings.TrimPrefix(f[len(f)-1], "pid="))
		return pid
	}
	waitEvent := func(substr string) string {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.TaskID == task.ID && strings.Contains(ev.Message, substr) {
					return ev.Message
				}
			case <-deadline:
				t.Fatalf("no task event containing %q", substr)
			}
		}
	}

	old := pipewirePid()
	if old <= 0 {
		// kill(0) would hit the test's own process group (and go test).
		t.Fatalf("no pipewire pid in InspectTask: %d", old)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitEvent("Restarted pipewire")
	if pid := pipewirePid(); pid == old || !pidAlive(pid) {
		t.Fatalf("pipewire pid %d after restart (was %d)", pid, old)
	}
	res, err := h.ExecTask(task.ID, []string{"pactl", "info"}, 20*time.Second)
	if err != nil || res.ExitResult.ExitCode != 0 || !strings.Contains(string(res.Stdout), "PipeWire") {
		t.Fatalf("pactl info after restart: %v %+v\n%s", err, res.ExitResult, res.Stdout)
	}

	// Past the budget (5 restarts): the session fails and says why.
	for i := 0; i < 10 && inspectRunning(t, h, task.ID); i++ {
		pid := pipewirePid()
		if pid <= 0 {
			// Between a death and its restart the pid reads 0, and kill(0)
			// would hit the test's own process group (and go test): wait.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		deadline := time.Now().Add(20 * time.Second)
		for pipewirePid() == pid && inspectRunning(t, h, task.ID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	msg := waitEvent("Session failed")
	if !strings.Contains(msg, "pipewire") {
		t.Fatalf("failure event does not name pipewire: %s", msg)
	}
	if r := waitExit(t, h, task.ID); r.Err == nil || !strings.Contains(r.Err.Error(), "pipewire") {
		t.Fatalf("exit result %+v does not name pipewire", r)
	}
}

// TestAudioRefusedWithoutPipeWire: audio = true on a node without the
// PipeWire binaries is refused before anything starts, saying what to
// install; audio = false runs there.
func TestAudioRefusedWithoutPipeWire(t *testing.T) {
	h := newHarness(t, func(pc *config.PluginConfig) { pc.XvfbPath = "/usr/bin/Xvfb" })
	// A node without PipeWire: nothing of it on the plugin's PATH.
	t.Setenv("PATH", t.TempDir())
	task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-exit=0"}, Audio: true})
	_, _, err := h.StartTask(task)
	if err == nil {
		_ = h.DestroyTask(task.ID, true)
		t.Fatal("audio accepted on a node without PipeWire")
	}
	for _, want := range []string{"audio:", "install", "audio = false"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	quiet := newTask(t, h, config.TaskConfig{Args: []string{"--probe-exit=0"}, Audio: false})
	startTask(t, h, quiet)
	if r := waitExit(t, h, quiet.ID); r.ExitCode != 0 {
		t.Fatalf("audio = false task: %+v", r)
	}
}
