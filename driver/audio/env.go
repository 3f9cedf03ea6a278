package audio

import (
	"os"
	"path/filepath"
	"syscall"
)

// quietLevel keeps the daemons to warnings and errors (PipeWire's and
// WirePlumber's level 2), so they do not drown the app's own output. The
// realtime module is silenced: RealtimeKit is rarely on a server node, its
// absence costs nothing a stream notices, and its complaints would otherwise
// be most of every start's output.
const quietLevel = "2,mod.rt:0"

// Env returns KEY=VALUE pairs that point an app at this stack.
func (s *Stack) Env() []string {
	s.mu.Lock()
	bus := s.busAddr
	s.mu.Unlock()
	return []string{
		"XDG_RUNTIME_DIR=" + s.lay.runtime,
		// Native PipeWire clients (pw-play, JACK via pipewire) look here first.
		"PIPEWIRE_RUNTIME_DIR=" + s.lay.runtime,
		"PULSE_SERVER=unix:" + s.lay.pulseSocket(),
		"DBUS_SESSION_BUS_ADDRESS=" + bus,
	}
}

// daemonEnv is built from scratch rather than inherited: the supervisor's
// environment may name the user's real runtime dir, bus or home, and any of
// those would let two sessions meet or touch the user's files.
func (s *Stack) daemonEnv() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env := []string{
		"PATH=" + path,
		"HOME=" + s.lay.state,
		"XDG_CONFIG_HOME=" + s.lay.config,
		"XDG_STATE_HOME=" + filepath.Join(s.lay.state, "state"),
		"XDG_DATA_HOME=" + filepath.Join(s.lay.state, "data"),
		"XDG_CACHE_HOME=" + filepath.Join(s.lay.state, "cache"),
		"XDG_RUNTIME_DIR=" + s.lay.runtime,
		"PIPEWIRE_RUNTIME_DIR=" + s.lay.runtime,
		"PULSE_RUNTIME_PATH=" + filepath.Join(s.lay.runtime, "pulse"),
		"PIPEWIRE_DEBUG=" + quietLevel,
		"WIREPLUMBER_DEBUG=" + quietLevel,
	}
	s.mu.Lock()
	bus := s.busAddr
	s.mu.Unlock()
	if bus != "" {
		env = append(env, "DBUS_SESSION_BUS_ADDRESS="+bus)
	}
	return env
}

// probeAttr runs readiness probes as the stack's user, so they see what the
// daemons and the app see.
func (s *Stack) probeAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: s.cfg.Credential, Pdeathsig: syscall.SIGKILL}
}
