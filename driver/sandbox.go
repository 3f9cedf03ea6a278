package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/hashicorp/nomad/helper/users/dynamic"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// A session runs in a sandbox that Nomad's libcontainer executor builds (the
// exec driver's isolation): its own mount, PID and IPC namespaces, the task
// dir as its root, cgroup limits from the task's resources. The driver
// declares no filesystem isolation to Nomad, so Nomad builds no chroot by
// copying chroot_env into every task dir; the node's system directories are
// bind-mounted read-only instead (plugin config sandbox_paths), which costs
// nothing per task.

// sandboxSelf is where the plugin binary appears inside a sandbox: the
// session supervisor is this binary, re-executed.
const sandboxSelf = "/.pixelstream/nomad-driver-pixelstream"

// Paths of Nomad's task directories inside the sandbox, whose root is the
// task dir (as under the exec driver).
const (
	sandboxAllocDir   = "/alloc"
	sandboxLocalDir   = "/local"
	sandboxSecretsDir = "/secrets"
	// sandboxPrivateDir is Nomad's private/ dir (a Vault token, for one):
	// it is in the task dir but never the task's to read.
	sandboxPrivateDir = "/private"
)

// supervisorCaps are the only capabilities the supervisor starts with (as
// root inside the sandbox): enough to read its root-only config, bind its
// root-only state socket and then become the task user. It drops them all
// before it starts anything.
var supervisorCaps = []string{"CAP_SETUID", "CAP_SETGID"}

// sandboxPlan is what the executor needs to build one session's sandbox.
type sandboxPlan struct {
	mounts []*drivers.MountConfig
	// executable is the app as the sandbox sees it.
	executable string
}

// planSandbox lists the sandbox's mounts: the system directories, the
// plugin binary, the session's runtime dir, the allocation's shared dir, the
// app's own directory when it lives outside the task dir, and what device
// plugins reserved (GPU device nodes' libraries). Other sessions' task dirs
// and runtime dirs are not in it, so they do not exist for the app.
func planSandbox(pc config.PluginConfig, cfg *drivers.TaskConfig, self, runtimeDir, executable, xvfb string, uid, gid int) (*sandboxPlan, error) {
	allocRoot := filepath.Dir(cfg.AllocDir)
	var mounts []*drivers.MountConfig
	var system []string
	var errs []error
	for i, p := range pc.SandboxPaths {
		p = filepath.Clean(p)
		if cfg.AllocDir != "" && config.PathOverlaps(p, allocRoot) {
			errs = append(errs, fmt.Errorf("plugin config sandbox_paths[%d]: %q overlaps Nomad's alloc dir %s, which holds other sessions' task dirs", i, p, allocRoot))
			continue
		}
		if _, err := os.Stat(p); err != nil {
			continue // /lib32 and friends exist on some nodes only
		}
		system = append(system, p)
		mounts = append(mounts, &drivers.MountConfig{HostPath: p, TaskPath: p, Readonly: true})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	visible := func(path string) bool {
		for _, s := range system {
			if within(path, s) {
				return true
			}
		}
		return false
	}
	if !visible(xvfb) {
		return nil, fmt.Errorf("xvfb_path: %s is outside the directories sessions see (plugin config sandbox_paths: %s); install Xvfb from the distribution or add its directory to sandbox_paths", xvfb, strings.Join(system, ", "))
	}
	mounts = append(mounts,
		&drivers.MountConfig{HostPath: self, TaskPath: sandboxSelf, Readonly: true},
		&drivers.MountConfig{HostPath: runtimeDir, TaskPath: runtimeDir},
	)
	if cfg.AllocDir != "" {
		mounts = append(mounts, &drivers.MountConfig{HostPath: filepath.Join(cfg.AllocDir, "alloc"), TaskPath: sandboxAllocDir})
	}
	if fi, err := os.Lstat(filepath.Join(cfg.TaskDir().Dir, "private")); err == nil && fi.IsDir() {
		mounts = append(mounts, &drivers.MountConfig{HostPath: filepath.Join(runtimeDir, emptyDirName), TaskPath: sandboxPrivateDir, Readonly: true})
	}

	if _, err := dynamic.Parse(cfg.User); err == nil && visible("/etc/passwd") {
		// A dynamic workload user is in no passwd file, and programs ask:
		// dbus-daemon refuses a peer whose groups it cannot look up, glib
		// and Mesa look for a home. The sandbox gets the node's passwd and
		// group files with the user added.
		passwd, group, err := writeUserFiles(runtimeDir, cfg.User, uid, gid)
		if err != nil {
			return nil, err
		}
		mounts = append(mounts,
			&drivers.MountConfig{HostPath: passwd, TaskPath: "/etc/passwd", Readonly: true},
			&drivers.MountConfig{HostPath: group, TaskPath: "/etc/group", Readonly: true})
	}

	plan := &sandboxPlan{executable: executable}
	taskDir := cfg.TaskDir().Dir
	switch {
	case executable == "":
	case within(executable, taskDir):
		rel, _ := filepath.Rel(taskDir, executable)
		plan.executable = "/" + rel
	case visible(executable):
	case cfg.AllocDir != "" && within(executable, allocRoot):
		return nil, fmt.Errorf("executable: %s is in another allocation's directory, which a session may not see; put the app into this task's dir with an artifact block, or under a directory listed in the plugin config's sandbox_paths", executable)
	default:
		// An app installed on the node outside the system directories (the
		// demo's stand-in, an Unreal build under /opt): its directory is
		// mounted read-only, or only the app itself where the directory
		// would show other sessions' files (Nomad's data dir or the runtime
		// dirs below it, as with the demo, whose state lives next to its
		// binaries).
		dir := filepath.Dir(executable)
		if dir == "/" || (cfg.AllocDir != "" && config.PathOverlaps(dir, allocRoot)) || config.PathOverlaps(dir, filepath.Dir(runtimeDir)) {
			mounts = append(mounts, &drivers.MountConfig{HostPath: executable, TaskPath: executable, Readonly: true})
			break
		}
		mounts = append(mounts, &drivers.MountConfig{HostPath: dir, TaskPath: dir, Readonly: true})
	}
	// Device plugins' mounts (NVIDIA's driver libraries, say) last, over
	// whatever the system directories hold at the same place.
	mounts = append(mounts, cfg.Mounts...)
	plan.mounts = mounts
	return plan, nil
}

// sandboxEnv is the task's environment as the sandbox sees it: Nomad set
// host paths for its directories (the driver declares no filesystem
// isolation), which do not exist inside.
func sandboxEnv(env map[string]string) []string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = v
	}
	out["NOMAD_ALLOC_DIR"] = sandboxAllocDir
	out["NOMAD_TASK_DIR"] = sandboxLocalDir
	out["NOMAD_SECRETS_DIR"] = sandboxSecretsDir
	list := make([]string, 0, len(out))
	for k, v := range out {
		list = append(list, k+"="+v)
	}
	sort.Strings(list)
	return list
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// writeUserFiles writes passwd and group files for the sandbox into the
// runtime dir (root's): the node's own, plus the dynamic user and its group,
// whose home is the task's local/home.
func writeUserFiles(runtimeDir, name string, uid, gid int) (passwd, group string, err error) {
	add := func(src, dst, line string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("sandbox %s: %w", src, err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			b = append(b, '\n')
		}
		b = append(b, line...)
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
		if err != nil {
			return fmt.Errorf("sandbox %s: %w", src, err)
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return fmt.Errorf("sandbox %s: %w", src, err)
		}
		return f.Close()
	}
	passwd, group = filepath.Join(runtimeDir, "passwd"), filepath.Join(runtimeDir, "group")
	if err := add("/etc/passwd", passwd, fmt.Sprintf("%s:x:%d:%d:Nomad dynamic workload user:%s/home:/usr/sbin/nologin\n", name, uid, gid, sandboxLocalDir)); err != nil {
		return "", "", err
	}
	if err := add("/etc/group", group, fmt.Sprintf("%s:x:%d:\n", name, gid)); err != nil {
		return "", "", err
	}
	return passwd, group, nil
}
