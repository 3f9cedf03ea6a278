package gpu

import "regexp"

// noNVENC matches the product names of GPUs whose chip has no NVENC engine,
// per NVIDIA's Video Encode and Decode GPU Support Matrix and the NVENC
// generation table (GA100 and GH100 carry NVDEC/NVJPG but "No NVENC encoders
// available"; GP108 has none either). The library libnvidia-encode.so.1 is
// installed with every driver, so its presence says nothing about the chip;
// and on an H100, NVML's encoder-capacity query answers 100 (recorded in
// testdata/h100/), so NVML is no help either. Hence a name table.
var noNVENC = []*regexp.Regexp{
	regexp.MustCompile(`\bA100\b`),  // GA100: A100 PCIe/SXM4, A100X
	regexp.MustCompile(`\bA800\b`),  // GA100 export variant
	regexp.MustCompile(`\bA30X?\b`), // GA100: A30, A30X
	regexp.MustCompile(`\bH100\b`),  // GH100: PCIe, SXM5, NVL
	regexp.MustCompile(`\bH800\b`),  // GH100 export variant
	regexp.MustCompile(`\bH200\b`),  // GH100 with HBM3e
	regexp.MustCompile(`\bGH200\b`), // Grace Hopper
	regexp.MustCompile(`\bH20\b`),   // GH100 export variant
	regexp.MustCompile(`\bGT 1030\b`),
}

// chipHasNVENC reports whether a GPU of this product name has an NVENC
// engine. Unknown names are assumed to have one: every GeForce, RTX/Quadro
// and data-center graphics part (T4, A10, A40, L4, L40, ...) does.
func chipHasNVENC(name string) bool {
	for _, re := range noNVENC {
		if re.MatchString(name) {
			return false
		}
	}
	return true
}

// decideNVENC sets NVENC and NVENCReason on g: the chip must have an encoder
// (name table) and libnvidia-encode.so.1 must be loadable on the node.
func decideNVENC(g *GPU, libLoadable bool) {
	switch {
	case !chipHasNVENC(g.Name):
		g.NVENC, g.NVENCReason = false, g.Name+" has no NVENC video encoder (data-center compute part)"
	case !libLoadable:
		g.NVENC, g.NVENCReason = false, LibNVENC+" is not loadable (install the driver's encode library, e.g. libnvidia-encode)"
	default:
		g.NVENC, g.NVENCReason = true, ""
	}
}
