package driver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/helper/testlog"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// TestRealGPUMapping runs on a GPU node only (PIXELSTREAM_GPU_REAL=1, as
// root): the driver's fingerprint finds the GPU, a task assigned it by UUID
// (as Nomad's device plugin does) gets -graphicsadapter=N, and with the
// environment the driver gives the app, Vulkan lists that very GPU at index
// N; GPU stats for it reach TaskStats' device stats. VULKANINFO names a
// vulkaninfo binary.
func TestRealGPUMapping(t *testing.T) {
	if os.Getenv("PIXELSTREAM_GPU_REAL") == "" {
		t.Skip("needs an NVIDIA GPU; run with PIXELSTREAM_GPU_REAL=1 on a GPU node")
	}
	d := NewPlugin(testlog.HCLogger(t))
	node := d.detectNode()
	if !node.gpu.HasGPU() {
		t.Fatalf("no GPU detected: %+v", node.gpu)
	}
	fp := d.buildFingerprint()
	t.Logf("fingerprint: health=%s %q", fp.Health, fp.HealthDescription)
	for k, v := range fp.Attributes {
		if strings.HasPrefix(k, "driver.pixelstream.gpu") || strings.HasPrefix(k, "driver.pixelstream.vulkan") {
			t.Logf("  %s = %s", k, v.GoString())
		}
	}
	g := node.gpu.GPUs[len(node.gpu.GPUs)-1]
	cfg := &drivers.TaskConfig{Env: map[string]string{"NVIDIA_VISIBLE_DEVICES": g.UUID}}
	tc := &config.TaskConfig{Render: config.RenderVulkan}
	pc := config.DefaultPluginConfig()
	pc.GPUIsolation = false
	a, _, notices, err := mapGPU(pc, cfg, tc, node.gpu)
	if err != nil {
		t.Fatalf("mapGPU: %v", err)
	}
	t.Logf("assignment: index=%d args=%v env=%v notices=%v", a.AdapterIndex, a.Args, a.Env, notices)
	want := "-graphicsadapter=" + itoa(a.AdapterIndex)
	if !slices.Contains(a.Args, want) {
		t.Fatalf("args %v lack %s", a.Args, want)
	}

	vi := os.Getenv("VULKANINFO")
	if vi == "" {
		vi = "vulkaninfo"
	}
	cmd := exec.Command(vi, "--summary")
	cmd.Env = os.Environ()
	for k, v := range a.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("vulkaninfo --summary with the app's environment:\n%s", out)
	if err != nil {
		t.Fatalf("vulkaninfo: %v", err)
	}
	m := regexp.MustCompile(`(?s)GPU` + itoa(a.AdapterIndex) + `:.*?deviceName\s*=\s*([^\n]+)`).FindSubmatch(out)
	if m == nil || !strings.Contains(string(m[1]), strings.TrimPrefix(g.Name, "NVIDIA ")) {
		t.Fatalf("Vulkan device %d is %q, want the assigned %s", a.AdapterIndex, m, g.Name)
	}

	in := make(chan *drivers.TaskResourceUsage, 1)
	in <- &drivers.TaskResourceUsage{ResourceUsage: &drivers.ResourceUsage{}}
	close(in)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := <-withGPUStats(ctx, []string{g.UUID}, in)
	if u == nil || len(u.ResourceUsage.DeviceStats) != 1 || u.ResourceUsage.DeviceStats[0].InstanceStats[g.UUID] == nil {
		t.Fatalf("no GPU device stats for %s: %+v", g.UUID, u)
	}
	s := u.ResourceUsage.DeviceStats[0].InstanceStats[g.UUID]
	t.Logf("GPU stats: memory %.0f/%.0f MiB, utilisation %.0f%%", *s.Summary.FloatNumeratorVal, *s.Summary.FloatDenominatorVal,
		*s.Stats.Attributes["GPU utilization"].FloatNumeratorVal)
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestRealGPUSession runs whole sessions on a GPU node (PIXELSTREAM_GPU_REAL=1,
// as root, with the pixelstream user), the GPU assigned by UUID as Nomad's
// device plugin does. With render = "vulkan" the session either runs (Xvfb
// has GLX) or is refused with the GLX hint, never a driver crash. With a
// session whose Xvfb lacks GLX, render = "none" still maps the GPU: from
// inside the session (the app's environment and cgroup, DISPLAY unset for
// the probe) Vulkan lists the assigned GPU at the -graphicsadapter index.
func TestRealGPUSession(t *testing.T) {
	if os.Getenv("PIXELSTREAM_GPU_REAL") == "" {
		t.Skip("needs an NVIDIA GPU; run with PIXELSTREAM_GPU_REAL=1 on a GPU node")
	}
	for _, render := range []string{config.RenderVulkan, config.RenderNone} {
		t.Run(render, func(t *testing.T) {
			h := newHarness(t, func(pc *config.PluginConfig) {
				if x := os.Getenv("XVFB_PATH"); x != "" {
					pc.XvfbPath = x
				}
			})
			node := h.d.nodeInfo()
			g := node.gpu.GPUs[len(node.gpu.GPUs)-1]
			task := newTask(t, h, config.TaskConfig{Executable: "local/app.sh", Render: render,
				UnrealFlags: true, RenderOffscreen: true, Resolution: "1280x720"})
			script := "#!/bin/sh\necho \"args: $*\"\nenv | grep -E '^(DISPLAY|VK_|NVIDIA_VISIBLE|CUDA_VISIBLE|__GLX|__EGL)' | sort\n" +
				"[ -n \"$NO_DISPLAY\" ] && unset DISPLAY\n" +
				"\"$VULKANINFO\" --summary > \"$HOME/vulkaninfo.txt\" 2>&1; echo \"vulkaninfo exit $?\"\n" +
				"grep -E 'GPU[0-9]|deviceName|deviceUUID|rror' \"$HOME/vulkaninfo.txt\"\necho done\n"
			if err := os.WriteFile(filepath.Join(task.TaskDir().LocalDir, "app.sh"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			task.Env["NVIDIA_VISIBLE_DEVICES"] = g.UUID
			task.Env["VULKANINFO"] = os.Getenv("VULKANINFO")
			task.Env["LD_LIBRARY_PATH"] = os.Getenv("LD_LIBRARY_PATH")
			if render == config.RenderNone {
				task.Env["NO_DISPLAY"] = "1"
			}
			_, _, err := h.StartTask(task)
			if err != nil {
				if render == config.RenderVulkan && strings.Contains(err.Error(), "no GLX extension") {
					t.Logf("refused as it must be on this Xvfb: %v", err)
					return
				}
				t.Fatalf("StartTask: %v", err)
			}
			t.Cleanup(func() { _ = h.DestroyTask(task.ID, true) })
			if r := waitExit(t, h, task.ID); r.ExitCode != 0 {
				t.Fatalf("app exit %+v", r)
			}
			out := waitLog(t, task, "stdout", regexp.MustCompile(`(?s)args: .*done`))[0]
			t.Logf("app output:\n%s", out)
			idx := regexp.MustCompile(`-graphicsadapter=(\d+)`).FindStringSubmatch(out)
			if idx == nil || !strings.Contains(out, "DISPLAY=:") {
				t.Fatalf("app lacks -graphicsadapter or DISPLAY")
			}
			m := regexp.MustCompile(`(?s)GPU` + idx[1] + `:.*?deviceName\s*=\s*([^\n]+).*?deviceUUID\s*=\s*(\S+)`).FindStringSubmatch(out)
			if m == nil || !strings.Contains(m[1], strings.TrimPrefix(g.Name, "NVIDIA ")) || !strings.HasSuffix(g.UUID, m[2]) {
				t.Fatalf("inside the session Vulkan device %s is %v, want %s (%s)", idx[1], m, g.Name, g.UUID)
			}
		})
	}
}
