package gpu

import (
	"strings"
	"testing"
)

func TestParseAdapter(t *testing.T) {
	tests := []struct {
		in      string
		want    Adapter
		wantErr string
	}{
		{"", AutoAdapter, ""},
		{"auto", AutoAdapter, ""},
		{" AUTO ", AutoAdapter, ""},
		{"0", Adapter{Index: 0}, ""},
		{"3", Adapter{Index: 3}, ""},
		{"-1", Adapter{}, `gpu.adapter = "-1": want "auto" or a Vulkan device index`},
		{"first", Adapter{}, `gpu.adapter = "first": want "auto"`},
		{"1.5", Adapter{}, `gpu.adapter = "1.5"`},
	}
	for _, tt := range tests {
		got, err := ParseAdapter(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseAdapter(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseAdapter(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseNoGPUPolicy(t *testing.T) {
	for in, want := range map[string]NoGPUPolicy{"": NoGPURefuse, "refuse": NoGPURefuse, "Software": NoGPUSoftware} {
		if got, err := ParseNoGPUPolicy("no_gpu", in); err != nil || got != want {
			t.Errorf("ParseNoGPUPolicy(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseNoGPUPolicy("no_gpu", "maybe")
	if err == nil || !strings.Contains(err.Error(), `no_gpu = "maybe": want "refuse"`) {
		t.Errorf("err = %v, want one naming no_gpu and the allowed values", err)
	}
}

func TestCheckRender(t *testing.T) {
	one := detect(t, "one", nil, nil)
	none := detect(t, "nogpu", nil, nil)
	novk := detect(t, "novulkan", nil, nil)
	h100 := detect(t, "h100", nil, nil)
	bare := Info{}
	tests := []struct {
		name    string
		info    Info
		render  string
		wantErr []string
	}{
		{"vulkan on a complete GPU node", one, "vulkan", nil},
		{"vulkan on a GPU-less node with lavapipe", none, "vulkan", nil},
		{"vulkan on a GPU node without the Vulkan stack", novk, "vulkan",
			[]string{`render = "vulkan"`, "no NVIDIA Vulkan ICD manifest", "libGLX_nvidia.so.0", "libGLdispatch.so.0", "libvulkan.so.1"}},
		{"vulkan on the recorded H100 node (no glvnd, no loader)", h100, "vulkan",
			[]string{"libGLdispatch.so.0 (glvnd, package libglvnd0)", "libEGL.so.1", "libvulkan.so.1 (the Vulkan loader, package libvulkan1)"}},
		{"vulkan on a bare node", bare, "vulkan", []string{"no GPU and no software Vulkan driver", "libvulkan1"}},
		{"opengl on a complete GPU node", one, "opengl", nil},
		{"opengl on a bare node (Xvfb's own GLX)", bare, "opengl", nil},
		{"opengl on a GPU node without GLX", novk, "opengl", []string{`render = "opengl"`, "libGLX_nvidia.so.0"}},
		{"unknown render", one, "directx", []string{`render = "directx": want "vulkan" or "opengl"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRender(tt.info, tt.render)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("CheckRender: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckRender accepted %q", tt.render)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q lacks %q", err, w)
				}
			}
		})
	}
}
