package gpu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNormalizeBusID(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{"0000:00:06.0", "0000:00:06.0", ""},
		{"00000000:00:06.0", "0000:00:06.0", ""}, // nvidia-smi
		{"00000000:B1:00.0", "0000:b1:00.0", ""},
		{"3b:00.0", "0000:3b:00.0", ""},
		{"0001:3b:00.1", "0001:3b:00.1", ""},
		{"nonsense", "", "not a PCI bus id"},
		{"0000:3b:00.9", "", "not a PCI bus id"},
		{"100000:3b:00.0", "", "domain above ffff"},
	}
	for _, tt := range tests {
		got, err := normalizeBusID(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("normalizeBusID(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("normalizeBusID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseInformation(t *testing.T) {
	real, err := os.ReadFile("testdata/h100/information.0000_00_06.0")
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseInformation("0000:00:06.0", string(real))
	if err != nil || g.UUID != "GPU-96824448-f1ee-fe67-1b1f-fa35361b9605" || g.Name != "NVIDIA H100 80GB HBM3" || g.Minor != 0 || g.BusID != "0000:00:06.0" {
		t.Errorf("recorded H100 information = %+v, %v", g, err)
	}
	g, err = parseInformation("0000:07:00.0", "Model: \t\t NVIDIA A100\nGPU UUID: \t GPU-????????-????-????-????-????????????\nDevice Minor: \t 4\n")
	if err != nil || g.UUID != "" || g.BusID != "0000:07:00.0" || g.Minor != 4 {
		t.Errorf("uninitialised GPU = %+v, %v; want no UUID, bus from the directory name", g, err)
	}
	if _, err := parseInformation("0000:07:00.0", "IRQ: 5\n"); err == nil || !strings.Contains(err.Error(), "Model") {
		t.Errorf("information without Model: err = %v", err)
	}
}

func TestParseDriverVersion(t *testing.T) {
	b, _ := os.ReadFile("testdata/h100/root/proc/driver/nvidia/version")
	if v, err := parseDriverVersion(string(b)); err != nil || v != "580.159.04" {
		t.Errorf("recorded version = %q, %v", v, err)
	}
	b, _ = os.ReadFile("testdata/four/root/proc/driver/nvidia/version")
	if v, err := parseDriverVersion(string(b)); err != nil || v != "550.127.05" {
		t.Errorf("proprietary module version = %q, %v", v, err)
	}
	if _, err := parseDriverVersion("garbage\n"); err == nil {
		t.Error("garbage accepted")
	}
}

func TestParseLDCache(t *testing.T) {
	real, err := os.ReadFile("testdata/h100/root/etc/ld.so.cache")
	if err != nil {
		t.Fatal(err)
	}
	libs, err := parseLDCache(real)
	if err != nil {
		t.Fatal(err)
	}
	// ldconfig -p on that node listed libnvidia-encode.so.1 first under
	// /usr/local/nvidia/lib64 (testdata/h100/record-log.txt).
	if got := libs["libnvidia-encode.so.1"]; got != "/usr/local/nvidia/lib64/libnvidia-encode.so.1" {
		t.Errorf("libnvidia-encode.so.1 => %q", got)
	}
	if got := libs["libc.so.6"]; got != "/lib/x86_64-linux-gnu/libc.so.6" {
		t.Errorf("libc.so.6 => %q", got)
	}
	for _, bad := range [][]byte{nil, []byte("ld.so-1.7.0 old format only")} {
		if _, err := parseLDCache(bad); err == nil {
			t.Errorf("parseLDCache(%q) accepted a file without %s", bad, ldCacheMagic)
		}
	}
	if libs, err := parseLDCache(append([]byte(ldCacheMagic), make([]byte, 28)...)); err != nil || len(libs) != 0 {
		t.Errorf("empty cache = %v, %v", libs, err)
	}
	trunc := append([]byte(nil), real[:100]...)
	if _, err := parseLDCache(trunc); err == nil {
		t.Error("truncated cache accepted")
	}
}

// A stale cache entry (file gone) must not make a library count as loadable.
func TestFindLibrariesStaleCache(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile("testdata/h100/root/etc/ld.so.cache")
	if err := os.WriteFile(filepath.Join(root, "etc/ld.so.cache"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	libs, warns := findLibraries(root, []string{LibNVENC})
	if len(libs) != 0 || len(warns) != 0 {
		t.Errorf("libs = %v, warnings = %v; want nothing found", libs, warns)
	}
}

func TestParseSMIQueryErrors(t *testing.T) {
	for in, want := range map[string]string{
		"0, GPU-x, name\n": "want 6 fields",
		"x, GPU-x, n, 00000000:01:00.0, Disabled, 550.1\n":   "index \"x\" is not a number",
		"0, GPU-x, n, somewhere, Disabled, 550.1\n":          "not a PCI bus id",
		"0, \"GPU-x, n, 00000000:01:00.0, Disabled, 550.1\n": "parse nvidia-smi csv",
	} {
		if _, err := parseSMIQuery(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseSMIQuery(%q) err = %v, want %q", in, err, want)
		}
	}
}

func TestParseSMIListOldMIGFormat(t *testing.T) {
	// R450 printed MIG UUIDs as MIG-GPU-<uuid>/<gi>/<ci>.
	out := "GPU 0: A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)\n  MIG 1g.5gb Device 0: (UUID: MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0)\n"
	m := parseSMIList(out)["GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77"]
	if len(m) != 1 || m[0].UUID != "MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0" || m[0].Profile != "1g.5gb" {
		t.Errorf("MIG devices = %+v", m)
	}
}

func TestNVENCNameTable(t *testing.T) {
	for name, want := range map[string]bool{
		"NVIDIA H100 80GB HBM3": false, "NVIDIA H100 PCIe": false, "NVIDIA H200": false, "NVIDIA GH200 480GB": false,
		"NVIDIA A100-SXM4-40GB": false, "NVIDIA A100 80GB PCIe": false, "NVIDIA A30": false, "NVIDIA H800": false,
		"NVIDIA L4": true, "NVIDIA L40S": true, "Tesla T4": true, "NVIDIA A10": true, "NVIDIA A40": true,
		"NVIDIA RTX A3000 Laptop GPU": true, "NVIDIA GeForce RTX 4090": true, "NVIDIA RTX A5000": true,
	} {
		if got := chipHasNVENC(name); got != want {
			t.Errorf("chipHasNVENC(%q) = %v, want %v", name, got, want)
		}
	}
}
