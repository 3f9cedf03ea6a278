package gpu

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDevicesToDeny(t *testing.T) {
	four := detect(t, "four", nil, nil)
	third, err := Map(four, "GPU-cccccccc-1111-2222-3333-0000000000b1", MapOptions{Adapter: AutoAdapter, Isolated: true})
	if err != nil {
		t.Fatal(err)
	}
	deny, err := DevicesToDeny(four, third)
	if err != nil {
		t.Fatal(err)
	}
	// Minors come from /proc (not bus order): 0000:17 is /dev/nvidia2,
	// 0000:31 is /dev/nvidia0, 0000:ca is /dev/nvidia1; 0000:b1 (/dev/nvidia3) stays.
	want := []DeviceNode{{"/dev/nvidia2", 195, 2}, {"/dev/nvidia0", 195, 0}, {"/dev/nvidia1", 195, 1}}
	if !reflect.DeepEqual(deny, want) {
		t.Errorf("deny = %v, want %v", deny, want)
	}

	soft, err := Map(four, "void", MapOptions{Adapter: AutoAdapter, NoGPU: NoGPUSoftware})
	if err != nil {
		t.Fatal(err)
	}
	if deny, _ := DevicesToDeny(four, soft); len(deny) != 4 {
		t.Errorf("software assignment denies %v, want all 4 GPUs", deny)
	}

	smiOnly := Info{GPUs: []GPU{{PCIBusID: "0000:01:00.0", Minor: -1}, {PCIBusID: "0000:02:00.0", Minor: -1}}}
	a := Assignment{GPUs: smiOnly.GPUs[:1]}
	if _, err := DevicesToDeny(smiOnly, a); err == nil || !strings.Contains(err.Error(), "0000:02:00.0: device minor unknown") {
		t.Errorf("err = %v, want one naming the GPU whose minor is unknown", err)
	}
}

// cgroups v1: the rules land in devices.deny, one write per rule. A regular
// file stands in for the kernel's devices.deny, so the test checks the last
// write; the real kernel file was exercised on hardware (README.md).
func TestIsolateV1(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "devices.deny")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var writes []string
	deny := []DeviceNode{{"/dev/nvidia2", 195, 2}, {"/dev/nvidia0", 195, 0}}
	for _, d := range deny {
		if err := Isolate(dir, []DeviceNode{d}); err != nil {
			t.Fatalf("Isolate: %v", err)
		}
		b, _ := os.ReadFile(p)
		writes = append(writes, string(b))
	}
	if want := []string{"c 195:2 rwm", "c 195:0 rwm"}; !reflect.DeepEqual(writes, want) {
		t.Errorf("devices.deny writes = %q, want %q", writes, want)
	}
}

func TestIsolateErrors(t *testing.T) {
	if err := Isolate(t.TempDir(), []DeviceNode{{"/dev/nvidia0", 195, 0}}); err == nil || !strings.Contains(err.Error(), "neither a cgroup v1 devices directory") {
		t.Errorf("plain directory: err = %v", err)
	}
	if err := Isolate("/nonexistent", nil); err != nil {
		t.Errorf("nothing to deny must be a no-op, got %v", err)
	}
}
