package session

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
)

// Main is the `session` subcommand: `session --config FILE` runs a
// supervisor; `session exec --env-file FILE -- CMD...` runs CMD with the
// session's environment (DISPLAY and the rest), for `nomad alloc exec`.
func Main(args []string) int {
	if len(args) > 0 && args[0] == "exec" {
		return execMain(args[1:])
	}
	fs := flag.NewFlagSet("session", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "session config file written by the driver")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprintln(os.Stderr, "session: --config is required; the driver starts this subcommand, users need not")
		return 2
	}
	// The config sits in the session's runtime dir, where the driver looks
	// for the result: a supervisor that fails this early still says why.
	runtimeDir := filepath.Dir(*cfgPath)
	result, err := sessionapi.OpenResult(runtimeDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "[pixelstream] %v\n", err)
		return 1
	}
	defer result.Close()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "[pixelstream] %v\n", err)
		_ = sessionapi.WriteResult(result, &sessionapi.Result{ExitCode: 1, Error: err.Error()})
		return 1
	}
	cfg, err := sessionapi.LoadConfig(*cfgPath)
	if err != nil {
		return fail(err)
	}
	// Root's part: the state socket in the root-owned runtime dir (so only
	// root can connect), then the task user for good.
	state, err := listenState(cfg.Path(sessionapi.SocketFile))
	if err != nil {
		return fail(err)
	}
	if err := becomeTaskUser(cfg); err != nil {
		state.Close()
		return fail(err)
	}
	// The secrets the task's environment carried are in cfg already (Nomad
	// interpolated them into the task config): nothing started from here
	// on (Xvfb, PipeWire, the app, all dumpable processes of the task user)
	// inherits them.
	for _, k := range cfg.HiddenEnv {
		_ = os.Unsetenv(k)
	}
	r := runRecovered(cfg, state, result)
	if r.Signal != 0 {
		// Die the way the app died so Nomad reports the signal, as it would
		// for an app it had started itself.
		sig := syscall.Signal(r.Signal)
		signalReset(sig)
		_ = syscall.Kill(os.Getpid(), sig)
	}
	return r.ExitCode
}

// runRecovered runs the supervisor; a bug in it ends the session with a
// result naming the panic (and the stack on stderr, in the task's logs)
// rather than with a bare exit code.
func runRecovered(cfg *sessionapi.Config, state net.Listener, result *os.File) (r *sessionapi.Result) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(os.Stderr, "[pixelstream] session supervisor panic: %v\n%s", p, debug.Stack())
			r = &sessionapi.Result{ExitCode: 1, Error: fmt.Sprintf("session supervisor crashed: %v", p)}
			_ = sessionapi.WriteResult(result, r)
		}
	}()
	return Run(cfg, state, result, os.Stderr)
}

func execMain(args []string) int {
	fs := flag.NewFlagSet("session exec", flag.ContinueOnError)
	envFile := fs.String("env-file", "", "the session's env file")
	uid := fs.Int("uid", -1, "the task user's uid (the executor starts exec'd commands as root in the sandbox)")
	gid := fs.Int("gid", -1, "the task user's gid")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		fmt.Fprintln(os.Stderr, "session exec: a command is required after --")
		return 2
	}
	if *uid >= 0 && *gid >= 0 {
		if err := dropTo(*uid, *gid, nil); err != nil {
			fmt.Fprintf(os.Stderr, "pixelstream: %v\n", err)
			return 126
		}
	}
	env := os.Environ()
	if b, err := os.ReadFile(*envFile); err == nil {
		var extra []string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "=") {
				extra = append(extra, line)
			}
		}
		env = mergeEnv(env, extra)
	} else {
		// The session may be starting or stopping: run the command anyway,
		// a shell without DISPLAY is still useful for looking around.
		fmt.Fprintf(os.Stderr, "pixelstream: session environment not available (%v)\n", err)
	}
	path, err := exec.LookPath(cmd[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd[0], err)
		return 127
	}
	err = syscall.Exec(path, cmd, env)
	fmt.Fprintf(os.Stderr, "exec %s: %v\n", cmd[0], err)
	return 126
}
