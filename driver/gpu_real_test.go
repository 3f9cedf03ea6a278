package driver

import (
	"context"
	"os"
	"os/exec"
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
