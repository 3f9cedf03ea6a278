package gpu

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	migSMI := map[string]string{queryArgs: "smi-query.csv", "-L": "smi-L.txt"}
	h100SMI := map[string]string{queryArgs: "smi-query.csv"}
	tests := []struct {
		name       string
		dir        string
		run        func(t *testing.T) RunFunc
		wantDriver string
		wantSource string
		wantGPUs   []GPU // Index, UUID, Name, PCIBusID, Minor, MIGEnabled, len(MIG), NVENC compared
		wantVulkan bool
		wantICD    string
		wantEGL    string
		warnSubstr string
	}{
		{
			name: "no GPU", dir: "nogpu",
			run: func(t *testing.T) RunFunc { return nil },
		},
		{
			name: "one GPU, proc only", dir: "one",
			run:        func(t *testing.T) RunFunc { return nil },
			wantDriver: "550.127.05", wantSource: "proc",
			wantGPUs:   []GPU{{Index: 0, UUID: "GPU-1f9c2e3a-5b7d-4c1e-9a8b-2d3e4f5a6b7c", Name: "NVIDIA L4", PCIBusID: "0000:01:00.0", Minor: 0, NVENC: true}},
			wantVulkan: true, wantICD: "/usr/share/vulkan/icd.d/nvidia_icd.json", wantEGL: "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
		},
		{
			name: "one GPU, nvidia-smi not installed", dir: "one",
			run:        func(t *testing.T) RunFunc { return missingSMI },
			wantDriver: "550.127.05", wantSource: "proc",
			wantGPUs:   []GPU{{Index: 0, UUID: "GPU-1f9c2e3a-5b7d-4c1e-9a8b-2d3e4f5a6b7c", Name: "NVIDIA L4", PCIBusID: "0000:01:00.0", Minor: 0, NVENC: true}},
			wantVulkan: true, wantICD: "/usr/share/vulkan/icd.d/nvidia_icd.json", wantEGL: "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
		},
		{
			name: "one GPU, nvidia-smi failing is a warning", dir: "one",
			run:        func(t *testing.T) RunFunc { return failingSMI },
			wantDriver: "550.127.05", wantSource: "proc",
			wantGPUs:   []GPU{{Index: 0, UUID: "GPU-1f9c2e3a-5b7d-4c1e-9a8b-2d3e4f5a6b7c", Name: "NVIDIA L4", PCIBusID: "0000:01:00.0", Minor: 0, NVENC: true}},
			wantVulkan: true, wantICD: "/usr/share/vulkan/icd.d/nvidia_icd.json", wantEGL: "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
			warnSubstr: "couldn't communicate with the NVIDIA driver",
		},
		{
			name: "four GPUs ordered by bus id, not by minor", dir: "four",
			run:        func(t *testing.T) RunFunc { return nil },
			wantDriver: "550.127.05", wantSource: "proc",
			wantGPUs: []GPU{
				{Index: 0, UUID: "GPU-aaaaaaaa-1111-2222-3333-000000000017", Name: "NVIDIA L40S", PCIBusID: "0000:17:00.0", Minor: 2, NVENC: true},
				{Index: 1, UUID: "GPU-bbbbbbbb-1111-2222-3333-000000000031", Name: "NVIDIA L40S", PCIBusID: "0000:31:00.0", Minor: 0, NVENC: true},
				{Index: 2, UUID: "GPU-cccccccc-1111-2222-3333-0000000000b1", Name: "NVIDIA L40S", PCIBusID: "0000:b1:00.0", Minor: 3, NVENC: true},
				{Index: 3, UUID: "GPU-dddddddd-1111-2222-3333-0000000000ca", Name: "NVIDIA L40S", PCIBusID: "0000:ca:00.0", Minor: 1, NVENC: true},
			},
			wantVulkan: true, wantICD: "/usr/share/vulkan/icd.d/nvidia_icd.json", wantEGL: "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
		},
		{
			name: "MIG: UUIDs from nvidia-smi, MIG devices from -L, A100 has no NVENC", dir: "mig",
			run:        func(t *testing.T) RunFunc { return fakeSMI(t, "mig", migSMI) },
			wantDriver: "550.127.05", wantSource: "proc+nvidia-smi",
			wantGPUs: []GPU{
				{Index: 0, UUID: "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77", Name: "NVIDIA A100-SXM4-40GB", PCIBusID: "0000:07:00.0", Minor: 0},
				{Index: 1, UUID: "GPU-72b8c3f1-8e55-4a9e-b0a3-1c2d3e4f5a6b", Name: "NVIDIA A100-SXM4-40GB", PCIBusID: "0000:0f:00.0", Minor: 1, MIGEnabled: true, MIG: make([]MIGDevice, 3)},
			},
			wantVulkan: true, wantICD: "/usr/share/vulkan/icd.d/nvidia_icd.json", wantEGL: "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
		},
		{
			name: "MIG node without nvidia-smi: UUIDs unknown, said in no error", dir: "mig",
			run:        func(t *testing.T) RunFunc { return nil },
			wantDriver: "550.127.05", wantSource: "proc",
			wantGPUs: []GPU{
				{Index: 0, Name: "NVIDIA A100-SXM4-40GB", PCIBusID: "0000:07:00.0", Minor: 0},
				{Index: 1, Name: "NVIDIA A100-SXM4-40GB", PCIBusID: "0000:0f:00.0", Minor: 1},
			},
			wantVulkan: true, wantICD: "/usr/share/vulkan/icd.d/nvidia_icd.json", wantEGL: "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
		},
		{
			name: "Vulkan missing", dir: "novulkan",
			run:        func(t *testing.T) RunFunc { return nil },
			wantDriver: "550.127.05", wantSource: "proc",
			wantGPUs: []GPU{{Index: 0, UUID: "GPU-3b3b3b3b-0000-1111-2222-333333333333", Name: "Tesla T4", PCIBusID: "0000:3b:00.0", Minor: 0, NVENC: true}},
			wantEGL:  "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
		},
		{
			name: "real H100 node (recorded): no NVENC, no glvnd so no Vulkan", dir: "h100",
			run:        func(t *testing.T) RunFunc { return fakeSMI(t, "h100", h100SMI) },
			wantDriver: "580.159.04", wantSource: "proc+nvidia-smi",
			wantGPUs: []GPU{{Index: 0, UUID: "GPU-96824448-f1ee-fe67-1b1f-fa35361b9605", Name: "NVIDIA H100 80GB HBM3", PCIBusID: "0000:00:06.0", Minor: 0}},
			wantICD:  "/usr/share/vulkan/icd.d/nvidia_icd.json", wantEGL: "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := detect(t, tt.dir, tt.run(t), nil)
			if info.DriverVersion != tt.wantDriver {
				t.Errorf("DriverVersion = %q, want %q", info.DriverVersion, tt.wantDriver)
			}
			if info.Source != tt.wantSource {
				t.Errorf("Source = %q, want %q", info.Source, tt.wantSource)
			}
			if len(info.GPUs) != len(tt.wantGPUs) {
				t.Fatalf("got %d GPUs %+v, want %d", len(info.GPUs), info.GPUs, len(tt.wantGPUs))
			}
			for i, w := range tt.wantGPUs {
				g := info.GPUs[i]
				got := GPU{Index: g.Index, UUID: g.UUID, Name: g.Name, PCIBusID: g.PCIBusID, Minor: g.Minor, MIGEnabled: g.MIGEnabled, NVENC: g.NVENC}
				w2 := w
				w2.MIG = nil
				if !reflect.DeepEqual(got, w2) {
					t.Errorf("GPU %d = %+v, want %+v", i, got, w2)
				}
				if len(g.MIG) != len(w.MIG) {
					t.Errorf("GPU %d has %d MIG devices, want %d", i, len(g.MIG), len(w.MIG))
				}
				if !g.NVENC && g.NVENCReason == "" {
					t.Errorf("GPU %d: NVENC false without a reason", i)
				}
			}
			if got := info.VulkanNVIDIA() && info.Loadable(LibVulkan); got != tt.wantVulkan {
				t.Errorf("Vulkan usable = %v, want %v (missing: %v)", got, tt.wantVulkan, info.VulkanMissing())
			}
			if info.NVIDIAICD != tt.wantICD {
				t.Errorf("NVIDIAICD = %q, want %q", info.NVIDIAICD, tt.wantICD)
			}
			if info.EGLVendorNVIDIA != tt.wantEGL {
				t.Errorf("EGLVendorNVIDIA = %q, want %q", info.EGLVendorNVIDIA, tt.wantEGL)
			}
			if tt.warnSubstr != "" && !strings.Contains(strings.Join(info.Warnings, "\n"), tt.warnSubstr) {
				t.Errorf("warnings %q lack %q", info.Warnings, tt.warnSubstr)
			} else if tt.warnSubstr == "" && len(info.Warnings) > 0 {
				t.Errorf("unexpected warnings: %q", info.Warnings)
			}
		})
	}
}

func TestDetectMIGDevices(t *testing.T) {
	info := detect(t, "mig", fakeSMI(t, "mig", map[string]string{queryArgs: "smi-query.csv", "-L": "smi-L.txt"}), nil)
	want := []MIGDevice{
		{UUID: "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", Profile: "3g.20gb", Index: 0},
		{UUID: "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb", Profile: "2g.10gb", Index: 1},
		{UUID: "MIG-0c757cd7-e942-5726-a0b8-0e8fb7067135", Profile: "1g.5gb", Index: 2},
	}
	if got := info.GPUs[1].MIG; !reflect.DeepEqual(got, want) {
		t.Errorf("MIG devices = %+v, want %+v", got, want)
	}
}

// The real H100 recording: /proc gave the UUID both before and after the GPU
// was initialised (persistence mode on), and the ld.so.cache entries resolve.
func TestDetectRecordedH100Libraries(t *testing.T) {
	info := detect(t, "h100", nil, nil)
	want := map[string]string{
		LibNVENC:     "/usr/local/nvidia/lib64/libnvidia-encode.so.1",
		LibGLXNVIDIA: "/usr/local/nvidia/lib64/libGLX_nvidia.so.0",
		LibEGLNVIDIA: "/usr/local/nvidia/lib64/libEGL_nvidia.so.0",
		LibNVML:      "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
		LibCUDA:      "/usr/local/nvidia/lib64/libcuda.so.1",
	}
	if !reflect.DeepEqual(info.Libraries, want) {
		t.Errorf("Libraries = %v, want %v", info.Libraries, want)
	}
	if info.GPUs[0].UUID != "GPU-96824448-f1ee-fe67-1b1f-fa35361b9605" {
		t.Errorf("UUID from /proc = %q", info.GPUs[0].UUID)
	}
	if got := info.GPUs[0].NVENCReason; !strings.Contains(got, "no NVENC") {
		t.Errorf("NVENCReason = %q, want the name-table reason", got)
	}
	missing := strings.Join(info.VulkanMissing(), "; ")
	for _, w := range []string{"libGLdispatch.so.0", "libEGL.so.1", "libvulkan.so.1"} {
		if !strings.Contains(missing, w) {
			t.Errorf("VulkanMissing() = %q, want it to name %s", missing, w)
		}
	}
}

func TestDetectVulkanEnvOverrides(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // ICD paths in order
	}{
		{"default dirs", nil, []string{"/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", "/usr/share/vulkan/icd.d/nvidia_icd.json"}},
		{"VK_DRIVER_FILES wins", map[string]string{"VK_DRIVER_FILES": "/usr/share/vulkan/icd.d/nvidia_icd.json", "VK_ICD_FILENAMES": "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"}, []string{"/usr/share/vulkan/icd.d/nvidia_icd.json"}},
		{"VK_ICD_FILENAMES alone", map[string]string{"VK_ICD_FILENAMES": "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"}, []string{"/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"}},
		{"directory in VK_DRIVER_FILES", map[string]string{"VK_DRIVER_FILES": "/usr/share/vulkan/icd.d"}, []string{"/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", "/usr/share/vulkan/icd.d/nvidia_icd.json"}},
		{"XDG_DATA_DIRS elsewhere", map[string]string{"XDG_DATA_DIRS": "/opt/share"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := detect(t, "four", nil, tt.env)
			var got []string
			for _, icd := range info.VulkanICDs {
				got = append(got, icd.Path)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ICDs = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDetectBadRoot(t *testing.T) {
	_, err := Detector{Root: "testdata/does-not-exist"}.Detect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does-not-exist") {
		t.Fatalf("err = %v, want one naming the root", err)
	}
}
