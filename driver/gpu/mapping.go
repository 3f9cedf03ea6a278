package gpu

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MapOptions are the task's and plugin's choices that shape an Assignment.
type MapOptions struct {
	// Adapter is the task config's gpu.adapter (AutoAdapter if unset).
	Adapter Adapter
	// NoGPU decides what happens when a GPU node gives the task no GPU.
	NoGPU NoGPUPolicy
	// Isolated tells that Isolate will hide the unassigned GPUs' device
	// nodes from the session; NVIDIA's driver then enumerates only the
	// assigned GPUs, which shifts the Vulkan indices (README.md).
	Isolated bool
}

// Assignment is what the session needs to run the app on its GPU(s).
type Assignment struct {
	// AdapterIndex is the Vulkan physical-device index for
	// -graphicsadapter; -1 for software rendering.
	AdapterIndex int
	// Software is true when the task renders on the CPU.
	Software bool
	// Env is added to the app's (and the session's) environment.
	Env map[string]string
	// Args are added to the app's command line.
	Args []string
	// GPUs are the physical GPUs assigned (parents of MIG devices included),
	// in PCI bus order.
	GPUs []GPU
	// MIG are the MIG devices assigned, if the assignment was by MIG UUID.
	MIG []MIGDevice
	// Warnings say what may not work as the job expects; worth an event.
	Warnings []string
}

// visibleKind classifies an NVIDIA_VISIBLE_DEVICES value, following the
// NVIDIA container toolkit's meanings: unset/"" no GPU requested, "void" and
// "none" no GPU, "all" every GPU, else a comma list of UUIDs or indices.
func parseVisible(v string) (all bool, ids []string, err error) {
	s := strings.TrimSpace(v)
	switch strings.ToLower(s) {
	case "", "none", "void":
		return false, nil, nil
	case "all":
		return true, nil, nil
	}
	for _, id := range strings.Split(s, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			return false, nil, fmt.Errorf("NVIDIA_VISIBLE_DEVICES = %q: empty entry in the list", v)
		}
		ids = append(ids, id)
	}
	return false, ids, nil
}

// Map turns the task's NVIDIA_VISIBLE_DEVICES (as Nomad's nvidia device
// plugin sets it: GPU or MIG UUIDs; indices, "all", "none" and "void" are
// accepted too) into the Vulkan adapter index and environment for the app.
//
// The index is the assigned GPU's rank by PCI bus id among the NVIDIA GPUs
// the app's Vulkan loader will see: the Env restricts the loader to NVIDIA's
// ICD (VK_DRIVER_FILES/VK_ICD_FILENAMES), disables Mesa's device-select
// layer (NODEVICE_SELECT=1), and loaders since 1.3.204 sort the remaining
// discrete GPUs by PCI domain/bus/device/function. See README.md.
func Map(info Info, visibleDevices string, opts MapOptions) (Assignment, error) {
	if opts.NoGPU == "" {
		opts.NoGPU = NoGPURefuse
	}
	all, ids, err := parseVisible(visibleDevices)
	if err != nil {
		return Assignment{}, err
	}
	if !all && len(ids) == 0 {
		return softwareAssignment(info, opts)
	}
	if !info.HasGPU() {
		return Assignment{}, fmt.Errorf("NVIDIA_VISIBLE_DEVICES = %q but this node has no NVIDIA GPU (%s)", visibleDevices, info.status(0))
	}

	a := Assignment{}
	seen := map[string]bool{}
	addGPU := func(g GPU) {
		if !seen[g.PCIBusID] {
			seen[g.PCIBusID] = true
			a.GPUs = append(a.GPUs, g)
		}
	}
	var cudaIDs []string
	if all {
		for _, g := range info.GPUs {
			addGPU(g)
			cudaIDs = append(cudaIDs, deviceID(g))
		}
	}
	for _, id := range ids {
		if n, err := strconv.Atoi(id); err == nil {
			g, ok := gpuByIndex(info, n)
			if !ok {
				return Assignment{}, fmt.Errorf("NVIDIA_VISIBLE_DEVICES = %q: index %d does not exist; this node has GPUs 0-%d", visibleDevices, n, len(info.GPUs)-1)
			}
			addGPU(g)
			cudaIDs = append(cudaIDs, deviceID(g))
			continue
		}
		g, mig, ok := info.lookupGPU(id)
		if !ok {
			return Assignment{}, fmt.Errorf("NVIDIA_VISIBLE_DEVICES = %q: %s is not a GPU or MIG device of this node (known: %s)", visibleDevices, id, strings.Join(knownIDs(info), ", "))
		}
		addGPU(g)
		if mig != nil {
			a.MIG = append(a.MIG, *mig)
			cudaIDs = append(cudaIDs, mig.UUID)
		} else {
			cudaIDs = append(cudaIDs, deviceID(g))
		}
	}
	sort.Slice(a.GPUs, func(x, y int) bool { return a.GPUs[x].PCIBusID < a.GPUs[y].PCIBusID })
	if len(a.MIG) > 0 {
		a.Warnings = append(a.Warnings, "assigned MIG device(s): NVIDIA supports only compute (CUDA) on MIG, not Vulkan or OpenGL; the app renders on the parent GPU "+a.GPUs[0].PCIBusID+", shared with other MIG tenants")
	}

	// The Vulkan devices the app will enumerate, in loader order.
	vk := info.GPUs
	if opts.Isolated {
		vk = a.GPUs
	}
	vk = sortedByBus(vk)
	if opts.Adapter.Auto {
		a.AdapterIndex = indexOfBus(vk, a.GPUs[0].PCIBusID)
	} else {
		if opts.Adapter.Index >= len(vk) {
			return Assignment{}, fmt.Errorf("gpu.adapter = %d: this task sees %d Vulkan GPU(s) (indices 0-%d); use \"auto\" to follow the assigned GPU", opts.Adapter.Index, len(vk), len(vk)-1)
		}
		a.AdapterIndex = opts.Adapter.Index
		if bus := vk[a.AdapterIndex].PCIBusID; !seen[bus] {
			a.Warnings = append(a.Warnings, fmt.Sprintf("gpu.adapter = %d selects GPU %s, which Nomad did not assign to this task", a.AdapterIndex, bus))
		}
	}

	a.Env = map[string]string{
		"NVIDIA_VISIBLE_DEVICES": strings.Join(cudaIDs, ","),
		"CUDA_VISIBLE_DEVICES":   strings.Join(cudaIDs, ","),
		"CUDA_DEVICE_ORDER":      "PCI_BUS_ID",
		"NODEVICE_SELECT":        "1",
	}
	if info.NVIDIAICD != "" {
		a.Env["VK_DRIVER_FILES"] = info.NVIDIAICD
		a.Env["VK_ICD_FILENAMES"] = info.NVIDIAICD
	} else {
		a.Warnings = append(a.Warnings, "no NVIDIA Vulkan ICD manifest on this node: the Vulkan loader may list other devices and -graphicsadapter may select the wrong one")
	}
	if info.Loadable(LibGLXNVIDIA) {
		a.Env["__GLX_VENDOR_LIBRARY_NAME"] = "nvidia"
	}
	if info.EGLVendorNVIDIA != "" {
		a.Env["__EGL_VENDOR_LIBRARY_FILENAMES"] = info.EGLVendorNVIDIA
	}
	a.Args = []string{"-graphicsadapter=" + strconv.Itoa(a.AdapterIndex)}
	return a, nil
}

// softwareAssignment handles a task without GPU: fine on a node without
// GPUs, and on a GPU node only when the plugin allows software rendering.
func softwareAssignment(info Info, opts MapOptions) (Assignment, error) {
	if !opts.Adapter.Auto {
		return Assignment{}, fmt.Errorf("gpu.adapter = %d but no GPU is assigned to this task; add device \"nvidia/gpu\" { count = 1 } to its resources, or remove gpu.adapter", opts.Adapter.Index)
	}
	if info.HasGPU() && opts.NoGPU != NoGPUSoftware {
		return Assignment{}, fmt.Errorf("no GPU assigned to this task on a GPU node: add device \"nvidia/gpu\" { count = 1 } to the task's resources, or set the plugin option for tasks without GPU to %q to allow software rendering", NoGPUSoftware)
	}
	a := Assignment{AdapterIndex: -1, Software: true, Env: map[string]string{
		// Hide NVIDIA devices from CUDA and the container-style variable.
		"NVIDIA_VISIBLE_DEVICES":    "void",
		"CUDA_VISIBLE_DEVICES":      "",
		"__GLX_VENDOR_LIBRARY_NAME": "mesa",
		"LIBGL_ALWAYS_SOFTWARE":     "1",
	}}
	if p := info.softwareICD(); p != "" {
		a.Env["VK_DRIVER_FILES"] = p
		a.Env["VK_ICD_FILENAMES"] = p
	} else {
		a.Warnings = append(a.Warnings, "no software Vulkan driver (lavapipe, package mesa-vulkan-drivers) on this node: only OpenGL will work")
	}
	if info.EGLVendorMesa != "" {
		a.Env["__EGL_VENDOR_LIBRARY_FILENAMES"] = info.EGLVendorMesa
	}
	return a, nil
}

// deviceID is how CUDA_VISIBLE_DEVICES names a GPU: its UUID when known
// (stable across reboots and independent of CUDA's own ordering), else its
// index, which CUDA_DEVICE_ORDER=PCI_BUS_ID makes match nvidia-smi's.
func deviceID(g GPU) string {
	if g.UUID != "" {
		return g.UUID
	}
	return strconv.Itoa(g.Index)
}

func gpuByIndex(info Info, n int) (GPU, bool) {
	for _, g := range info.GPUs {
		if g.Index == n {
			return g, true
		}
	}
	return GPU{}, false
}

func knownIDs(info Info) []string {
	var ids []string
	for _, g := range info.GPUs {
		ids = append(ids, deviceID(g))
		for _, m := range g.MIG {
			ids = append(ids, m.UUID)
		}
	}
	return ids
}

func sortedByBus(gpus []GPU) []GPU {
	s := append([]GPU(nil), gpus...)
	sort.Slice(s, func(x, y int) bool { return s[x].PCIBusID < s[y].PCIBusID })
	return s
}

func indexOfBus(gpus []GPU, bus string) int {
	for i, g := range gpus {
		if g.PCIBusID == bus {
			return i
		}
	}
	return -1
}
