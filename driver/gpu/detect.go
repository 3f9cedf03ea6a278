package gpu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Detector finds the NVIDIA GPUs and graphics stack of a node.
type Detector struct {
	// Root is the filesystem root to read from ("" or "/" on a real node; a
	// recorded tree in tests).
	Root string
	// Run runs nvidia-smi; nil skips it (detection then relies on /proc
	// alone and finds no MIG devices). Use Exec on a real node.
	Run RunFunc
	// Getenv reads the environment the task will get (VK_DRIVER_FILES,
	// VK_ICD_FILENAMES, VK_ADD_DRIVER_FILES, XDG_CONFIG_DIRS, XDG_DATA_DIRS);
	// nil means an empty environment. Use os.Getenv on a real node.
	Getenv func(string) string
}

// Detect reads the node. A node without NVIDIA driver or GPU is not an
// error: it returns an Info with no GPUs. Errors are reserved for a tree that
// cannot be read at all; partial problems land in Info.Warnings.
func (d Detector) Detect(ctx context.Context) (Info, error) {
	root := d.Root
	if root == "" {
		root = "/"
	}
	if _, err := os.Stat(root); err != nil {
		return Info{}, fmt.Errorf("detect GPUs: root %q: %w", root, err)
	}
	getenv := d.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var info Info

	if b, err := os.ReadFile(filepath.Join(root, "proc/driver/nvidia/version")); err == nil {
		v, err := parseDriverVersion(string(b))
		if err != nil {
			info.Warnings = append(info.Warnings, "/proc/driver/nvidia/version: "+err.Error())
		}
		info.DriverVersion = v
	} else if !errors.Is(err, os.ErrNotExist) {
		info.Warnings = append(info.Warnings, fmt.Sprintf("read /proc/driver/nvidia/version: %v", err))
	}

	procGPUs, warns, err := readProcGPUs(root)
	if err != nil {
		return Info{}, fmt.Errorf("detect GPUs: %w", err)
	}
	info.Warnings = append(info.Warnings, warns...)
	for i, p := range procGPUs {
		info.GPUs = append(info.GPUs, GPU{Index: i, UUID: p.UUID, Name: p.Name, PCIBusID: p.BusID, Minor: p.Minor})
	}
	if len(info.GPUs) > 0 {
		info.Source = "proc"
	}

	// nvidia-smi only when a driver is there: on a GPU-less node it would
	// just fail, and the fingerprint runs often.
	if d.Run != nil && (info.DriverVersion != "" || len(info.GPUs) > 0) {
		d.mergeSMI(ctx, &info)
	}

	libs, warns := findLibraries(root, Libraries)
	info.Libraries = libs
	info.Warnings = append(info.Warnings, warns...)
	for i := range info.GPUs {
		decideNVENC(&info.GPUs[i], info.Loadable(LibNVENC))
	}

	icds, warns := findICDs(root, getenv, func(lib string) bool {
		if _, ok := libs[lib]; ok {
			return true
		}
		l, _ := findLibraries(root, []string{lib})
		return len(l) == 1
	})
	info.VulkanICDs = icds
	info.Warnings = append(info.Warnings, warns...)
	for _, icd := range icds {
		if icd.NVIDIA && info.NVIDIAICD == "" {
			info.NVIDIAICD = icd.Path
		}
	}
	info.EGLVendorNVIDIA, info.EGLVendorMesa = findEGLVendors(root)
	return info, nil
}

// mergeSMI completes info with nvidia-smi: UUIDs /proc did not give, MIG
// mode and MIG devices; and the GPU list itself when /proc had none (a
// container that only mounts the tools).
func (d Detector) mergeSMI(ctx context.Context, info *Info) {
	out, err := runSMI(ctx, d.Run, "--query-gpu="+smiQueryFields, "--format=csv,noheader")
	if err != nil {
		if !errors.Is(err, errSMIMissing) {
			info.Warnings = append(info.Warnings, err.Error())
		}
		return
	}
	smi, err := parseSMIQuery(string(out))
	if err != nil {
		info.Warnings = append(info.Warnings, err.Error())
		return
	}
	if len(info.GPUs) == 0 {
		for _, s := range smi {
			info.GPUs = append(info.GPUs, GPU{Index: s.Index, UUID: s.UUID, Name: s.Name, PCIBusID: s.BusID, Minor: -1, MIGEnabled: s.MIG})
		}
		if len(info.GPUs) > 0 {
			info.Source = "nvidia-smi"
		}
	} else {
		info.Source = "proc+nvidia-smi"
		byBus := map[string]smiGPU{}
		for _, s := range smi {
			byBus[s.BusID] = s
		}
		for i := range info.GPUs {
			g := &info.GPUs[i]
			s, ok := byBus[g.PCIBusID]
			if !ok {
				info.Warnings = append(info.Warnings, fmt.Sprintf("GPU %s is in /proc but not in nvidia-smi's list", g.PCIBusID))
				continue
			}
			if g.UUID == "" {
				g.UUID = s.UUID
			} else if g.UUID != s.UUID {
				info.Warnings = append(info.Warnings, fmt.Sprintf("GPU %s: /proc says UUID %s, nvidia-smi says %s; using nvidia-smi's", g.PCIBusID, g.UUID, s.UUID))
				g.UUID = s.UUID
			}
			if s.Index != g.Index {
				info.Warnings = append(info.Warnings, fmt.Sprintf("GPU %s: nvidia-smi index %d differs from PCI order %d; using nvidia-smi's", g.PCIBusID, s.Index, g.Index))
				g.Index = s.Index
			}
			g.MIGEnabled = s.MIG
		}
	}
	if info.DriverVersion == "" && len(smi) > 0 {
		info.DriverVersion = smi[0].DriverVersion
	}
	anyMIG := false
	for _, g := range info.GPUs {
		anyMIG = anyMIG || g.MIGEnabled
	}
	if !anyMIG {
		return
	}
	out, err = runSMI(ctx, d.Run, "-L")
	if err != nil {
		info.Warnings = append(info.Warnings, err.Error())
		return
	}
	migs := parseSMIList(string(out))
	for i := range info.GPUs {
		g := &info.GPUs[i]
		if g.MIGEnabled {
			g.MIG = migs[g.UUID]
			if len(g.MIG) == 0 {
				info.Warnings = append(info.Warnings, fmt.Sprintf("GPU %s is in MIG mode but has no MIG devices", g.UUID))
			}
		}
	}
}

// lookupGPU finds a GPU by UUID ("GPU-..."), MIG device UUID ("MIG-...")
// or nvidia-smi index. For a MIG device it also returns the MIG device.
func (i Info) lookupGPU(id string) (GPU, *MIGDevice, bool) {
	id = strings.TrimSpace(id)
	for _, g := range i.GPUs {
		if strings.EqualFold(g.UUID, id) && g.UUID != "" {
			return g, nil, true
		}
		for k := range g.MIG {
			if strings.EqualFold(g.MIG[k].UUID, id) {
				m := g.MIG[k]
				return g, &m, true
			}
		}
	}
	return GPU{}, nil, false
}
