// Package gpu detects NVIDIA GPUs and the graphics stack on a node, and maps
// the GPUs Nomad assigned to a task to what the Unreal app needs: a Vulkan
// physical-device index for -graphicsadapter=N and a consistent environment
// (CUDA_VISIBLE_DEVICES, VK_DRIVER_FILES, the GLX/EGL vendor variables).
//
// Detection is pure Go and needs no NVIDIA tool: it reads /proc/driver/nvidia,
// the Vulkan ICD and glvnd vendor manifests, and ld.so.cache, all under a
// configurable root so tests run on recorded trees (testdata/). nvidia-smi is
// used when present, through an injectable runner, to fill in what /proc does
// not always give (MIG devices, UUIDs on some drivers).
//
// README.md in this directory records the facts the mapping relies on (Vulkan
// loader ordering, the environment variables honoured, which GPUs lack NVENC,
// device-cgroup isolation) with their sources and what was verified on real
// hardware.
package gpu
