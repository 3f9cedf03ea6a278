package gpu

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestMap(t *testing.T) {
	four := detect(t, "four", nil, nil)
	one := detect(t, "one", nil, nil)
	none := detect(t, "nogpu", nil, nil)
	mig := detect(t, "mig", fakeSMI(t, "mig", map[string]string{queryArgs: "smi-query.csv", "-L": "smi-L.txt"}), nil)
	h100 := detect(t, "h100", fakeSMI(t, "h100", map[string]string{queryArgs: "smi-query.csv"}), nil)
	auto := MapOptions{Adapter: AutoAdapter}

	tests := []struct {
		name      string
		info      Info
		visible   string
		opts      MapOptions
		wantIndex int
		wantBuses []string
		wantCUDA  string
		wantEnv   map[string]string // subset
		wantWarn  string
		wantErr   string
	}{
		{
			name: "one GPU by UUID", info: one, visible: "GPU-1f9c2e3a-5b7d-4c1e-9a8b-2d3e4f5a6b7c", opts: auto,
			wantIndex: 0, wantBuses: []string{"0000:01:00.0"}, wantCUDA: "GPU-1f9c2e3a-5b7d-4c1e-9a8b-2d3e4f5a6b7c",
			wantEnv: map[string]string{
				"VK_DRIVER_FILES": "/usr/share/vulkan/icd.d/nvidia_icd.json", "VK_ICD_FILENAMES": "/usr/share/vulkan/icd.d/nvidia_icd.json",
				"__GLX_VENDOR_LIBRARY_NAME": "nvidia", "__EGL_VENDOR_LIBRARY_FILENAMES": "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
				"NODEVICE_SELECT": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
			},
		},
		{
			name: "four GPUs, task assigned the third (by UUID)", info: four, visible: "GPU-cccccccc-1111-2222-3333-0000000000b1", opts: auto,
			wantIndex: 2, wantBuses: []string{"0000:b1:00.0"}, wantCUDA: "GPU-cccccccc-1111-2222-3333-0000000000b1",
		},
		{
			name: "four GPUs, the third by index", info: four, visible: "2", opts: auto,
			wantIndex: 2, wantBuses: []string{"0000:b1:00.0"}, wantCUDA: "GPU-cccccccc-1111-2222-3333-0000000000b1",
		},
		{
			name: "four GPUs, the third, isolated: the only Vulkan device left", info: four, visible: "GPU-cccccccc-1111-2222-3333-0000000000b1",
			opts:      MapOptions{Adapter: AutoAdapter, Isolated: true},
			wantIndex: 0, wantBuses: []string{"0000:b1:00.0"}, wantCUDA: "GPU-cccccccc-1111-2222-3333-0000000000b1",
		},
		{
			name: "two GPUs listed out of order: adapter follows the lower bus id", info: four,
			visible: "GPU-dddddddd-1111-2222-3333-0000000000ca, GPU-bbbbbbbb-1111-2222-3333-000000000031", opts: auto,
			wantIndex: 1, wantBuses: []string{"0000:31:00.0", "0000:ca:00.0"},
			wantCUDA: "GPU-dddddddd-1111-2222-3333-0000000000ca,GPU-bbbbbbbb-1111-2222-3333-000000000031",
		},
		{
			name: "all", info: four, visible: "all", opts: auto,
			wantIndex: 0, wantBuses: []string{"0000:17:00.0", "0000:31:00.0", "0000:b1:00.0", "0000:ca:00.0"},
			wantCUDA: "GPU-aaaaaaaa-1111-2222-3333-000000000017,GPU-bbbbbbbb-1111-2222-3333-000000000031,GPU-cccccccc-1111-2222-3333-0000000000b1,GPU-dddddddd-1111-2222-3333-0000000000ca",
		},
		{
			name: "UUID in lower/upper case mix", info: four, visible: "gpu-CCCCCCCC-1111-2222-3333-0000000000B1", opts: auto,
			wantIndex: 2, wantBuses: []string{"0000:b1:00.0"}, wantCUDA: "GPU-cccccccc-1111-2222-3333-0000000000b1",
		},
		{
			name: "MIG device: CUDA gets the MIG UUID, Vulkan the parent GPU", info: mig, visible: "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb", opts: auto,
			wantIndex: 1, wantBuses: []string{"0000:0f:00.0"}, wantCUDA: "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb",
			wantWarn: "only compute (CUDA) on MIG",
		},
		{
			name: "adapter override", info: four, visible: "GPU-cccccccc-1111-2222-3333-0000000000b1", opts: MapOptions{Adapter: Adapter{Index: 2}},
			wantIndex: 2, wantBuses: []string{"0000:b1:00.0"}, wantCUDA: "GPU-cccccccc-1111-2222-3333-0000000000b1",
		},
		{
			name: "adapter override onto a GPU Nomad did not assign warns", info: four, visible: "GPU-cccccccc-1111-2222-3333-0000000000b1", opts: MapOptions{Adapter: Adapter{Index: 0}},
			wantIndex: 0, wantBuses: []string{"0000:b1:00.0"}, wantCUDA: "GPU-cccccccc-1111-2222-3333-0000000000b1",
			wantWarn: "which Nomad did not assign",
		},
		{
			name: "adapter override out of range", info: four, visible: "GPU-cccccccc-1111-2222-3333-0000000000b1", opts: MapOptions{Adapter: Adapter{Index: 4}},
			wantErr: "gpu.adapter = 4: this task sees 4 Vulkan GPU(s) (indices 0-3)",
		},
		{
			name: "adapter override out of range when isolated", info: four, visible: "GPU-cccccccc-1111-2222-3333-0000000000b1", opts: MapOptions{Adapter: Adapter{Index: 1}, Isolated: true},
			wantErr: "gpu.adapter = 1: this task sees 1 Vulkan GPU(s)",
		},
		{
			name: "unknown UUID", info: four, visible: "GPU-00000000-0000-0000-0000-000000000000", opts: auto,
			wantErr: "GPU-00000000-0000-0000-0000-000000000000 is not a GPU or MIG device of this node",
		},
		{
			name: "index out of range", info: four, visible: "7", opts: auto,
			wantErr: "index 7 does not exist; this node has GPUs 0-3",
		},
		{
			name: "empty list entry", info: four, visible: "2,,3", opts: auto,
			wantErr: "empty entry",
		},
		{
			name: "GPU requested on a node without GPU", info: none, visible: "GPU-1f9c2e3a-5b7d-4c1e-9a8b-2d3e4f5a6b7c", opts: auto,
			wantErr: "this node has no NVIDIA GPU",
		},
		{
			name: "real H100 recording", info: h100, visible: "GPU-96824448-f1ee-fe67-1b1f-fa35361b9605", opts: auto,
			wantIndex: 0, wantBuses: []string{"0000:00:06.0"}, wantCUDA: "GPU-96824448-f1ee-fe67-1b1f-fa35361b9605",
			wantEnv: map[string]string{"VK_DRIVER_FILES": "/usr/share/vulkan/icd.d/nvidia_icd.json", "__GLX_VENDOR_LIBRARY_NAME": "nvidia"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Map(tt.info, tt.visible, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if a.AdapterIndex != tt.wantIndex || a.Software {
				t.Errorf("AdapterIndex = %d (software %v), want %d", a.AdapterIndex, a.Software, tt.wantIndex)
			}
			if want := []string{"-graphicsadapter=" + itoa(tt.wantIndex)}; !reflect.DeepEqual(a.Args, want) {
				t.Errorf("Args = %v, want %v", a.Args, want)
			}
			var buses []string
			for _, g := range a.GPUs {
				buses = append(buses, g.PCIBusID)
			}
			if !reflect.DeepEqual(buses, tt.wantBuses) {
				t.Errorf("GPUs = %v, want %v", buses, tt.wantBuses)
			}
			if a.Env["CUDA_VISIBLE_DEVICES"] != tt.wantCUDA || a.Env["NVIDIA_VISIBLE_DEVICES"] != tt.wantCUDA {
				t.Errorf("CUDA_VISIBLE_DEVICES = %q, NVIDIA_VISIBLE_DEVICES = %q, want %q", a.Env["CUDA_VISIBLE_DEVICES"], a.Env["NVIDIA_VISIBLE_DEVICES"], tt.wantCUDA)
			}
			for k, v := range tt.wantEnv {
				if a.Env[k] != v {
					t.Errorf("Env[%s] = %q, want %q", k, a.Env[k], v)
				}
			}
			warns := strings.Join(a.Warnings, "\n")
			if tt.wantWarn == "" && warns != "" {
				t.Errorf("unexpected warnings: %s", warns)
			}
			if tt.wantWarn != "" && !strings.Contains(warns, tt.wantWarn) {
				t.Errorf("warnings %q lack %q", warns, tt.wantWarn)
			}
		})
	}
}

func TestMapNoGPU(t *testing.T) {
	four := detect(t, "four", nil, nil)
	none := detect(t, "nogpu", nil, nil)
	novk := detect(t, "novulkan", nil, nil)
	tests := []struct {
		name     string
		info     Info
		visible  string
		opts     MapOptions
		wantEnv  map[string]string
		wantWarn string
		wantErr  string
	}{
		{name: "node without GPU renders in software", info: none, visible: "", opts: MapOptions{Adapter: AutoAdapter},
			wantEnv: map[string]string{"VK_DRIVER_FILES": "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", "__EGL_VENDOR_LIBRARY_FILENAMES": "/usr/share/glvnd/egl_vendor.d/50_mesa.json", "NVIDIA_VISIBLE_DEVICES": "void", "CUDA_VISIBLE_DEVICES": ""}},
		{name: "GPU node, no GPU assigned, refuse (default)", info: four, visible: "", opts: MapOptions{Adapter: AutoAdapter},
			wantErr: "no GPU assigned to this task on a GPU node: add device \"nvidia/gpu\""},
		{name: "GPU node, void, refuse", info: four, visible: "void", opts: MapOptions{Adapter: AutoAdapter, NoGPU: NoGPURefuse},
			wantErr: "no GPU assigned"},
		{name: "GPU node, none, software allowed", info: four, visible: "none", opts: MapOptions{Adapter: AutoAdapter, NoGPU: NoGPUSoftware},
			wantEnv: map[string]string{"VK_DRIVER_FILES": "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", "__GLX_VENDOR_LIBRARY_NAME": "mesa"}},
		{name: "software allowed but no lavapipe: warning", info: novk, visible: "", opts: MapOptions{Adapter: AutoAdapter, NoGPU: NoGPUSoftware},
			wantWarn: "no software Vulkan driver"},
		{name: "adapter set without a GPU", info: none, visible: "", opts: MapOptions{Adapter: Adapter{Index: 1}},
			wantErr: "gpu.adapter = 1 but no GPU is assigned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Map(tt.info, tt.visible, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if !a.Software || a.AdapterIndex != -1 || len(a.Args) != 0 || len(a.GPUs) != 0 {
				t.Errorf("want a software assignment without -graphicsadapter, got %+v", a)
			}
			for k, v := range tt.wantEnv {
				if got, ok := a.Env[k]; !ok || got != v {
					t.Errorf("Env[%s] = %q (set %v), want %q", k, got, ok, v)
				}
			}
			if tt.wantWarn != "" && !strings.Contains(strings.Join(a.Warnings, "\n"), tt.wantWarn) {
				t.Errorf("warnings %q lack %q", a.Warnings, tt.wantWarn)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
