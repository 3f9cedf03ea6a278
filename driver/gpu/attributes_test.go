package gpu

import (
	"strings"
	"testing"
)

func TestAttributes(t *testing.T) {
	tests := []struct {
		name   string
		info   Info
		want   map[string]string
		status string
	}{
		{
			name: "no GPU", info: detect(t, "nogpu", nil, nil),
			want: map[string]string{
				"driver.pixelstream.gpu.count": "0", "driver.pixelstream.gpu.nvenc": "false",
				"driver.pixelstream.vulkan": "false", "driver.pixelstream.vulkan.software": "true",
				"driver.pixelstream.egl": "false",
			},
			status: "no NVIDIA GPU detected; software rendering only",
		},
		{
			name: "four GPUs", info: detect(t, "four", nil, nil),
			want: map[string]string{
				"driver.pixelstream.gpu.count": "4", "driver.pixelstream.gpu.nvenc": "true", "driver.pixelstream.gpu.nvenc_count": "4",
				"driver.pixelstream.gpu.driver_version": "550.127.05",
				"driver.pixelstream.gpu.2.uuid":         "GPU-cccccccc-1111-2222-3333-0000000000b1",
				"driver.pixelstream.gpu.2.pci_bus_id":   "0000:b1:00.0",
				"driver.pixelstream.gpu.2.name":         "NVIDIA L40S",
				"driver.pixelstream.vulkan":             "true", "driver.pixelstream.egl": "true", "driver.pixelstream.glx": "true",
			},
			status: "4 NVIDIA GPU(s), 4 with NVENC",
		},
		{
			name: "H100 without NVENC (recorded)", info: detect(t, "h100", nil, nil),
			want: map[string]string{
				"driver.pixelstream.gpu.count": "1", "driver.pixelstream.gpu.nvenc": "false", "driver.pixelstream.gpu.0.nvenc": "false",
				"driver.pixelstream.gpu.0.name": "NVIDIA H100 80GB HBM3", "driver.pixelstream.vulkan": "false",
			},
			status: "Vulkan unavailable: libGLdispatch.so.0",
		},
		{
			name: "MIG", info: detect(t, "mig", fakeSMI(t, "mig", map[string]string{queryArgs: "smi-query.csv", "-L": "smi-L.txt"}), nil),
			want: map[string]string{"driver.pixelstream.gpu.1.mig": "true", "driver.pixelstream.gpu.0.mig": "false", "driver.pixelstream.gpu.nvenc": "false"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.info.Attributes()
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			for k := range got {
				if !strings.HasPrefix(k, AttrPrefix) {
					t.Errorf("attribute %q lacks the %s prefix", k, AttrPrefix)
				}
			}
			if s := got["driver.pixelstream.gpu.status"]; !strings.Contains(s, tt.status) {
				t.Errorf("status = %q, want it to contain %q", s, tt.status)
			}
		})
	}
}
