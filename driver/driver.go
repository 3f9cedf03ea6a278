// Package driver is the Nomad task driver plugin. It validates a task,
// prepares its runtime dir, and starts the session supervisor under Nomad's
// shared executor; everything stream-related runs in the supervisor, so a
// plugin restart never touches a live stream.
package driver

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/client/lib/cpustats"
	"github.com/hashicorp/nomad/drivers/shared/eventer"
	"github.com/hashicorp/nomad/drivers/shared/executor"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/fsisolation"
	"github.com/hashicorp/nomad/plugins/shared/hclspec"
	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
	"github.com/pixelstream/nomad-driver-pixelstream/version"
)

var (
	pluginInfo = &base.PluginInfoResponse{
		Type:              base.PluginTypeDriver,
		PluginApiVersions: []string{drivers.ApiVersion010},
		PluginVersion:     version.Version,
		Name:              config.PluginName,
	}

	capabilities = &drivers.Capabilities{
		SendSignals: true,
		Exec:        true,
		// Nomad builds no chroot (fsisolation.None): the driver isolates the
		// session itself, in Nomad's libcontainer executor, with the node's
		// system directories bind-mounted instead of copied (sandbox.go).
		FSIsolation: fsisolation.None,
		// A job without a user runs under a uid of its own (nomad-<id>).
		DynamicWorkloadUsers: true,
		NetIsolationModes: []drivers.NetIsolationMode{
			drivers.NetIsolationModeHost,
			drivers.NetIsolationModeGroup,
		},
		MountConfigs: drivers.MountConfigSupportNone,
	}
)

// Timeouts of the driver's own waits.
const (
	// sessionStartTimeout bounds StartTask's wait for the supervisor to
	// report the app started (or failed). It covers the sandbox, the
	// display and the audio stack (each bounded by 30 s in the supervisor,
	// and each a few hundred ms when healthy), signalling and TURN, and
	// spawning the app; the app's own start-up is startup_timeout's.
	sessionStartTimeout = 60 * time.Second
	// stopMargin is added to the job's kill_timeout for the supervisor's own
	// teardown after the app is gone.
	stopMargin = 20 * time.Second
)

// Driver is the pixelstream task driver.
type Driver struct {
	eventer *eventer.Eventer
	tasks   *taskStore
	ctx     context.Context
	cancel  context.CancelFunc
	logger  hclog.Logger

	mu           sync.Mutex
	config       config.PluginConfig
	nomadConfig  *base.ClientDriverConfig
	compute      cpustats.Compute
	xvfbVersions map[string]string
	// node is what the last fingerprint found (GPUs, audio); StartTask uses
	// it rather than probing the node again for every task.
	node *nodeInfo

	// selfPath is this binary, which the executor re-executes as the
	// session supervisor.
	selfPath string
}

var _ drivers.DriverPlugin = (*Driver)(nil)
var _ drivers.ExecTaskStreamingRawDriver = (*Driver)(nil)

// NewPlugin returns the driver, ready to be served to Nomad.
func NewPlugin(logger hclog.Logger) *Driver {
	ctx, cancel := context.WithCancel(context.Background())
	logger = logger.Named(config.PluginName)
	self, err := os.Executable()
	if err != nil {
		logger.Error("cannot find own executable; tasks will fail to start", "error", err)
	}
	return &Driver{
		eventer:      eventer.NewEventer(ctx, logger),
		tasks:        newTaskStore(),
		ctx:          ctx,
		cancel:       cancel,
		logger:       logger,
		config:       config.DefaultPluginConfig(),
		xvfbVersions: map[string]string{},
		selfPath:     self,
	}
}

// Shutdown ends the plugin's own goroutines (event followers, the
// fingerprinter) when Nomad stops serving it; sessions keep running.
func (d *Driver) Shutdown() { d.cancel() }

// PluginInfo describes the plugin to Nomad.
func (d *Driver) PluginInfo() (*base.PluginInfoResponse, error) { return pluginInfo, nil }

// ConfigSchema is the schema of the agent's plugin block.
func (d *Driver) ConfigSchema() (*hclspec.Spec, error) { return config.PluginSpec, nil }

// SetConfig receives the plugin block and the agent's driver settings.
func (d *Driver) SetConfig(cfg *base.Config) error {
	pc := config.DefaultPluginConfig()
	if len(cfg.PluginConfig) != 0 {
		if err := base.MsgPackDecode(cfg.PluginConfig, &pc); err != nil {
			return fmt.Errorf("decode plugin config: %w", err)
		}
	}
	if err := pc.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.config = pc
	if cfg.AgentConfig != nil {
		d.nomadConfig = cfg.AgentConfig.Driver
		d.compute = cfg.AgentConfig.Compute()
	}
	return nil
}

func (d *Driver) pluginConfig() config.PluginConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.config
}

// TaskConfigSchema is the schema of a job's config block.
func (d *Driver) TaskConfigSchema() (*hclspec.Spec, error) { return config.TaskSpec, nil }

// Capabilities tells Nomad what the driver supports.
func (d *Driver) Capabilities() (*drivers.Capabilities, error) { return capabilities, nil }

// StartTask validates the task, prepares its runtime dir and starts the
// session supervisor in its sandbox under an executor. It returns once the
// app has started, so a session that cannot start fails here with the
// reason; whatever it made before a failure is undone by the deferred
// cleanups, which all watch err.
func (d *Driver) StartTask(cfg *drivers.TaskConfig) (_ *drivers.TaskHandle, _ *drivers.DriverNetwork, err error) {
	if _, ok := d.tasks.Get(cfg.ID); ok {
		return nil, nil, fmt.Errorf("task with ID %q already started", cfg.ID)
	}
	pc := d.pluginConfig()

	var tc config.TaskConfig
	if err := cfg.DecodeDriverConfig(&tc); err != nil {
		return nil, nil, fmt.Errorf("decode task config: %w", err)
	}
	prep, err := prepare(pc, cfg, &tc, d.selfPath, d.nodeInfo())
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(prep.runtimeDir)
		}
	}()
	if err := checkSecretFiles(cfg.TaskDir().Dir, prep.uid, prep.gid, prep.groups, sessionSecrets(&tc)); err != nil {
		return nil, nil, fmt.Errorf("invalid task: %w", err)
	}
	plan, err := planSandbox(pc, cfg, d.selfPath, prep.runtimeDir, prep.executable, prep.xvfb, prep.uid, prep.gid)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid task: %w", err)
	}
	logger := d.logger.With("alloc_id", cfg.AllocID, "task_name", cfg.Name)
	sessCfg := &sessionapi.Config{
		AllocID: cfg.AllocID, TaskName: cfg.Name, Task: tc,
		Executable: plan.executable, TaskDir: "/", HomeDir: sandboxLocalDir + "/home",
		RuntimeDir: prep.runtimeDir, XvfbPath: prep.xvfb,
		GPUEnv: prep.gpu.Env, GPUArgs: prep.gpu.Args,
		PlayerListen: prep.playerListen, TURNListen: prep.turnListen,
		PlayerPublic: prep.playerPublic, TURNPublic: prep.turnPublic, RelayIP: prep.relayIP,
		UID: prep.uid, GID: prep.gid, Groups: prep.groups,
		HiddenEnv: hiddenEnv(cfg.Env, &tc), Sandboxed: true,
	}
	if tc.Gateway.Secret != "" {
		// The session gets its own claim key, never the fleet secret: a
		// session that leaks what it holds leaks one session's key.
		key := claim.SessionKey(tc.Gateway.Secret, cfg.AllocID)
		sessCfg.ClaimKey = hex.EncodeToString(key[:])
		sessCfg.Task.Gateway.Secret = ""
	}
	if err := sessCfg.Write(); err != nil {
		return nil, nil, err
	}

	d.mu.Lock()
	nomadConfig, compute := d.nomadConfig, d.compute
	d.mu.Unlock()
	execCfg := &executor.ExecutorConfig{
		LogFile:     filepath.Join(cfg.TaskDir().Dir, "executor.out"),
		LogLevel:    "debug",
		FSIsolation: true,
		Compute:     compute,
	}
	exec, pluginClient, err := createExecutor(logger, d.selfPath, nomadConfig, execCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("create executor: %w", err)
	}
	defer func() {
		if err != nil {
			pluginClient.Kill()
		}
	}()
	ps, err := exec.Launch(&executor.ExecCommand{
		Cmd:  sandboxSelf,
		Args: []string{"session", "--config", sessCfg.Path(sessionapi.ConfigFile)},
		Env:  sandboxEnv(cfg.Env),
		// Root inside the sandbox with two capabilities: the supervisor
		// reads its root-only config, then becomes the task user itself
		// (the executor cannot: it looks users up in /etc/passwd, which
		// knows no dynamic workload user).
		User:             "",
		Capabilities:     supervisorCaps,
		TaskDir:          cfg.TaskDir().Dir,
		WorkDir:          "/",
		StdoutPath:       cfg.StdoutPath,
		StderrPath:       cfg.StderrPath,
		ResourceLimits:   true,
		Resources:        cfg.Resources.Copy(),
		Mounts:           plan.mounts,
		Devices:          cfg.Devices,
		NetworkIsolation: cfg.NetworkIsolation,
		ModePID:          executor.IsolationModePrivate,
		ModeIPC:          executor.IsolationModePrivate,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("launch session supervisor: %w", err)
	}

	h := newTaskHandle(cfg, exec, pluginClient, ps.Pid, prep.runtimeDir, prep.uid, prep.gid, d.logger, d.eventer)
	h.startedAt = time.Now().Round(time.Millisecond)
	go h.run()
	defer func() {
		if err != nil {
			_ = exec.Shutdown("SIGKILL", 0)
			<-h.doneCh
		}
	}()
	for _, g := range prep.gpu.GPUs {
		h.gpus = append(h.gpus, g.UUID)
	}
	handle := drivers.NewTaskHandle(taskHandleVersion)
	handle.Config = cfg
	if err := handle.SetDriverState(&TaskState{
		ReattachConfig: pstructs.ReattachConfigFromGoPlugin(pluginClient.ReattachConfig()),
		TaskConfig:     cfg,
		Pid:            ps.Pid,
		StartedAt:      h.startedAt,
		RuntimeDir:     prep.runtimeDir,
		UID:            prep.uid,
		GID:            prep.gid,
		GPUs:           h.gpus,
	}); err != nil {
		return nil, nil, fmt.Errorf("set driver state: %w", err)
	}

	ctx, cancel := context.WithTimeout(d.ctx, sessionStartTimeout)
	defer cancel()
	seq, err := h.waitStarted(ctx)
	if err != nil {
		return nil, nil, err
	}
	d.tasks.Set(cfg.ID, h)
	for _, w := range prep.notices {
		_ = d.eventer.EmitEvent(&drivers.TaskEvent{TaskID: cfg.ID, AllocID: cfg.AllocID, TaskName: cfg.Name,
			Timestamp: time.Now(), Message: w, Annotations: map[string]string{"kind": "gpu"}})
	}
	go h.followEvents(d.ctx, seq, time.Second, nil)
	return handle, nil, nil
}

// wellKnownTokens are environment variables that carry a credential
// whatever the job says: workload identity and Vault/Consul tokens.
var wellKnownTokens = []string{"NOMAD_TOKEN", "VAULT_TOKEN", "CONSUL_TOKEN", "CONSUL_HTTP_TOKEN"}

// hiddenEnv lists the task's environment variables the app must not see:
// the well-known token variables, and every variable whose value is or
// contains a secret of the session's config (the job delivered it through
// the environment, e.g. a template with env = true, and the config
// interpolated it).
func hiddenEnv(env map[string]string, tc *config.TaskConfig) []string {
	secrets := sessionSecrets(tc)
	var out []string
	for k, v := range env {
		hide := slices.Contains(wellKnownTokens, k)
		for _, sec := range secrets {
			if v == string(sec) || (len(sec) >= 8 && strings.Contains(v, string(sec))) {
				hide = true
			}
		}
		if hide {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// RecoverTask reattaches to a session after a plugin or agent restart. The
// session never noticed the restart; only the driver's view is rebuilt.
func (d *Driver) RecoverTask(handle *drivers.TaskHandle) error {
	if handle == nil {
		return errors.New("recover task: handle is nil")
	}
	if _, ok := d.tasks.Get(handle.Config.ID); ok {
		return nil
	}
	var ts TaskState
	if err := handle.GetDriverState(&ts); err != nil {
		return fmt.Errorf("recover task: decode driver state: %w", err)
	}
	rc, err := pstructs.ReattachConfigToGoPlugin(ts.ReattachConfig)
	if err != nil {
		return fmt.Errorf("recover task: reattach config: %w", err)
	}
	d.mu.Lock()
	compute := d.compute
	d.mu.Unlock()
	logger := d.logger.With("alloc_id", handle.Config.AllocID, "task_name", handle.Config.Name)
	exec, pluginClient, err := executor.ReattachToExecutor(rc, logger, compute)
	if err != nil {
		return fmt.Errorf("recover task: reattach to executor: %w", err)
	}
	h := newTaskHandle(ts.TaskConfig, exec, pluginClient, ts.Pid, ts.RuntimeDir, ts.UID, ts.GID, d.logger, d.eventer)
	h.startedAt = ts.StartedAt
	h.gpus = ts.GPUs
	// Resume from the last event the session knows was delivered (the
	// driver acknowledges a batch by asking for what follows it): events
	// emitted while no plugin was listening reach Nomad now, and the last
	// batch the previous plugin handed on may reach it a second time.
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
	st, err := h.client.State(ctx)
	cancel()
	if err == nil {
		h.setState(st)
	} else {
		logger.Warn("session state not available after recovery", "error", err)
	}
	d.tasks.Set(ts.TaskConfig.ID, h)
	go h.run()
	go h.followEvents(d.ctx, st.Delivered, time.Second, nil)
	return nil
}

// WaitTask returns a channel that receives the task's exit once it ends.
func (d *Driver) WaitTask(ctx context.Context, taskID string) (<-chan *drivers.ExitResult, error) {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	ch := make(chan *drivers.ExitResult)
	go func() {
		defer close(ch)
		select {
		case <-h.doneCh:
		case <-ctx.Done():
			return
		case <-d.ctx.Done():
			return
		}
		select {
		case ch <- h.exitResult():
		case <-ctx.Done():
		case <-d.ctx.Done():
		}
	}()
	return ch, nil
}

// StopTask asks the session to stop the app with the job's kill_signal,
// SIGKILL after kill_timeout, and to tear itself down; the executor's own
// shutdown is the fallback when the session cannot be reached.
func (d *Driver) StopTask(taskID string, timeout time.Duration, signal string) error {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	if err := h.stop(signal, timeout); err != nil {
		return err
	}
	h.pluginClient.Kill()
	return nil
}

// DestroyTask forgets a task, killing what is left of it if forced.
func (d *Driver) DestroyTask(taskID string, force bool) error {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	if h.IsRunning() && !force {
		return errors.New("cannot destroy a running task; stop it first or force")
	}
	if !h.pluginClient.Exited() {
		if h.IsRunning() {
			_ = h.exec.Shutdown("SIGKILL", 0)
			<-h.doneCh
		}
		h.pluginClient.Kill()
	}
	h.cleanup()
	h.client.Close()
	d.tasks.Delete(taskID)
	return nil
}

// InspectTask reports the task's status with the session's components.
func (d *Driver) InspectTask(taskID string) (*drivers.TaskStatus, error) {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	return h.TaskStatus(), nil
}

// TaskStats streams resource usage of the whole session: supervisor,
// display and app, all in the executor's process tree.
func (d *Driver) TaskStats(ctx context.Context, taskID string, interval time.Duration) (<-chan *drivers.TaskResourceUsage, error) {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	ch, err := h.exec.Stats(ctx, interval)
	if err != nil {
		return nil, err
	}
	return withGPUStats(ctx, h.gpus, ch), nil
}

// TaskEvents streams the sessions' events to Nomad.
func (d *Driver) TaskEvents(ctx context.Context) (<-chan *drivers.TaskEvent, error) {
	return d.eventer.TaskEvents(ctx)
}

// SignalTask sends a signal to the app (not to the supervisor or Xvfb).
func (d *Driver) SignalTask(taskID string, signal string) error {
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	return h.signal(signal)
}

// ExecTask runs a command in the task's environment, with the session's
// DISPLAY; Nomad uses it for script checks.
func (d *Driver) ExecTask(taskID string, cmd []string, timeout time.Duration) (*drivers.ExecTaskResult, error) {
	if len(cmd) == 0 {
		return nil, errors.New("exec: a command is required")
	}
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	wrapped := h.execCommand(cmd)
	out, code, err := h.exec.Exec(time.Now().Add(timeout), wrapped[0], wrapped[1:])
	if err != nil {
		return nil, err
	}
	return &drivers.ExecTaskResult{Stdout: out, ExitResult: &drivers.ExitResult{ExitCode: code}}, nil
}

// ExecTaskStreamingRaw serves `nomad alloc exec`: the command runs as the
// task user in the task's environment with the session's DISPLAY.
func (d *Driver) ExecTaskStreamingRaw(ctx context.Context, taskID string, command []string, tty bool, stream drivers.ExecTaskStream) error {
	if len(command) == 0 {
		return errors.New("exec: a command is required")
	}
	h, ok := d.tasks.Get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	return h.exec.ExecStreaming(ctx, h.execCommand(command), tty, stream)
}
