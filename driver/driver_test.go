package driver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/client/lib/cgroupslib"
	"github.com/hashicorp/nomad/client/lib/numalib"
	"github.com/hashicorp/nomad/helper/testlog"
	"github.com/hashicorp/nomad/helper/uuid"
	nstructs "github.com/hashicorp/nomad/nomad/structs"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	dtestutil "github.com/hashicorp/nomad/plugins/drivers/testutils"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

const testUser = "pixelstream"

var topology = numalib.Scan(numalib.PlatformScanners(false))

type harness struct {
	*dtestutil.DriverHarness
	d  *Driver
	pc config.PluginConfig
}

func newHarness(t *testing.T, mutate func(*config.PluginConfig)) *harness {
	t.Helper()
	if _, err := user.Lookup(testUser); err != nil {
		t.Fatalf("the tests run tasks as user %q; create it: useradd --system --create-home %s", testUser, testUser)
	}
	d := NewPlugin(testlog.HCLogger(t))
	d.selfPath = sessionBinary
	pc := config.DefaultPluginConfig()
	pc.RuntimeDir = filepath.Join(sharedDir, "rt")
	if mutate != nil {
		mutate(&pc)
	}
	h := dtestutil.NewDriverHarness(t, d)
	var data []byte
	if err := base.MsgPackEncode(&data, &pc); err != nil {
		t.Fatal(err)
	}
	if err := h.SetConfig(&base.Config{PluginConfig: data,
		AgentConfig: &base.AgentConfig{Driver: &base.ClientDriverConfig{Topology: topology}}}); err != nil {
		t.Fatalf("SetConfig: %v", err)
	}
	t.Cleanup(func() { d.cancel() })
	return &harness{DriverHarness: h, d: d, pc: pc}
}

// newTask makes a task running the probe app with the given config; args are
// passed to the probe.
func newTask(t *testing.T, h *harness, tc config.TaskConfig) *drivers.TaskConfig {
	t.Helper()
	allocID := uuid.Generate()
	task := &drivers.TaskConfig{
		ID: uuid.Generate(), AllocID: allocID, Name: "game", User: testUser,
		Resources: &drivers.Resources{
			NomadResources: &nstructs.AllocatedTaskResources{
				Memory: nstructs.AllocatedMemoryResources{MemoryMB: 256},
				Cpu:    nstructs.AllocatedCpuResources{CpuShares: 250},
			},
			LinuxResources: &drivers.LinuxResources{MemoryLimitBytes: 256 << 20, CPUShares: 250,
				CpusetCgroupPath: cgroupslib.LinuxResourcesPath(allocID, "game", false)},
		},
	}
	cleanup := h.MkAllocDir(task, true)
	t.Cleanup(cleanup)
	// The client's task runner creates the task's cgroups before the driver
	// starts it (and kills and removes them after); the harness does not.
	cg := cgroupslib.Factory(allocID, "game", false)
	if err := cg.Setup(); err != nil {
		t.Fatalf("create task cgroups: %v", err)
	}
	t.Cleanup(func() { _ = cg.Kill(); _ = cg.Teardown() })
	// MkAllocDir's temp root is 0700; the task user must reach its task dir,
	// as it can under a real agent's data dir.
	for dir := task.TaskDir().Dir; dir != "/" && dir != os.TempDir(); dir = filepath.Dir(dir) {
		_ = os.Chmod(dir, 0o755)
	}
	if tc.Executable == "" {
		if err := copyFile(probeBinary, filepath.Join(task.TaskDir().LocalDir, "probe"), 0o755); err != nil {
			t.Fatal(err)
		}
		tc.Executable = "local/probe"
	}
	defaults := config.TaskConfig{Resolution: "1280x720", Depth: 24, Render: config.RenderNone,
		RenderOffscreen: true, StreamerID: config.DefaultStreamerID, UnrealFlags: true}
	if tc.Resolution == "" {
		tc.Resolution = defaults.Resolution
	}
	if tc.Depth == 0 {
		tc.Depth = defaults.Depth
	}
	if tc.Render == "" {
		tc.Render = defaults.Render
	}
	if tc.StreamerID == "" {
		tc.StreamerID = defaults.StreamerID
	}
	if tc.Frontend == "" {
		tc.Frontend = config.FrontendUE57
	}
	if err := task.EncodeConcreteDriverConfig(&tc); err != nil {
		t.Fatal(err)
	}
	return task
}

// startTask starts the task and registers its stop and destroy.
func startTask(t *testing.T, h *harness, task *drivers.TaskConfig) *drivers.TaskHandle {
	t.Helper()
	handle, _, err := h.StartTask(task)
	if err != nil {
		t.Fatalf("StartTask: %v", err)
	}
	t.Cleanup(func() {
		_ = h.StopTask(task.ID, time.Second, "SIGKILL")
		_ = h.DestroyTask(task.ID, true)
	})
	return handle
}

// waitLog waits until the task's log stream matches re and returns the match.
func waitLog(t *testing.T, task *drivers.TaskConfig, stream string, re *regexp.Regexp) []string {
	t.Helper()
	path := filepath.Join(task.TaskDir().LogDir, fmt.Sprintf("%s.%s.0", task.Name, stream))
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if m := re.FindStringSubmatch(string(b)); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never matched %q; it holds:\n%s", path, re, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitExit(t *testing.T, h *harness, taskID string) *drivers.ExitResult {
	t.Helper()
	ch, err := h.WaitTask(context.Background(), taskID)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("task did not exit")
		return nil
	}
}

func inspect(t *testing.T, h *harness, taskID string) map[string]string {
	t.Helper()
	st, err := h.InspectTask(taskID)
	if err != nil {
		t.Fatal(err)
	}
	return st.DriverAttributes
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	// A zombie is dead for our purposes.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

func TestStartRunsAppOnDisplayAsUser(t *testing.T) {
	cases := []struct {
		name     string
		tc       config.TaskConfig
		exitCode int
		size     string
		wantArgs []string
		noArgs   []string
	}{
		{"unreal flags", config.TaskConfig{Args: []string{"--probe-exit=0", "-AudioMixer"}, Resolution: "1280x720", UnrealFlags: true, RenderOffscreen: true, Render: config.RenderVulkan},
			0, "1280x720", []string{"-AudioMixer", "-RenderOffScreen", "-Vulkan", "-ResX=1280", "-ResY=720", "-ForceRes", "-PixelStreamingURL=ws://127.0.0.1:", "-PixelStreamingID=DefaultStreamer"}, nil},
		{"plain app exit 3", config.TaskConfig{Args: []string{"--probe-exit=3"}, Resolution: "800x600", UnrealFlags: false},
			3, "800x600", []string{"--probe-exit=3"}, []string{"-ResX", "-PixelStreamingURL"}},
	}
	u, _ := user.Lookup(testUser)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			task := newTask(t, h, c.tc)
			startTask(t, h, task)
			res := waitExit(t, h, task.ID)
			if res.ExitCode != c.exitCode || res.Err != nil {
				t.Fatalf("exit = %+v, want code %d", res, c.exitCode)
			}
			m := waitLog(t, task, "stdout", regexp.MustCompile(`display (:\d+) size=(\d+x\d+) depth=24`))
			if m[2] != c.size {
				t.Errorf("display size %s, want %s", m[2], c.size)
			}
			args := waitLog(t, task, "stdout", regexp.MustCompile(`args=(.*)`))[1]
			for _, a := range c.wantArgs {
				if !strings.Contains(args, a) {
					t.Errorf("app args %q lack %q", args, a)
				}
			}
			for _, a := range c.noArgs {
				if strings.Contains(args, a) {
					t.Errorf("app args %q contain %q", args, a)
				}
			}
			uid := waitLog(t, task, "stdout", regexp.MustCompile(`uid=(\d+)`))[1]
			if uid != u.Uid {
				t.Errorf("app ran as uid %s, want %s (%s)", uid, u.Uid, testUser)
			}
			// The sandbox's root is the task dir: the home it sees as
			// /local/home is the task dir's local/home, the user's own.
			home := waitLog(t, task, "stdout", regexp.MustCompile(`env HOME=(.*)`))[1]
			if home != "/local/home" {
				t.Errorf("HOME=%s, want /local/home (the task dir's local/home as the sandbox sees it)", home)
			}
			if fi, err := os.Stat(filepath.Join(task.TaskDir().LocalDir, "home")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(mustAtoi(t, u.Uid)) {
				t.Errorf("local/home is not the task user's: %v", err)
			}
			// The supervisor's own lines are on stderr, marked as its own.
			waitLog(t, task, "stderr", regexp.MustCompile(`pixelstream: app started`))
		})
	}
}

func TestStopHonoursKillSignalThenKills(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		signal     string
		wantSignal int
		wantCode   int
	}{
		{"app exits on kill_signal", []string{"--probe-tick=1h"}, "SIGINT", 0, 0},
		{"app ignores kill_signal", []string{"--probe-ignore=SIGTERM"}, "SIGTERM", int(syscall.SIGKILL), 128 + 9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			task := newTask(t, h, config.TaskConfig{Args: c.args})
			startTask(t, h, task)
			waitLog(t, task, "stdout", regexp.MustCompile(`display :\d+`))
			attrs := inspect(t, h, task.ID)
			appPid, _ := strconv.Atoi(attrs["app_pid"])
			xvfbPid, _ := strconv.Atoi(strings.TrimPrefix(strings.Fields(attrs["component.xvfb"])[1], "pid="))
			disp := attrs["display"]

			start := time.Now()
			if err := h.StopTask(task.ID, 2*time.Second, c.signal); err != nil {
				t.Fatalf("StopTask: %v", err)
			}
			res := waitExit(t, h, task.ID)
			waitLog(t, task, "stdout", regexp.MustCompile(`signal `+c.signal))
			if res.Signal != c.wantSignal || (c.wantSignal == 0 && res.ExitCode != c.wantCode) {
				t.Fatalf("exit = %+v, want signal %d code %d", res, c.wantSignal, c.wantCode)
			}
			if c.wantSignal == int(syscall.SIGKILL) && time.Since(start) < 2*time.Second {
				t.Errorf("app killed after %s, before its kill_timeout of 2s", time.Since(start))
			}
			if err := h.DestroyTask(task.ID, false); err != nil {
				t.Fatal(err)
			}
			for name, pid := range map[string]int{"app": appPid, "Xvfb": xvfbPid} {
				if pidAlive(pid) {
					t.Errorf("%s (pid %d) still running after stop", name, pid)
				}
			}
			n := strings.TrimPrefix(disp, ":")
			// The display lived in the sandbox's /tmp: the task dir's tmp.
			tmp := filepath.Join(task.TaskDir().Dir, "tmp")
			for _, p := range []string{filepath.Join(tmp, ".X11-unix", "X"+n), filepath.Join(tmp, ".X"+n+"-lock"), attrs["runtime_dir"]} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s left behind", p)
				}
			}
		})
	}
}

func TestSignalReachesApp(t *testing.T) {
	h := newHarness(t, nil)
	task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h"}})
	startTask(t, h, task)
	waitLog(t, task, "stdout", regexp.MustCompile(`display :\d+`))
	for _, sig := range []string{"SIGHUP", "SIGUSR1"} {
		if err := h.SignalTask(task.ID, sig); err != nil {
			t.Fatalf("SignalTask(%s): %v", sig, err)
		}
		waitLog(t, task, "stdout", regexp.MustCompile(`probe: signal `+sig))
	}
	err := h.SignalTask(task.ID, "SIGNOPE")
	if err == nil || !strings.Contains(err.Error(), "SIGNOPE") {
		t.Fatalf("unknown signal: err = %v, want one naming SIGNOPE", err)
	}
	if !inspectRunning(t, h, task.ID) {
		t.Fatal("task stopped after signals it should survive")
	}
}

func inspectRunning(t *testing.T, h *harness, id string) bool {
	st, err := h.InspectTask(id)
	return err == nil && st.State == drivers.TaskStateRunning
}

func TestExecSeesDisplay(t *testing.T) {
	h := newHarness(t, nil)
	task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h"}})
	startTask(t, h, task)
	disp := waitLog(t, task, "stdout", regexp.MustCompile(`display (:\d+)`))[1]
	u, _ := user.Lookup(testUser)

	res, err := h.ExecTask(task.ID, []string{"sh", "-c", `echo "display=$DISPLAY uid=$(id -u) task=$NOMAD_TASK_NAME"`}, 10*time.Second)
	if err != nil {
		t.Fatalf("ExecTask: %v", err)
	}
	want := fmt.Sprintf("display=%s uid=%s task=game", disp, u.Uid)
	if got := strings.TrimSpace(string(res.Stdout)); got != want || res.ExitResult.ExitCode != 0 {
		t.Fatalf("exec printed %q (exit %d), want %q", got, res.ExitResult.ExitCode, want)
	}
	// The display is really usable from an exec'd command: run the probe there.
	// Inside the sandbox the task dir is the root: local/ is /local.
	res, err = h.ExecTask(task.ID, []string{"/local/probe", "--probe-exit=0"}, 10*time.Second)
	if err != nil || !strings.Contains(string(res.Stdout), "size=1280x720") {
		t.Fatalf("probe in exec: %v\n%s", err, res.Stdout)
	}
	res, err = h.ExecTask(task.ID, []string{"sh", "-c", "exit 7"}, 10*time.Second)
	if err != nil || res.ExitResult.ExitCode != 7 {
		t.Fatalf("exit code of exec: %v %+v", err, res.ExitResult)
	}
}

func TestStatsCoverSession(t *testing.T) {
	h := newHarness(t, nil)
	task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h"}})
	startTask(t, h, task)
	waitLog(t, task, "stdout", regexp.MustCompile(`display :\d+`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := h.TaskStats(ctx, task.ID, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	attrs := inspect(t, h, task.ID)
	for {
		select {
		case u := <-ch:
			if u == nil || u.ResourceUsage == nil || u.ResourceUsage.MemoryStats == nil {
				continue
			}
			if u.ResourceUsage.MemoryStats.RSS == 0 {
				continue
			}
			// The tree includes the supervisor, Xvfb and the app.
			xvfb := strings.TrimPrefix(strings.Fields(attrs["component.xvfb"])[1], "pid=")
			for name, pid := range map[string]string{"app": attrs["app_pid"], "supervisor": attrs["supervisor_pid"], "Xvfb": xvfb} {
				if _, ok := u.Pids[pid]; !ok {
					t.Errorf("stats cover pids %v, not the %s (%s)", keys(u.Pids), name, pid)
				}
			}
			return
		case <-ctx.Done():
			t.Fatal("no stats with memory usage")
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRecoverReattachesWithoutRestart(t *testing.T) {
	h1 := newHarness(t, nil)
	task := newTask(t, h1, config.TaskConfig{Args: []string{"--probe-tick=100ms"}})
	handle := startTask(t, h1, task)
	waitLog(t, task, "stdout", regexp.MustCompile(`probe: tick 1\n`))
	before := inspect(t, h1, task.ID)

	// A new plugin process knows nothing of the task until Nomad recovers it.
	h1.d.tasks.Delete(task.ID)
	h2 := newHarness(t, nil)
	if err := h2.RecoverTask(handle); err != nil {
		t.Fatalf("RecoverTask: %v", err)
	}
	if err := h2.RecoverTask(handle); err != nil {
		t.Fatalf("second RecoverTask must be a no-op: %v", err)
	}
	after := inspect(t, h2, task.ID)
	if after["app_pid"] != before["app_pid"] || after["app_pid"] == "" {
		t.Fatalf("app pid %q after recovery, was %q", after["app_pid"], before["app_pid"])
	}
	// Logs keep flowing from the same app.
	n := waitLog(t, task, "stdout", regexp.MustCompile(`probe: tick (\d+)\n`))[1]
	next, _ := strconv.Atoi(n)
	waitLog(t, task, "stdout", regexp.MustCompile(fmt.Sprintf(`probe: tick %d\n`, next+3)))

	if err := h2.StopTask(task.ID, 5*time.Second, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	if res := waitExit(t, h2, task.ID); res.ExitCode != 0 {
		t.Fatalf("exit after recovery: %+v", res)
	}
	_ = h2.DestroyTask(task.ID, true)
}

func TestXvfbDeathFailsSession(t *testing.T) {
	h := newHarness(t, nil)
	task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h"}})
	events, err := h.TaskEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	startTask(t, h, task)
	waitLog(t, task, "stdout", regexp.MustCompile(`display :\d+`))
	attrs := inspect(t, h, task.ID)
	xvfbPid, _ := strconv.Atoi(strings.TrimPrefix(strings.Fields(attrs["component.xvfb"])[1], "pid="))
	if xvfbPid <= 0 {
		// kill(0) would hit the test's own process group.
		t.Fatalf("no Xvfb pid in %q", attrs["component.xvfb"])
	}
	if err := syscall.Kill(xvfbPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res := waitExit(t, h, task.ID)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "Xvfb") || res.Successful() {
		t.Fatalf("exit = %+v (err %v), want a failure naming Xvfb", res, res.Err)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.TaskID == task.ID && strings.Contains(ev.Message, "Xvfb") {
				return
			}
		case <-timeout:
			t.Fatal("no task event names Xvfb")
		}
	}
}

func TestStartRejectsBadTasks(t *testing.T) {
	cases := []struct {
		name   string
		plugin func(*config.PluginConfig)
		task   func(*drivers.TaskConfig, *config.TaskConfig)
		want   []string
	}{
		{"root without permission", nil, func(tk *drivers.TaskConfig, _ *config.TaskConfig) { tk.User = "root" }, []string{"user:", "non-root", "allow_root"}},
		{"agent user is root", nil, func(tk *drivers.TaskConfig, _ *config.TaskConfig) { tk.User = "" }, []string{"user:", "root"}},
		{"unknown user", nil, func(tk *drivers.TaskConfig, _ *config.TaskConfig) { tk.User = "no-such-user-x" }, []string{"user:", "no-such-user-x"}},
		{"missing executable", nil, func(_ *drivers.TaskConfig, tc *config.TaskConfig) { tc.Executable = "local/nope.sh" }, []string{"executable:", "does not exist"}},
		{"not executable", nil, func(tk *drivers.TaskConfig, tc *config.TaskConfig) {
			p := filepath.Join(tk.TaskDir().LocalDir, "plain.sh")
			_ = os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644)
			tc.Executable = "local/plain.sh"
		}, []string{"executable:", "not executable"}},
		{"directory", nil, func(_ *drivers.TaskConfig, tc *config.TaskConfig) { tc.Executable = "local" }, []string{"executable:", "not a regular file"}},
		{"missing Xvfb", func(pc *config.PluginConfig) { pc.XvfbPath = "/nonexistent/Xvfb" }, nil, []string{"xvfb_path:", "apt-get install xvfb"}},
		{"bad render", nil, func(_ *drivers.TaskConfig, tc *config.TaskConfig) { tc.Render = "dx12" }, []string{"render:"}},
		{"bad resolution", nil, func(_ *drivers.TaskConfig, tc *config.TaskConfig) { tc.Resolution = "100000x1" }, []string{"resolution:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.plugin)
			task := newTask(t, h, config.TaskConfig{})
			var tc config.TaskConfig
			if err := task.DecodeDriverConfig(&tc); err != nil {
				t.Fatal(err)
			}
			if c.task != nil {
				c.task(task, &tc)
			}
			if err := task.EncodeConcreteDriverConfig(&tc); err != nil {
				t.Fatal(err)
			}
			_, _, err := h.StartTask(task)
			if err == nil {
				_ = h.DestroyTask(task.ID, true)
				t.Fatal("StartTask accepted the task")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
			// Nothing was started or left behind.
			rt := filepath.Join(h.pc.RuntimeDir, runtimeDirName(task.AllocID, task.Name))
			if _, err := os.Stat(rt); !os.IsNotExist(err) {
				t.Errorf("runtime dir %s left behind", rt)
			}
			if _, err := h.InspectTask(task.ID); err == nil {
				t.Error("a rejected task is known to the driver")
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	cases := []struct {
		name   string
		xvfb   string
		health drivers.HealthState
		desc   string
		attrs  []string
	}{
		{"xvfb present", "Xvfb", drivers.HealthStateHealthy, drivers.DriverHealthy,
			[]string{"driver.pixelstream.version", "driver.pixelstream.xvfb.version"}},
		{"xvfb missing", "/nonexistent/Xvfb", drivers.HealthStateUndetected, "apt-get install xvfb",
			[]string{"driver.pixelstream.version"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, func(pc *config.PluginConfig) { pc.XvfbPath = c.xvfb })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ch, err := h.Fingerprint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fp := <-ch
			if fp == nil || fp.Health != c.health || !strings.Contains(fp.HealthDescription, c.desc) {
				t.Fatalf("fingerprint = %+v", fp)
			}
			for _, a := range c.attrs {
				if v, ok := fp.Attributes[a]; !ok || v.GoString() == "" {
					t.Errorf("attribute %s missing: %v", a, fp.Attributes)
				}
			}
		})
	}
}

// TestRenderNeedsGLX: a task that renders is refused on a display without
// the GLX extension (GPU drivers crash there), with what to install; a task
// that does not render runs on it.
func TestRenderNeedsGLX(t *testing.T) {
	real, err := exec.LookPath("Xvfb")
	if err != nil {
		t.Fatal(err)
	}
	// An Xvfb as installed without Mesa's GLX libraries, in a directory the
	// plugin config adds to what sessions see.
	binDir := filepath.Join(sharedDir, "xvfb-bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	noGLX := filepath.Join(binDir, "Xvfb-noglx")
	if err := os.WriteFile(noGLX, []byte("#!/bin/sh\nexec "+real+" \"$@\" -extension GLX\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		render string
		want   string // "" = starts
	}{
		{config.RenderVulkan, "no GLX extension"},
		{config.RenderOpenGL, "apt-get install libglx-mesa0 libgl1-mesa-dri"},
		{config.RenderNone, ""},
	}
	for _, c := range cases {
		t.Run(c.render, func(t *testing.T) {
			h := newHarness(t, func(pc *config.PluginConfig) {
				pc.XvfbPath = noGLX
				pc.SandboxPaths = append(pc.SandboxPaths, binDir)
			})
			task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-exit=0"}, Render: c.render})
			_, _, err := h.StartTask(task)
			if c.want == "" {
				if err != nil {
					t.Fatalf("render = none on a display without GLX: %v", err)
				}
				waitExit(t, h, task.ID)
				_ = h.DestroyTask(task.ID, true)
				return
			}
			if err == nil {
				_ = h.DestroyTask(task.ID, true)
				t.Fatalf("render = %s started on a display without GLX", c.render)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error does not say %q: %v", c.want, err)
			}
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
