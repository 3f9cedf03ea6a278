package gpu

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// driverVersionRE matches the version in /proc/driver/nvidia/version, e.g.
// "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build".
var driverVersionRE = regexp.MustCompile(`NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)\s`)

// parseDriverVersion returns the kernel module version from the content of
// /proc/driver/nvidia/version.
func parseDriverVersion(content string) (string, error) {
	m := driverVersionRE.FindStringSubmatch(content + " ")
	if m == nil {
		return "", fmt.Errorf("no \"NVRM version: ... <version>\" line in %q", firstLine(content))
	}
	return m[1], nil
}

// procGPU is what one /proc/driver/nvidia/gpus/<bus>/information file says.
type procGPU struct {
	Name     string
	UUID     string
	BusID    string
	Minor    int
	Excluded bool
}

// parseInformation parses a /proc/driver/nvidia/gpus/<bus>/information file:
// "Key: \t value" lines. The UUID reads as "GPU-????????-..." on drivers that
// have not initialised the GPU yet; it is dropped then (nvidia-smi fills it).
func parseInformation(dirName, content string) (procGPU, error) {
	g := procGPU{Minor: -1}
	for _, line := range strings.Split(content, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "Model":
			g.Name = v
		case "GPU UUID":
			if strings.HasPrefix(v, "GPU-") && !strings.Contains(v, "?") {
				g.UUID = v
			}
		case "Bus Location":
			g.BusID = v
		case "Device Minor":
			if n, err := strconv.Atoi(v); err == nil {
				g.Minor = n
			}
		case "GPU Excluded":
			g.Excluded = strings.EqualFold(v, "yes")
		}
	}
	if g.BusID == "" {
		g.BusID = dirName // the directory is named after the bus id
	}
	bus, err := normalizeBusID(g.BusID)
	if err != nil {
		return g, fmt.Errorf("bus location: %w", err)
	}
	g.BusID = bus
	if g.Name == "" {
		return g, fmt.Errorf("no \"Model:\" line")
	}
	return g, nil
}

// busIDRE accepts the forms the kernel ("0000:00:06.0") and nvidia-smi
// ("00000000:00:06.0") use, and the short "00:06.0".
var busIDRE = regexp.MustCompile(`^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$`)

// normalizeBusID turns any PCI bus id form into the kernel's
// "dddd:bb:dd.f", lower case, so ids from /proc, /sys and nvidia-smi compare.
func normalizeBusID(s string) (string, error) {
	m := busIDRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return "", fmt.Errorf("%q is not a PCI bus id (want domain:bus:device.function, e.g. 0000:3b:00.0)", s)
	}
	dom, bus, dev := uint64(0), uint64(0), uint64(0)
	if m[1] != "" {
		dom, _ = strconv.ParseUint(m[1], 16, 32)
	}
	bus, _ = strconv.ParseUint(m[2], 16, 8)
	dev, _ = strconv.ParseUint(m[3], 16, 8)
	if dom > 0xffff {
		return "", fmt.Errorf("%q: PCI domain above ffff", s)
	}
	return fmt.Sprintf("%04x:%02x:%02x.%s", dom, bus, dev, m[4]), nil
}

// readProcGPUs reads every /proc/driver/nvidia/gpus/*/information under root,
// sorted by bus id (the order NVML and nvidia-smi index GPUs in).
func readProcGPUs(root string) ([]procGPU, []string, error) {
	dir := filepath.Join(root, "proc/driver/nvidia/gpus")
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var gpus []procGPU
	var warnings []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name(), "information")
		b, err := os.ReadFile(p)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("read %s: %v", p, err))
			continue
		}
		g, err := parseInformation(e.Name(), string(b))
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("parse %s: %v", p, err))
			continue
		}
		if g.Excluded {
			warnings = append(warnings, fmt.Sprintf("GPU %s is excluded by the driver (NVreg_ExcludedGpus) and is not offered", g.BusID))
			continue
		}
		gpus = append(gpus, g)
	}
	sort.Slice(gpus, func(a, b int) bool { return gpus[a].BusID < gpus[b].BusID })
	return gpus, warnings, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
