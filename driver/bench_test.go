package driver

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/base"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// TestBenchStartTask measures what the driver adds to a task's start: the
// time from StartTask to the app running on its display, and the memory of
// the supervisor, Xvfb and an idle plugin. It prints a Markdown table; `make
// bench` runs it with PIXELSTREAM_BENCH=1.
func TestBenchStartTask(t *testing.T) {
	if os.Getenv("PIXELSTREAM_BENCH") == "" {
		t.Skip("benchmark; run with PIXELSTREAM_BENCH=1 (make bench)")
	}
	const runs = 10
	var starts []time.Duration
	var supRSS, xvfbRSS []int
	for i := 0; i < runs; i++ {
		h := newHarness(t, nil)
		task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h"}, Resolution: "1920x1080"})
		t0 := time.Now()
		if _, _, err := h.StartTask(task); err != nil {
			t.Fatal(err)
		}
		starts = append(starts, time.Since(t0))
		waitLog(t, task, "stdout", regexp.MustCompile(`display :\d+`))
		attrs := inspect(t, h, task.ID)
		supRSS = append(supRSS, rssKB(attrs["supervisor_pid"]))
		xvfbRSS = append(xvfbRSS, rssKB(strings.TrimPrefix(strings.Fields(attrs["component.xvfb"])[1], "pid=")))
		_ = h.StopTask(task.ID, 5*time.Second, "SIGTERM")
		_ = h.DestroyTask(task.ID, true)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	sort.Ints(supRSS)
	sort.Ints(xvfbRSS)
	pluginRSS := idlePluginRSS(t)
	fmt.Printf("| driver start-up (%d runs, 1920x1080) | median | min | max |\n|---|---|---|---|\n", runs)
	fmt.Printf("| StartTask -> app started | %s | %s | %s |\n", ms(starts[runs/2]), ms(starts[0]), ms(starts[runs-1]))
	fmt.Printf("| supervisor RSS | %d KiB | %d KiB | %d KiB |\n", supRSS[runs/2], supRSS[0], supRSS[runs-1])
	fmt.Printf("| Xvfb RSS | %d KiB | %d KiB | %d KiB |\n", xvfbRSS[runs/2], xvfbRSS[0], xvfbRSS[runs-1])
	fmt.Printf("| plugin RSS (idle, serving) | %d KiB | | |\n", pluginRSS)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func rssKB(pid string) int {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	return 0
}

// idlePluginRSS starts the built plugin the way Nomad does (go-plugin magic
// cookie) and reads its memory once it has answered the handshake.
func idlePluginRSS(t *testing.T) int {
	plugin, _ := filepath.Abs("../build/nomad-driver-pixelstream")
	if _, err := os.Stat(plugin); err != nil {
		t.Logf("plugin binary missing (%v); run make build", err)
		return 0
	}
	cmd := exec.Command(plugin)
	cmd.Env = append(os.Environ(), base.Handshake.MagicCookieKey+"="+base.Handshake.MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS=2", "PLUGIN_MIN_PORT=10000", "PLUGIN_MAX_PORT=25000")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatalf("plugin handshake: %v", err)
	}
	return rssKB(strconv.Itoa(cmd.Process.Pid))
}
