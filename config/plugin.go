// Package config holds the driver's two configurations: the plugin block in
// the Nomad agent's configuration and the task's `config` block in a job. It
// defines their HCL schemas, defaults and validation; both the driver and the
// session supervisor import it, so it depends on nothing else of the project.
package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/plugins/shared/hclspec"
)

// PluginName is the driver's name in job specs (`driver = "pixelstream"`).
const PluginName = "pixelstream"

// DefaultRuntimeDir keeps unix socket paths short: Nomad's alloc dirs are long
// enough that sockets inside them can exceed the 108-byte sun_path limit.
const DefaultRuntimeDir = "/run/pixelstream"

// maxRuntimeDirLen leaves room under the 108-byte sun_path limit for the
// per-task directory (18 bytes) and the deepest socket a session creates
// (audio's "xdg/pulse/native" and similar, about 30 bytes).
const maxRuntimeDirLen = 56

// PluginConfig is the agent's `plugin "nomad-driver-pixelstream" { config {...} }` block.
type PluginConfig struct {
	// XvfbPath is the Xvfb binary; a bare name is looked up on PATH.
	XvfbPath string `codec:"xvfb_path"`
	// AllowRoot lets tasks run as root. Unreal refuses to run as root and a
	// root session would own the node's display and audio stack, so it is off.
	AllowRoot bool `codec:"allow_root"`
	// RuntimeDir is where per-task runtime files live (sockets, X authority,
	// audio runtime dirs). It must be short; see maxRuntimeDirLen.
	RuntimeDir string `codec:"runtime_dir"`
	// NoGPU decides what a task gets on a GPU node when Nomad assigned it no
	// GPU: "refuse" (fail, so an expensive node is not used for software
	// rendering by mistake) or "software" (Mesa's software renderers).
	NoGPU string `codec:"no_gpu"`
	// GPUIsolation keeps a session from opening the device nodes of GPUs
	// Nomad did not assign to it (device cgroup; enforced on cgroups v2).
	GPUIsolation bool `codec:"gpu_isolation"`
	// SandboxPaths are the node's directories a session sees, read-only,
	// inside its sandbox (the task dir is its root): what the app, Xvfb and
	// PipeWire load programs and libraries from. Paths that do not exist on
	// the node are skipped. Nothing of Nomad's data dir may be among them.
	SandboxPaths []string `codec:"sandbox_paths"`
}

// DefaultSandboxPaths are the system directories mounted read-only into
// every session: the programs and libraries Xvfb, PipeWire and an Unreal
// build load, and /etc for fonts, ICD files and name resolution. They are
// Nomad's default chroot_env for the exec driver, bind-mounted instead of
// copied.
var DefaultSandboxPaths = []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc", "/run/resolvconf"}

// PluginSpec is the HCL schema of PluginConfig.
var PluginSpec = hclspec.NewObject(map[string]*hclspec.Spec{
	"xvfb_path": hclspec.NewDefault(
		hclspec.NewAttr("xvfb_path", "string", false),
		hclspec.NewLiteral(`"Xvfb"`),
	),
	"allow_root": hclspec.NewDefault(
		hclspec.NewAttr("allow_root", "bool", false),
		hclspec.NewLiteral(`false`),
	),
	"runtime_dir": hclspec.NewDefault(
		hclspec.NewAttr("runtime_dir", "string", false),
		hclspec.NewLiteral(`"`+DefaultRuntimeDir+`"`),
	),
	"no_gpu": hclspec.NewDefault(
		hclspec.NewAttr("no_gpu", "string", false),
		hclspec.NewLiteral(`"refuse"`),
	),
	"gpu_isolation": hclspec.NewDefault(
		hclspec.NewAttr("gpu_isolation", "bool", false),
		hclspec.NewLiteral(`true`),
	),
	"sandbox_paths": hclspec.NewDefault(
		hclspec.NewAttr("sandbox_paths", "list(string)", false),
		hclspec.NewLiteral(hclList(DefaultSandboxPaths)),
	),
})

// DefaultPluginConfig is what the plugin runs with before SetConfig arrives.
func DefaultPluginConfig() PluginConfig {
	return PluginConfig{XvfbPath: "Xvfb", RuntimeDir: DefaultRuntimeDir, NoGPU: "refuse", GPUIsolation: true,
		SandboxPaths: append([]string(nil), DefaultSandboxPaths...)}
}

// Validate checks the plugin configuration and names the field at fault.
func (c *PluginConfig) Validate() error {
	var errs []error
	if c.XvfbPath == "" {
		errs = append(errs, errors.New(`plugin config xvfb_path: must not be empty; use "Xvfb" to look it up on PATH or an absolute path`))
	}
	switch {
	case c.RuntimeDir == "":
		errs = append(errs, fmt.Errorf("plugin config runtime_dir: must not be empty; the default is %q", DefaultRuntimeDir))
	case !filepath.IsAbs(c.RuntimeDir):
		errs = append(errs, fmt.Errorf("plugin config runtime_dir: %q must be an absolute path such as %q", c.RuntimeDir, DefaultRuntimeDir))
	case len(c.RuntimeDir) > maxRuntimeDirLen:
		errs = append(errs, fmt.Errorf("plugin config runtime_dir: %q is %d bytes; keep it at most %d so unix socket paths under it stay below the 108-byte limit",
			c.RuntimeDir, len(c.RuntimeDir), maxRuntimeDirLen))
	}
	for i, p := range c.SandboxPaths {
		switch {
		case !filepath.IsAbs(p):
			errs = append(errs, fmt.Errorf("plugin config sandbox_paths[%d]: %q must be an absolute path such as \"/usr\"", i, p))
		case filepath.Clean(p) == "/":
			errs = append(errs, fmt.Errorf("plugin config sandbox_paths[%d]: \"/\" would show every session the whole node (other sessions' task dirs among it); list the directories the app needs, such as \"/usr\" and \"/opt/unreal\"", i))
		case c.RuntimeDir != "" && PathOverlaps(p, c.RuntimeDir):
			errs = append(errs, fmt.Errorf("plugin config sandbox_paths[%d]: %q overlaps runtime_dir %q, which holds every session's sockets and X cookies", i, p, c.RuntimeDir))
		}
	}
	switch c.NoGPU {
	case "refuse", "software":
	default:
		errs = append(errs, fmt.Errorf(`plugin config no_gpu: %q must be "refuse" (tasks without a GPU fail on GPU nodes) or "software" (they render in software)`, c.NoGPU))
	}
	return errors.Join(errs...)
}

// PathOverlaps reports whether one of two clean absolute paths contains the
// other (or they are the same).
func PathOverlaps(a, b string) bool {
	a, b = filepath.Clean(a), filepath.Clean(b)
	within := func(p, dir string) bool {
		rel, err := filepath.Rel(dir, p)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
	}
	return within(a, b) || within(b, a)
}

// hclList writes a list of strings as an HCL literal.
func hclList(items []string) string {
	quoted := make([]string, len(items))
	for i, it := range items {
		quoted[i] = strconv.Quote(it)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}
