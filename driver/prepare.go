package driver

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"github.com/hashicorp/nomad/helper/users/dynamic"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/gpu"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
)

// prepared is what StartTask learned and made before starting anything.
type prepared struct {
	uid, gid   int
	groups     []int
	executable string
	xvfb       string
	runtimeDir string
	homeDir    string
	gpu        gpu.Assignment
	// playerListen and turnListen are where the session binds the job's
	// port labels; playerPublic and turnPublic what players are told.
	playerListen, turnListen string
	playerPublic, turnPublic string
	// relayIP is the address TURN relays bind to in a group network
	// namespace (the allocation's own address); "" in host mode.
	relayIP string
	// notices become task events once the task runs (GPU mapping warnings).
	notices []string
}

// prepare checks the task against this node (user, executable, Xvfb) and
// creates its private directories. It starts nothing, and leaves nothing
// behind when it fails.
func prepare(pc config.PluginConfig, cfg *drivers.TaskConfig, tc *config.TaskConfig, self string, node *nodeInfo) (*prepared, error) {
	var errs []error
	// Nomad interpolated the config; what it left as written may still name
	// a variable of the task env (a template's env file, NOMAD_META_*).
	tc.ResolveNetwork(cfg.Env)
	if err := tc.Validate(); err != nil {
		errs = append(errs, err)
	}
	if tc.Audio && !node.audio.Available {
		errs = append(errs, fmt.Errorf("audio: this node has no PipeWire stack (%s); install it, or set audio = false in the task config", node.audio.Hint))
	}
	player, err := portAddr(cfg, "http_port", tc.HTTPPort)
	if err != nil {
		errs = append(errs, err)
	}
	turnB, err := portAddr(cfg, "turn_port", tc.TURNPort)
	if err != nil {
		errs = append(errs, err)
	}
	turnPublic := advertisedTURN(turnB, tc)
	assignment, isolate, notices, err := mapGPU(pc, cfg, tc, node.gpu)
	if err != nil {
		errs = append(errs, err)
	}
	uid, gid, groups, userErr := taskUser(cfg.User, pc.AllowRoot)
	if userErr != nil {
		errs = append(errs, userErr)
	}
	xvfb, err := exec.LookPath(pc.XvfbPath)
	if err != nil {
		errs = append(errs, fmt.Errorf("xvfb_path: Xvfb not found at %q: install it (Debian/Ubuntu: apt-get install xvfb) or set xvfb_path in the plugin config", pc.XvfbPath))
	}
	var executable string
	if tc.Executable != "" {
		executable = tc.Executable
		stat := os.Stat
		if !filepath.IsAbs(executable) {
			// The task wrote the task dir: resolve inside it, so a symlink
			// cannot make root look at (and report on) the node's files.
			executable = filepath.Join(cfg.TaskDir().Dir, executable)
			stat = func(string) (os.FileInfo, error) { return statInTaskDir(cfg.TaskDir().Dir, tc.Executable) }
		}
		if userErr == nil {
			if err := checkExecutable("executable", executable, uid, gid, stat); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 && self != "" {
		// The executor re-executes this binary as the task user.
		if err := checkExecutable("plugin binary", self, uid, gid, os.Stat); err != nil {
			errs = append(errs, fmt.Errorf("%w (the session supervisor runs as the task user: make the plugin_dir and the binary readable and executable by it)", err))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid task: %w", errors.Join(errs...))
	}

	if isolate != nil {
		if err := isolate(); err != nil {
			return nil, err
		}
	}
	rt, err := makeRuntimeDir(pc.RuntimeDir, cfg.AllocID, cfg.Name, uid, gid)
	if err != nil {
		return nil, err
	}
	home, err := makeTaskDirs(cfg.TaskDir().Dir, uid, gid)
	if err != nil {
		_ = os.RemoveAll(rt)
		return nil, err
	}
	return &prepared{uid: uid, gid: gid, groups: groups, executable: executable, xvfb: xvfb, runtimeDir: rt, homeDir: home,
		gpu: assignment, notices: notices, playerListen: player.listen, turnListen: turnB.listen,
		playerPublic: player.public, turnPublic: turnPublic, relayIP: relayIP(cfg, tc.TURNPort, turnB)}, nil
}

// makeTaskDirs creates what the session needs in the task dir: the app's
// home (local/home, owned by the task user) and the X socket dir (tmp/.X11-unix,
// root's, sticky, as X expects). The task dir is the task's to write, and a
// restarted task may have left symlinks where these go: every step resolves
// inside the task dir (os.Root), and ownership changes go through the opened
// directory, never through a path. It returns the home dir's host path.
func makeTaskDirs(taskDir string, uid, gid int) (string, error) {
	root, err := os.OpenRoot(taskDir)
	if err != nil {
		return "", fmt.Errorf("open task dir: %w", err)
	}
	defer root.Close()
	if err := ownedDir(root, "local/home", 0o700, uid, gid); err != nil {
		return "", fmt.Errorf("create home dir: %w", err)
	}
	if err := ownedDir(root, "tmp/.X11-unix", 0o777|os.ModeSticky, 0, 0); err != nil {
		return "", fmt.Errorf("create X socket dir: %w", err)
	}
	return filepath.Join(taskDir, "local", "home"), nil
}

// ownedDir makes name (inside root) a directory owned by uid:gid with mode
// perm. Whatever is there and is not a directory (a symlink, a file) is
// refused with an error, never followed or changed.
func ownedDir(root *os.Root, name string, perm os.FileMode, uid, gid int) error {
	notDir := fmt.Errorf("%s is not a directory (a symlink or file left by the task); refusing to use it", name)
	if fi, err := root.Lstat(name); err == nil && !fi.IsDir() {
		return notDir
	}
	if err := root.MkdirAll(name, perm.Perm()); err != nil {
		return err
	}
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
			return notDir
		}
		return err
	}
	defer f.Close()
	if err := f.Chown(uid, gid); err != nil {
		return err
	}
	return f.Chmod(perm)
}

// taskUser resolves the task's user: a dynamic workload user (nomad-<id>,
// which Nomad assigns a task with no user and which no passwd file knows)
// or a named account, with its supplementary groups (render, video: GPU
// device nodes). An empty name means the agent's own user.
func taskUser(name string, allowRoot bool) (uid, gid int, groups []int, err error) {
	if _, perr := dynamic.Parse(name); perr == nil {
		uid, gid, _, err = dynamic.LookupUser(name)
		if err != nil {
			return -1, -1, nil, fmt.Errorf("user: %q: %v", name, err)
		}
		return uid, gid, nil, nil
	}
	var u *user.User
	if name == "" {
		u, err = user.Current()
	} else {
		u, err = user.Lookup(name)
	}
	if err != nil {
		return -1, -1, nil, fmt.Errorf("user: %q is not a user on this node: %v", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if uid == 0 && !allowRoot {
		shown := name
		if shown == "" {
			shown = "(unset, so the agent's user root)"
		}
		return -1, -1, nil, fmt.Errorf("user: the task would run as root %s; leave the task's user unset (Nomad gives every session a uid of its own) or name a non-root account: Unreal refuses to run as root and a root session would own the node's display and audio. An operator can allow it with allow_root = true in the plugin config", shown)
	}
	ids, _ := u.GroupIds()
	for _, id := range ids {
		if g, err := strconv.Atoi(id); err == nil && g != gid {
			groups = append(groups, g)
		}
	}
	return uid, gid, groups, nil
}

// checkExecutable reports whether path is a regular file uid:gid may execute.
func checkExecutable(field, path string, uid, gid int, stat func(string) (os.FileInfo, error)) error {
	fi, err := stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %s does not exist; give a path relative to the task dir (where artifacts land, e.g. \"local/MyGame/MyGame.sh\") or an absolute path", field, path)
		}
		return fmt.Errorf("%s: %v", field, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %s is not a regular file", field, path)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	mode := fi.Mode().Perm()
	var ok bool
	switch {
	case uid == 0:
		ok = mode&0o111 != 0
	case st != nil && int(st.Uid) == uid:
		ok = mode&0o100 != 0
	case st != nil && inGroup(uid, gid, int(st.Gid)):
		ok = mode&0o010 != 0
	default:
		ok = mode&0o001 != 0
	}
	if !ok {
		return fmt.Errorf("%s: %s (mode %s) is not executable by the task user (uid %d); chmod +x it, or set artifact/template modes", field, path, mode, uid)
	}
	return nil
}

// statInTaskDir stats rel inside taskDir, following symlinks only as long
// as they stay inside it.
func statInTaskDir(taskDir, rel string) (os.FileInfo, error) {
	root, err := os.OpenRoot(taskDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.Stat(rel)
}

func inGroup(uid, primary, gid int) bool {
	if primary == gid {
		return true
	}
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return false
	}
	ids, _ := u.GroupIds()
	for _, id := range ids {
		if id == strconv.Itoa(gid) {
			return true
		}
	}
	return false
}

// makeRuntimeDir creates the task's runtime dir under base: short (unix
// socket paths), root's (the session's config with its secrets, the state
// socket and the result live there, where the app cannot replace them),
// with an empty dir the sandbox masks Nomad's private dir with and the task
// user's own dir (X cookie, audio sockets). A leftover from an earlier run of
// the same task is replaced. Nothing in base is the task's, so no path here
// can be a symlink a task planted; the user dir is changed through its
// descriptor all the same.
func makeRuntimeDir(base, allocID, task string, uid, gid int) (string, error) {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("runtime_dir: create %s: %w", base, err)
	}
	dir := filepath.Join(base, runtimeDirName(allocID, task))
	_ = os.RemoveAll(dir)
	if err := os.Mkdir(dir, 0o711); err != nil {
		return "", fmt.Errorf("runtime_dir: create %s: %w", dir, err)
	}
	fail := func(err error) (string, error) {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("runtime_dir: %w", err)
	}
	// Mkdir applies the umask; the mode is the point here.
	if err := os.Chmod(dir, 0o711); err != nil {
		return fail(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fail(err)
	}
	defer root.Close()
	if err := root.Mkdir(emptyDirName, 0o500); err != nil {
		return fail(err)
	}
	if err := root.Mkdir(sessionapi.UserDir, 0o700); err != nil {
		return fail(err)
	}
	if err := ownedDir(root, sessionapi.UserDir, 0o700, uid, gid); err != nil {
		return fail(err)
	}
	return dir, nil
}

// emptyDirName is a root-owned empty dir in the runtime dir, mounted over
// the parts of the task dir the app must not see.
const emptyDirName = "empty"

// runtimeDirName is 8 characters of the alloc id and a hash of the task
// name: unique per task on a node, 17 bytes long whatever the names are.
func runtimeDirName(allocID, task string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(allocID + "/" + task))
	short := allocID
	if len(short) > 8 {
		short = short[:8]
	}
	return fmt.Sprintf("%s-%08x", short, h.Sum32())
}

// mapGPU turns the GPUs Nomad assigned (NVIDIA_VISIBLE_DEVICES, set by the
// nvidia device plugin) into the app's GPU environment and -graphicsadapter,
// and says how to keep the session off the other GPUs. A task that does not
// render and has no GPU assigned gets nothing.
func mapGPU(pc config.PluginConfig, cfg *drivers.TaskConfig, tc *config.TaskConfig, info gpu.Info) (gpu.Assignment, func() error, []string, error) {
	visible := cfg.Env["NVIDIA_VISIBLE_DEVICES"]
	if tc.Render == config.RenderNone && visible == "" {
		return gpu.Assignment{}, nil, nil, nil
	}
	var errs []error
	if tc.Render != config.RenderNone {
		if err := gpu.CheckRender(info, tc.Render); err != nil {
			errs = append(errs, err)
		}
	}
	adapter, err := gpu.ParseAdapter(tc.GPU.Adapter)
	if err != nil {
		errs = append(errs, err)
	}
	policy, err := gpu.ParseNoGPUPolicy("no_gpu", pc.NoGPU)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return gpu.Assignment{}, nil, nil, errors.Join(errs...)
	}
	cgroup := ""
	if cfg.Resources != nil && cfg.Resources.LinuxResources != nil {
		cgroup = cfg.Resources.LinuxResources.CpusetCgroupPath
	}
	// Device isolation is enforced where the task has its own unified cgroup
	// (cgroups v2); on v1 Nomad gives process drivers no devices cgroup.
	isolated := pc.GPUIsolation && cgroupslib.GetMode() == cgroupslib.CG2 && cgroup != ""
	a, err := gpu.Map(info, visible, gpu.MapOptions{Adapter: adapter, NoGPU: policy, Isolated: isolated})
	if err != nil {
		return gpu.Assignment{}, nil, nil, fmt.Errorf("gpu: %w", err)
	}
	notices := append([]string(nil), a.Warnings...)
	if len(a.GPUs) == 0 {
		return a, nil, notices, nil
	}
	if !isolated {
		if pc.GPUIsolation {
			notices = append(notices, "GPU isolation is not enforced on this node (cgroups v1): the session could open other GPUs' device nodes")
		}
		return a, nil, notices, nil
	}
	isolate := func() error {
		deny, err := gpu.DevicesToDeny(info, a)
		if err != nil {
			return fmt.Errorf("gpu isolation: %w", err)
		}
		if err := gpu.Isolate(cgroup, deny); err != nil {
			return fmt.Errorf("gpu isolation: %w (set gpu_isolation = false in the plugin config to run without it)", err)
		}
		return nil
	}
	return a, isolate, notices, nil
}

// binding is where the session binds a port label and what players are told.
type binding struct {
	// listen is the bind address: the host address and port in host mode;
	// 0.0.0.0 and the label's `to` (or, without one, the host port) inside a
	// group network namespace (bridge, CNI), where Nomad forwards the host
	// port to it.
	listen string
	// public is host:port of the host side of the mapping.
	public string
	bridge bool
}

// portAddr resolves a task config port label to where the session binds it
// and the host side Nomad reserved for it.
func portAddr(cfg *drivers.TaskConfig, field, label string) (binding, error) {
	if label == "" {
		return binding{}, nil
	}
	if cfg.Resources != nil && cfg.Resources.Ports != nil {
		if p, ok := cfg.Resources.Ports.Get(label); ok {
			host := p.HostIP
			if host == "" {
				host = "0.0.0.0"
			}
			b := binding{listen: net.JoinHostPort(host, strconv.Itoa(p.Value)), public: net.JoinHostPort(host, strconv.Itoa(p.Value))}
			if groupNetwork(cfg) {
				to := p.To
				if to <= 0 { // unset, or -1: the same number as the host port
					to = p.Value
				}
				b.listen, b.bridge = net.JoinHostPort("0.0.0.0", strconv.Itoa(to)), true
			}
			return b, nil
		}
	}
	return binding{}, fmt.Errorf("%s: no port labelled %q in the group's network block; add network { port %q {} } to the group", field, label, label)
}

// groupNetwork reports whether the task runs in the allocation's own network
// namespace (network mode "bridge" or "cni/..."), not the host's.
func groupNetwork(cfg *drivers.TaskConfig) bool {
	ni := cfg.NetworkIsolation
	return ni != nil && ni.Mode == drivers.NetIsolationModeGroup && ni.Path != ""
}

// advertisedTURN is the TURN host:port players are told: turn.public_address
// or the host address, turn.public_port or the host port.
func advertisedTURN(b binding, tc *config.TaskConfig) string {
	if b.public == "" {
		return ""
	}
	host, port, _ := net.SplitHostPort(b.public)
	if tc.TURN.PublicAddress != "" {
		host = tc.TURN.PublicAddress
	}
	if n := tc.PublicPortNumber(); n > 0 {
		port = strconv.Itoa(n)
	}
	return net.JoinHostPort(host, port)
}

// relayIP is the address TURN relays bind to and advertise inside a group
// network namespace: the allocation's own address, which the streamer and
// the relays of the same session reach each other at (the host address is
// not local there). "" in host mode and when Nomad did not say, in which
// case the session finds it from its interfaces.
func relayIP(cfg *drivers.TaskConfig, label string, b binding) string {
	if !b.bridge {
		return ""
	}
	return cfg.Env["NOMAD_ALLOC_IP_"+label]
}
