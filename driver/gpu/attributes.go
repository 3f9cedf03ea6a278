package gpu

import (
	"strconv"
	"strings"
)

// AttrPrefix prefixes every fingerprint attribute this package produces.
const AttrPrefix = "driver.pixelstream."

// Attributes returns the fingerprint attributes of the node, keyed by their
// full Nomad name. Values are strings; keys ending in .count/.N are integers
// and "true"/"false" values are booleans, so the driver may type them.
//
//	driver.pixelstream.gpu.count           number of NVIDIA GPUs (0: software rendering only)
//	driver.pixelstream.gpu.status          one line for operators: what was found or why nothing
//	driver.pixelstream.gpu.driver_version  NVIDIA kernel driver version
//	driver.pixelstream.gpu.nvenc           at least one GPU can encode with NVENC
//	driver.pixelstream.gpu.nvenc_count     GPUs that can
//	driver.pixelstream.gpu.<i>.name|uuid|pci_bus_id|nvenc|mig
//	driver.pixelstream.vulkan              NVIDIA Vulkan usable (ICD + libraries)
//	driver.pixelstream.vulkan.software     a software Vulkan driver (lavapipe) is usable
//	driver.pixelstream.egl                 NVIDIA EGL usable (glvnd vendor file + libraries)
//	driver.pixelstream.glx                 NVIDIA GLX usable (libGLX_nvidia + glvnd)
func (i Info) Attributes() map[string]string {
	a := map[string]string{}
	set := func(k, v string) { a[AttrPrefix+k] = v }
	b := strconv.FormatBool

	set("gpu.count", strconv.Itoa(len(i.GPUs)))
	nvenc := 0
	for _, g := range i.GPUs {
		p := "gpu." + strconv.Itoa(g.Index) + "."
		set(p+"name", g.Name)
		if g.UUID != "" {
			set(p+"uuid", g.UUID)
		}
		set(p+"pci_bus_id", g.PCIBusID)
		set(p+"nvenc", b(g.NVENC))
		set(p+"mig", b(g.MIGEnabled))
		if g.NVENC {
			nvenc++
		}
	}
	set("gpu.nvenc", b(nvenc > 0))
	set("gpu.nvenc_count", strconv.Itoa(nvenc))
	if i.DriverVersion != "" {
		set("gpu.driver_version", i.DriverVersion)
	}
	set("vulkan", b(i.HasGPU() && i.VulkanNVIDIA() && i.Loadable(LibVulkan)))
	set("vulkan.software", b(i.softwareICD() != "" && i.Loadable(LibVulkan)))
	set("egl", b(i.HasGPU() && i.EGLVendorNVIDIA != "" && i.Loadable(LibEGLNVIDIA) && i.Loadable(LibEGL)))
	set("glx", b(i.HasGPU() && i.Loadable(LibGLXNVIDIA) && i.Loadable(LibGLdispatch)))
	set("gpu.status", i.status(nvenc))
	return a
}

// status is the operator-facing one-liner of the fingerprint.
func (i Info) status(nvenc int) string {
	if !i.HasGPU() {
		if i.DriverVersion != "" {
			return "NVIDIA driver " + i.DriverVersion + " loaded but no GPU found; software rendering only"
		}
		return "no NVIDIA GPU detected; software rendering only"
	}
	var parts []string
	parts = append(parts, strconv.Itoa(len(i.GPUs))+" NVIDIA GPU(s), "+strconv.Itoa(nvenc)+" with NVENC")
	if m := i.VulkanMissing(); len(m) > 0 {
		parts = append(parts, "Vulkan unavailable: "+strings.Join(m, "; "))
	}
	return strings.Join(parts, "; ")
}

// softwareICD returns the path of a loadable CPU Vulkan driver, or "".
func (i Info) softwareICD() string {
	for _, icd := range i.VulkanICDs {
		if icd.Software && icd.Loadable {
			return icd.Path
		}
	}
	return ""
}
