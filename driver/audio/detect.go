package audio

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Info is what the fingerprint reports about the node's audio support.
type Info struct {
	// Available is true when every program the stack runs is installed.
	Available bool
	// PipeWireVersion is the libpipewire version `pipewire --version` reports
	// (e.g. "0.3.65"); empty when pipewire is missing or did not say.
	PipeWireVersion string
	// Missing lists the programs not found.
	Missing []string
	// Hint says what to install when something is missing.
	Hint string
}

// packageOf maps each program to the Debian/Ubuntu package that ships it.
var packageOf = map[string]string{
	"dbus-daemon":    "dbus",
	"pipewire":       "pipewire",
	"wireplumber":    "wireplumber",
	"pipewire-pulse": "pipewire-pulse",
	"pw-metadata":    "pipewire-bin",
}

// Detect reports whether the audio stack can run here, looking programs up on PATH.
func Detect() Info { return DetectBinaries(Binaries{}) }

// DetectBinaries is Detect for explicit program paths (zero fields use PATH).
func DetectBinaries(b Binaries) Info {
	resolved, missing := b.resolve()
	info := Info{Available: len(missing) == 0, Missing: missing}
	if len(missing) > 0 {
		info.Hint = installHint(missing)
	}
	if p := resolved.PipeWire; filepath.IsAbs(p) {
		info.PipeWireVersion = pipewireVersion(p)
	}
	return info
}

func installHint(missing []string) string {
	seen := map[string]bool{}
	var pkgs []string
	for _, m := range missing {
		pkg, ok := packageOf[filepath.Base(m)]
		if !ok {
			continue
		}
		if !seen[pkg] {
			seen[pkg] = true
			pkgs = append(pkgs, pkg)
		}
	}
	sort.Strings(pkgs)
	if len(pkgs) == 0 {
		return fmt.Sprintf("check the paths given for %s", strings.Join(missing, ", "))
	}
	return fmt.Sprintf("install them (Debian/Ubuntu: apt-get install %s), or set audio = false", strings.Join(pkgs, " "))
}

// pipewireVersion prefers the linked library version over the compiled one:
// it is what actually runs.
func pipewireVersion(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return ""
	}
	return parsePipeWireVersion(out)
}

func parsePipeWireVersion(out []byte) string {
	var compiled, linked string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "Linked with libpipewire "); ok {
			linked = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(line, "Compiled with libpipewire "); ok {
			compiled = strings.TrimSpace(v)
		}
	}
	if linked != "" {
		return linked
	}
	return compiled
}
