package gpu

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// icdSearchDirs returns the directories the Khronos loader searches for
// driver manifests on Linux, in order (LoaderDriverInterface.md, "Driver
// Discovery on Linux"): $XDG_CONFIG_DIRS (default /etc/xdg), /etc
// (SYSCONFDIR), $XDG_DATA_DIRS (default /usr/local/share:/usr/share), each
// with "/vulkan/icd.d" appended. The per-user $XDG_CONFIG_HOME and
// $XDG_DATA_HOME are left out: the task runs as another user than the plugin.
func icdSearchDirs(getenv func(string) string) []string {
	var dirs []string
	add := func(list, def string) {
		if list == "" {
			list = def
		}
		for _, d := range strings.Split(list, ":") {
			if d != "" {
				dirs = append(dirs, path.Join(d, "vulkan/icd.d"))
			}
		}
	}
	add(getenv("XDG_CONFIG_DIRS"), "/etc/xdg")
	dirs = append(dirs, "/etc/vulkan/icd.d")
	add(getenv("XDG_DATA_DIRS"), "/usr/local/share:/usr/share")
	return dirs
}

// glvndEGLVendorDirs are glvnd's default EGL vendor directories (libglvnd
// src/EGL/libeglvendor.c: sysconfdir then datadir), plus /usr/local/share
// for drivers installed outside the distribution.
var glvndEGLVendorDirs = []string{
	"/etc/glvnd/egl_vendor.d",
	"/usr/share/glvnd/egl_vendor.d",
	"/usr/local/share/glvnd/egl_vendor.d",
}

type icdManifest struct {
	FileFormatVersion string `json:"file_format_version"`
	ICD               struct {
		LibraryPath string `json:"library_path"`
		APIVersion  string `json:"api_version"`
	} `json:"ICD"`
}

// readICD parses one Vulkan driver manifest (node path p under root) and
// decides whether its library is loadable.
func readICD(root, p string, libs func(string) bool) (ICD, error) {
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		return ICD{}, fmt.Errorf("read %s: %w", p, err)
	}
	var m icdManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return ICD{}, fmt.Errorf("parse %s: %w", p, err)
	}
	lib := m.ICD.LibraryPath
	if lib == "" {
		return ICD{}, fmt.Errorf("parse %s: no ICD.library_path", p)
	}
	icd := ICD{Path: p, LibraryPath: lib}
	base := path.Base(lib)
	icd.NVIDIA = strings.HasPrefix(base, "libGLX_nvidia.so")
	icd.Software = strings.Contains(base, "lvp") || strings.Contains(strings.ToLower(base), "swiftshader") ||
		strings.HasPrefix(path.Base(p), "lvp_icd")
	switch {
	case strings.HasPrefix(lib, "/"):
		icd.Loadable = existsUnder(root, lib)
	case strings.Contains(lib, "/"):
		// Relative paths are relative to the manifest's directory.
		icd.Loadable = existsUnder(root, path.Join(path.Dir(p), lib))
	default:
		icd.Loadable = libs(lib)
	}
	return icd, nil
}

// findICDs lists the Vulkan driver manifests the loader would read. When
// VK_DRIVER_FILES (loader >= 1.3.207) or else VK_ICD_FILENAMES is set, only
// the files (or directories) it names count, as in the loader; otherwise the
// standard search directories are scanned. VK_ADD_DRIVER_FILES adds to either.
func findICDs(root string, getenv func(string) string, libs func(string) bool) ([]ICD, []string) {
	var files []string
	var warnings []string
	addPathList := func(list string) {
		for _, f := range strings.Split(list, ":") {
			if f == "" {
				continue
			}
			fi, err := os.Stat(filepath.Join(root, f))
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("Vulkan driver manifest %s: %v", f, err))
				continue
			}
			if fi.IsDir() {
				files = append(files, listJSON(root, f)...)
			} else {
				files = append(files, path.Clean(f))
			}
		}
	}
	if v := getenv("VK_DRIVER_FILES"); v != "" {
		addPathList(v)
	} else if v := getenv("VK_ICD_FILENAMES"); v != "" {
		addPathList(v)
	} else {
		for _, d := range icdSearchDirs(getenv) {
			files = append(files, listJSON(root, d)...)
		}
	}
	if v := getenv("VK_ADD_DRIVER_FILES"); v != "" {
		addPathList(v)
	}
	var icds []ICD
	for _, f := range files {
		icd, err := readICD(root, f, libs)
		if err != nil {
			warnings = append(warnings, err.Error())
			continue
		}
		icds = append(icds, icd)
	}
	return icds, warnings
}

// listJSON returns the *.json node paths in the node directory dir, sorted
// (the loader's own order within a directory is readdir order, i.e. none).
func listJSON(root, dir string) []string {
	entries, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// findEGLVendors returns the node paths of glvnd's EGL vendor manifests for
// NVIDIA (library libEGL_nvidia.so.0) and Mesa (libEGL_mesa.so.0).
func findEGLVendors(root string) (nvidia, mesa string) {
	for _, d := range glvndEGLVendorDirs {
		for _, f := range listJSON(root, d) {
			b, err := os.ReadFile(filepath.Join(root, f))
			if err != nil {
				continue
			}
			var m icdManifest // same {"ICD": {"library_path"}} shape
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			switch base := path.Base(m.ICD.LibraryPath); {
			case strings.HasPrefix(base, "libEGL_nvidia.so") && nvidia == "":
				nvidia = f
			case strings.HasPrefix(base, "libEGL_mesa.so") && mesa == "":
				mesa = f
			}
		}
	}
	return nvidia, mesa
}
