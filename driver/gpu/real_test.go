package gpu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The TestReal* tests run on a real NVIDIA node only (PIXELSTREAM_GPU_REAL=1,
// as root for the isolation test). testdata/h100/record.sh and README.md say
// how they were run and what they printed.
func realOnly(t *testing.T) {
	if os.Getenv("PIXELSTREAM_GPU_REAL") != "1" {
		t.Skip("set PIXELSTREAM_GPU_REAL=1 on a node with an NVIDIA GPU")
	}
}

func realInfo(t *testing.T) Info {
	info, err := Detector{Root: "/", Run: Exec, Getenv: os.Getenv}.Detect(context.Background())
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	return info
}

func TestRealDetect(t *testing.T) {
	realOnly(t)
	info := realInfo(t)
	b, _ := json.MarshalIndent(info, "", "  ")
	t.Logf("Info: %s", b)
	b, _ = json.MarshalIndent(info.Attributes(), "", "  ")
	t.Logf("Attributes: %s", b)
	if !info.HasGPU() || info.DriverVersion == "" {
		t.Fatalf("no GPU or driver detected: %+v", info)
	}
	out, err := Exec(context.Background(), "nvidia-smi", "--query-gpu=uuid,pci.bus_id,driver_version", "--format=csv,noheader")
	if err != nil {
		t.Fatalf("nvidia-smi: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(info.GPUs) {
		t.Fatalf("nvidia-smi lists %d GPUs, Detect %d", len(lines), len(info.GPUs))
	}
	for i, l := range lines {
		f := strings.Split(l, ", ")
		bus, _ := normalizeBusID(f[1])
		if g := info.GPUs[i]; g.UUID != f[0] || g.PCIBusID != bus || info.DriverVersion != f[2] {
			t.Errorf("GPU %d = %s %s driver %s; nvidia-smi says %s", i, g.UUID, g.PCIBusID, info.DriverVersion, l)
		}
	}
	a, err := Map(info, info.GPUs[0].UUID, MapOptions{Adapter: AutoAdapter})
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	t.Logf("Assignment for %s: index %d args %v env %v warnings %v", info.GPUs[0].UUID, a.AdapterIndex, a.Args, a.Env, a.Warnings)
}

func TestRealStats(t *testing.T) {
	realOnly(t)
	info := realInfo(t)
	st, ok := Stats(context.Background(), Exec, []string{info.GPUs[0].UUID})
	if !ok || len(st) != 1 || st[0].MemoryTotalMiB <= 0 {
		t.Fatalf("Stats = %+v, %v", st, ok)
	}
	t.Logf("Stats: %+v", st)
}

// TestRealIsolation hides every GPU of the node from a process in a fresh
// cgroup and checks that it can no longer open /dev/nvidiaN, while a sibling
// cgroup without the filter can. VULKANINFO, when set, names a command run
// inside the isolated cgroup to record what Vulkan then enumerates.
func TestRealIsolation(t *testing.T) {
	realOnly(t)
	info := realInfo(t)
	a, err := Map(info, "void", MapOptions{Adapter: AutoAdapter, NoGPU: NoGPUSoftware})
	if err != nil {
		t.Fatal(err)
	}
	deny, err := DevicesToDeny(info, a)
	if err != nil || len(deny) != len(info.GPUs) {
		t.Fatalf("DevicesToDeny = %v, %v", deny, err)
	}
	base := "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(base, "cgroup.controllers")); err != nil {
		base = "/sys/fs/cgroup/devices" // cgroups v1
	}
	mk := func(name string) string {
		dir := filepath.Join(base, fmt.Sprintf("pixelstream-gpu-test-%d-%s", os.Getpid(), name))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("mkdir %s: %v", dir, err)
		}
		t.Cleanup(func() { _ = os.Remove(dir) })
		return dir
	}
	runIn := func(dir string, args ...string) (string, error) {
		cmd := exec.Command("sh", append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	open := deny[0].Path
	free, locked := mk("free"), mk("locked")
	if err := Isolate(locked, deny); err != nil {
		t.Fatalf("Isolate: %v", err)
	}
	if out, err := runIn(free, "head", "-c", "0", open); err != nil {
		t.Fatalf("control cgroup cannot open %s: %v %s", open, err, out)
	}
	out, err := runIn(locked, "head", "-c", "0", open)
	if err == nil {
		t.Fatalf("isolated cgroup could open %s", open)
	}
	t.Logf("isolated open %s: %v: %s", open, err, strings.TrimSpace(out))
	out, err = runIn(locked, "head", "-c", "0", "/dev/nvidiactl")
	t.Logf("isolated open /dev/nvidiactl (must stay allowed): err=%v %s", err, strings.TrimSpace(out))
	if err != nil {
		t.Errorf("isolation also blocked /dev/nvidiactl")
	}
	out, err = runIn(locked, "nvidia-smi", "-L")
	t.Logf("nvidia-smi -L in isolated cgroup: err=%v\n%s", err, out)
	if vi := os.Getenv("VULKANINFO"); vi != "" {
		out, err = runIn(free, "sh", "-c", vi)
		t.Logf("VULKANINFO in control cgroup: err=%v\n%s", err, out)
		out, err = runIn(locked, "sh", "-c", vi)
		t.Logf("VULKANINFO in isolated cgroup: err=%v\n%s", err, out)
	}
}
