// Package version holds the build's version, set by the linker from the GNUmakefile.
package version

// Version is overridden at build time with -ldflags "-X ...version.Version=...".
var Version = "0.1.0-dev"

// String returns the human-readable version line.
func String() string { return "nomad-driver-pixelstream " + Version }
