package gpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/cgroups"
	// Registers the cgroup v1/v2 device setters (v2: eBPF device filter).
	_ "github.com/opencontainers/cgroups/devices"
	devconfig "github.com/opencontainers/cgroups/devices/config"
)

// nvidiaMajor is the character-device major of /dev/nvidia0..N and
// /dev/nvidiactl (fixed by NVIDIA's kernel module: NV_MAJOR_DEVICE_NUMBER).
const nvidiaMajor = 195

// DeviceNode is a character device the session must not open.
type DeviceNode struct {
	Path         string
	Major, Minor int64
}

// DevicesToDeny returns /dev/nvidiaN of every GPU of the node that a does not
// include. /dev/nvidiactl and /dev/nvidia-uvm stay open: the driver needs
// them for any GPU. For a software assignment every GPU is denied.
func DevicesToDeny(info Info, a Assignment) ([]DeviceNode, error) {
	keep := map[string]bool{}
	for _, g := range a.GPUs {
		keep[g.PCIBusID] = true
	}
	var deny []DeviceNode
	for _, g := range info.GPUs {
		if keep[g.PCIBusID] {
			continue
		}
		if g.Minor < 0 {
			return nil, fmt.Errorf("GPU %s: device minor unknown (no /proc/driver/nvidia/gpus/%s/information), cannot hide it", g.PCIBusID, g.PCIBusID)
		}
		deny = append(deny, DeviceNode{Path: fmt.Sprintf("/dev/nvidia%d", g.Minor), Major: nvidiaMajor, Minor: int64(g.Minor)})
	}
	return deny, nil
}

// Isolate makes the devices in deny unopenable for every process in the
// cgroup at cgroupDir (the task's cgroup; on cgroups v1 its directory in the
// devices hierarchy). All other devices stay as they were allowed.
//
// cgroups v1: writes "c 195:N rwm" lines to devices.deny.
// cgroups v2: attaches an eBPF BPF_PROG_TYPE_CGROUP_DEVICE program (allow
// all, deny the listed nodes), built and attached with
// github.com/opencontainers/cgroups, the library runc and Nomad's exec
// driver use. It replaces any device program already attached to that very
// cgroup, so call it on a cgroup this driver owns. Needs root (CAP_BPF or
// CAP_SYS_ADMIN) on v2 and write access to devices.deny on v1.
func Isolate(cgroupDir string, deny []DeviceNode) error {
	if len(deny) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(cgroupDir, "devices.deny")); err == nil {
		return isolateV1(cgroupDir, deny)
	}
	if _, err := os.Stat(filepath.Join(cgroupDir, "cgroup.controllers")); err == nil {
		return isolateV2(cgroupDir, deny)
	}
	return fmt.Errorf("isolate GPUs: %s is neither a cgroup v1 devices directory (devices.deny) nor a cgroup v2 directory (cgroup.controllers)", cgroupDir)
}

func isolateV1(dir string, deny []DeviceNode) error {
	p := filepath.Join(dir, "devices.deny")
	for _, d := range deny {
		// One rule per write: the kernel parses a single rule per write(2).
		rule := fmt.Sprintf("c %d:%d rwm", d.Major, d.Minor)
		if err := os.WriteFile(p, []byte(rule), 0); err != nil {
			return fmt.Errorf("isolate GPUs: write %q to %s: %w", rule, p, err)
		}
	}
	return nil
}

func isolateV2(dir string, deny []DeviceNode) error {
	rules := []*devconfig.Rule{{Type: devconfig.WildcardDevice, Major: devconfig.Wildcard, Minor: devconfig.Wildcard, Permissions: "rwm", Allow: true}}
	for _, d := range deny {
		rules = append(rules, &devconfig.Rule{Type: devconfig.CharDevice, Major: d.Major, Minor: d.Minor, Permissions: "rwm", Allow: false})
	}
	if cgroups.DevicesSetV2 == nil {
		return errors.New("isolate GPUs: cgroup v2 device support not registered")
	}
	if err := cgroups.DevicesSetV2(dir, &cgroups.Resources{Devices: rules}); err != nil {
		return fmt.Errorf("isolate GPUs: attach eBPF device filter to %s: %w", dir, err)
	}
	return nil
}
