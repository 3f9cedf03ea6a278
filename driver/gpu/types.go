package gpu

import "context"

// RunFunc runs a command and returns its standard output. Detector and Stats
// take one so tests can replay recorded nvidia-smi output.
type RunFunc func(ctx context.Context, name string, args ...string) ([]byte, error)

// GPU is one physical NVIDIA GPU on the node.
type GPU struct {
	// Index is the NVML/nvidia-smi index: GPUs ordered by PCI bus id. It is
	// also what NVIDIA_VISIBLE_DEVICES=0,1 refers to.
	Index int
	// UUID is "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"; empty when neither
	// /proc nor nvidia-smi gave one.
	UUID string
	// Name is the marketing name, e.g. "NVIDIA H100 80GB HBM3".
	Name string
	// PCIBusID is normalised to the kernel's form: "0000:00:06.0".
	PCIBusID string
	// Minor is N of /dev/nvidiaN, or -1 when unknown.
	Minor int
	// MIGEnabled is true when the GPU is in MIG mode.
	MIGEnabled bool
	// MIG lists the MIG devices on this GPU (only when MIGEnabled).
	MIG []MIGDevice
	// NVENC tells whether this GPU can encode with NVENC on this node (see
	// NVENCReason for why not).
	NVENC bool
	// NVENCReason explains NVENC=false; empty when NVENC is true.
	NVENCReason string
}

// MIGDevice is one MIG instance of a GPU in MIG mode.
type MIGDevice struct {
	// UUID is "MIG-..." (R470+ drivers) as NVIDIA_VISIBLE_DEVICES carries it.
	UUID string
	// Profile is the instance profile, e.g. "1g.10gb".
	Profile string
	// Index is the MIG device's index within its parent GPU (nvidia-smi -L).
	Index int
}

// ICD is one Vulkan driver manifest found on the node.
type ICD struct {
	// Path is the manifest's path on the node (not including Detector.Root).
	Path string
	// LibraryPath is the manifest's ICD.library_path.
	LibraryPath string
	// NVIDIA is true for NVIDIA's manifest (library libGLX_nvidia.so.0).
	NVIDIA bool
	// Software is true for CPU implementations (lavapipe, SwiftShader).
	Software bool
	// Loadable is true when LibraryPath resolves to a file on the node.
	Loadable bool
}

// Info is everything Detect found. The zero value describes a node without
// an NVIDIA GPU.
type Info struct {
	// DriverVersion is the NVIDIA kernel driver version, e.g. "580.159.04";
	// empty when no NVIDIA driver is loaded.
	DriverVersion string
	// GPUs are ordered by PCI bus id (the nvidia-smi index order).
	GPUs []GPU
	// Source says where the GPU list came from: "proc", "nvidia-smi" or
	// "proc+nvidia-smi"; empty when there are no GPUs.
	Source string

	// VulkanICDs are the manifests the Vulkan loader would consider, in its
	// search order (or exactly those named by VK_DRIVER_FILES/VK_ICD_FILENAMES
	// when Detector.Env sets them).
	VulkanICDs []ICD
	// NVIDIAICD is the path of NVIDIA's Vulkan manifest; empty when absent.
	NVIDIAICD string
	// EGLVendorNVIDIA is the path of glvnd's EGL vendor manifest for NVIDIA
	// (10_nvidia.json); empty when absent.
	EGLVendorNVIDIA string
	// EGLVendorMesa is the path of Mesa's EGL vendor manifest (50_mesa.json),
	// used for software rendering; empty when absent.
	EGLVendorMesa string

	// Libraries maps each library name we care about (see Libraries) to the
	// path the dynamic linker would load; a missing key means not loadable.
	Libraries map[string]string

	// Warnings are things detection could not read or reconcile; none of
	// them is fatal.
	Warnings []string
}

// Library names detection looks for. NVIDIA's Vulkan ICD lives in
// libGLX_nvidia.so.0, which needs glvnd's libGLdispatch.so.0 and libEGL.so.1.
const (
	LibNVENC      = "libnvidia-encode.so.1"
	LibGLXNVIDIA  = "libGLX_nvidia.so.0"
	LibEGLNVIDIA  = "libEGL_nvidia.so.0"
	LibGLdispatch = "libGLdispatch.so.0"
	LibVulkan     = "libvulkan.so.1"
	LibEGL        = "libEGL.so.1"
	LibNVML       = "libnvidia-ml.so.1"
	LibCUDA       = "libcuda.so.1"
)

// Libraries are the shared objects Detect reports on, in Info.Libraries.
var Libraries = []string{LibNVENC, LibGLXNVIDIA, LibEGLNVIDIA, LibGLdispatch, LibVulkan, LibEGL, LibNVML, LibCUDA}

// HasGPU reports whether the node has at least one NVIDIA GPU.
func (i Info) HasGPU() bool { return len(i.GPUs) > 0 }

// Loadable reports whether the dynamic linker would find lib.
func (i Info) Loadable(lib string) bool { _, ok := i.Libraries[lib]; return ok }

// VulkanNVIDIA reports whether the NVIDIA Vulkan driver is usable: its
// manifest is present and the library it names can be loaded together with
// the glvnd libraries it needs. On the recorded H100 node the ICD failed
// ("Could not get 'vkCreateInstance' via 'vk_icdGetInstanceProcAddr'") until
// both libGLdispatch.so.0 (libglvnd0) and libEGL.so.1 (libegl1) were
// installed (testdata/h100/vulkan-loader-3.txt).
func (i Info) VulkanNVIDIA() bool {
	return i.NVIDIAICD != "" && i.Loadable(LibGLXNVIDIA) && i.Loadable(LibGLdispatch) && i.Loadable(LibEGL)
}

// VulkanMissing says what stands between this node and NVIDIA Vulkan
// rendering; empty when nothing does.
func (i Info) VulkanMissing() []string {
	var m []string
	if !i.HasGPU() {
		m = append(m, "no NVIDIA GPU detected (/proc/driver/nvidia/gpus is empty or absent)")
	}
	if i.NVIDIAICD == "" {
		m = append(m, "no NVIDIA Vulkan ICD manifest (nvidia_icd.json in a vulkan/icd.d directory)")
	}
	if !i.Loadable(LibGLXNVIDIA) {
		m = append(m, LibGLXNVIDIA+" (NVIDIA's Vulkan/GLX driver library) is not loadable")
	}
	if !i.Loadable(LibGLdispatch) {
		m = append(m, LibGLdispatch+" (glvnd, package libglvnd0) is not loadable")
	}
	if !i.Loadable(LibEGL) {
		m = append(m, LibEGL+" (glvnd's EGL, package libegl1; NVIDIA's Vulkan driver needs it) is not loadable")
	}
	if !i.Loadable(LibVulkan) {
		m = append(m, LibVulkan+" (the Vulkan loader, package libvulkan1) is not loadable")
	}
	return m
}
