package gpu

import (
	"fmt"
	"strconv"
	"strings"
)

// Adapter is the task config's gpu.adapter: "auto" (map from the assigned
// GPU) or a fixed Vulkan physical-device index.
type Adapter struct {
	// Auto is true for "auto" (and for an unset value).
	Auto bool
	// Index is the fixed index when Auto is false.
	Index int
}

// AutoAdapter is the default: derive the index from the assigned GPU.
var AutoAdapter = Adapter{Auto: true}

// ParseAdapter parses gpu.adapter: "" or "auto", or a non-negative integer.
func ParseAdapter(v string) (Adapter, error) {
	s := strings.TrimSpace(v)
	if s == "" || strings.EqualFold(s, "auto") {
		return AutoAdapter, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return Adapter{}, fmt.Errorf("gpu.adapter = %q: want \"auto\" or a Vulkan device index (0, 1, ...)", v)
	}
	return Adapter{Index: n}, nil
}

// String renders the value as the job would write it.
func (a Adapter) String() string {
	if a.Auto {
		return "auto"
	}
	return strconv.Itoa(a.Index)
}

// NoGPUPolicy is the plugin's choice for a task that got no GPU on a node
// that has GPUs.
type NoGPUPolicy string

const (
	// NoGPURefuse fails the task: on a GPU node a job that forgot its
	// device block would otherwise render in software, slowly and silently.
	NoGPURefuse NoGPUPolicy = "refuse"
	// NoGPUSoftware runs the task with software rendering (lavapipe /
	// llvmpipe) and hides the GPUs from it.
	NoGPUSoftware NoGPUPolicy = "software"
)

// ParseNoGPUPolicy parses the plugin option (field name given by the caller,
// e.g. "no_gpu") : "refuse" (also the default for "") or "software".
func ParseNoGPUPolicy(field, v string) (NoGPUPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", string(NoGPURefuse):
		return NoGPURefuse, nil
	case string(NoGPUSoftware):
		return NoGPUSoftware, nil
	}
	return "", fmt.Errorf("%s = %q: want \"refuse\" (fail tasks without a GPU on GPU nodes) or \"software\" (let them render in software)", field, v)
}

// CheckRender refuses a render API the node cannot serve. render is the task
// config's render value: "vulkan" or "opengl". On a GPU node Vulkan needs
// NVIDIA's driver (ICD manifest, libGLX_nvidia.so.0, glvnd's
// libGLdispatch.so.0) and the loader libvulkan.so.1; on a node without GPU a
// software Vulkan driver (lavapipe) will do. The error says what is missing.
func CheckRender(info Info, render string) error {
	switch strings.ToLower(strings.TrimSpace(render)) {
	case "vulkan":
		if info.HasGPU() {
			if m := info.VulkanMissing(); len(m) > 0 {
				return fmt.Errorf("render = \"vulkan\": this node cannot render with Vulkan on its GPU: %s", strings.Join(m, "; "))
			}
			return nil
		}
		var m []string
		if info.softwareICD() == "" {
			m = append(m, "no GPU and no software Vulkan driver (lavapipe: package mesa-vulkan-drivers)")
		}
		if !info.Loadable(LibVulkan) {
			m = append(m, LibVulkan+" (the Vulkan loader, package libvulkan1) is not loadable")
		}
		if len(m) > 0 {
			return fmt.Errorf("render = \"vulkan\": this node has no Vulkan driver: %s; use render = \"opengl\" or run on a node with attr driver.pixelstream.vulkan = true", strings.Join(m, "; "))
		}
		return nil
	case "opengl":
		if info.HasGPU() && !(info.Loadable(LibGLXNVIDIA) && info.Loadable(LibGLdispatch)) {
			return fmt.Errorf("render = \"opengl\": the GPU's OpenGL driver is not usable: %s and %s (glvnd) must both be loadable", LibGLXNVIDIA, LibGLdispatch)
		}
		return nil
	}
	return fmt.Errorf("render = %q: want \"vulkan\" or \"opengl\"", render)
}
