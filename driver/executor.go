package driver

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/nomad/drivers/shared/executor"
	"github.com/hashicorp/nomad/plugins/base"
)

// ExecutorCommand is the subcommand that serves a session's executor: Nomad's
// libcontainer executor, behind one change of its process. The executor
// outlives the plugin (that is the point: a plugin crash must not end a
// session), but runc's library logs warnings to the stderr it was started
// with, a pipe to the plugin; after a plugin crash the next warning (every
// container state save on cgroups v1) would kill the executor with SIGPIPE
// and leave the session without its executor. Here SIGPIPE is ignored
// before Nomad's executor serves.
const ExecutorCommand = "sandbox-executor"

// ServeExecutor is ExecutorCommand's entry point: args is the executor's
// JSON config.
func ServeExecutor(args []string) int {
	signal.Ignore(syscall.SIGPIPE)
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, ExecutorCommand+": the executor's JSON config is required (the driver starts this subcommand)")
		return 2
	}
	var cfg executor.ExecutorConfig
	if err := json.Unmarshal([]byte(args[0]), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: decode config: %v\n", ExecutorCommand, err)
		return 2
	}
	f, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: open log file: %v\n", ExecutorCommand, err)
		return 1
	}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.LevelFromString(cfg.LogLevel), JSONFormat: true, Output: f})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: base.Handshake,
		Plugins:         executor.GetPluginMap(logger, cfg.FSIsolation, cfg.Compute),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
	return 0
}

// createExecutor starts a session's executor as Nomad's CreateExecutor does,
// through ExecutorCommand. Reattaching after a plugin restart is Nomad's
// own ReattachToExecutor: the executor serves the same protocol.
func createExecutor(logger hclog.Logger, self string, driverCfg *base.ClientDriverConfig, cfg *executor.ExecutorConfig) (executor.Executor, *plugin.Client, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("encode executor config: %w", err)
	}
	cmd := exec.Command(self, ExecutorCommand, string(b))
	// Its own session: signals meant for the Nomad client do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pc := &plugin.ClientConfig{
		HandshakeConfig:  base.Handshake,
		Plugins:          executor.GetPluginMap(logger, cfg.FSIsolation, cfg.Compute),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger.Named("executor"),
		MinPort:          executor.ExecutorDefaultMinPort,
		MaxPort:          executor.ExecutorDefaultMaxPort,
	}
	if driverCfg != nil {
		pc.MinPort, pc.MaxPort = driverCfg.ClientMinPort, driverCfg.ClientMaxPort
	}
	client := plugin.NewClient(pc)
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, nil, fmt.Errorf("start executor: %w", err)
	}
	raw, err := rpc.Dispense("executor")
	if err != nil {
		client.Kill()
		return nil, nil, fmt.Errorf("dispense executor: %w", err)
	}
	exec, ok := raw.(executor.Executor)
	if !ok {
		client.Kill()
		return nil, nil, fmt.Errorf("executor: unexpected type %T", raw)
	}
	return exec, client, nil
}
