// Package session is the per-task supervisor: it runs as the task's user
// under Nomad's executor, brings up the session's components in order
// (display, then the app), publishes their state on a unix socket for the
// driver, and tears everything down in reverse when the app ends or the
// driver asks it to stop.
package session

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// Config is everything the driver tells a supervisor. The driver writes it as
// JSON into the session's runtime dir (mode 0600, owned by the task user),
// because the executor passes no stdin and argv is world-readable.
type Config struct {
	AllocID  string `json:"alloc_id"`
	TaskName string `json:"task_name"`

	Task config.TaskConfig `json:"task"`
	// Executable is Task.Executable resolved against the task dir.
	Executable string `json:"executable"`
	TaskDir    string `json:"task_dir"`
	HomeDir    string `json:"home_dir"`
	// RuntimeDir is short (sun_path limit), owned by the task user, 0700.
	RuntimeDir string `json:"runtime_dir"`
	XvfbPath   string `json:"xvfb_path"`

	// GPUEnv and GPUArgs come from mapping the GPUs Nomad assigned to the
	// task (driver/gpu): Vulkan/EGL/CUDA selection and -graphicsadapter.
	GPUEnv  map[string]string `json:"gpu_env,omitempty"`
	GPUArgs []string          `json:"gpu_args,omitempty"`

	// PlayerListen and TURNListen are the host addresses of the task's
	// http_port and turn_port labels; "" when the job set none.
	PlayerListen string `json:"player_listen,omitempty"`
	TURNListen   string `json:"turn_listen,omitempty"`
	// PlayerPublic and TURNPublic are host:port players reach those ports
	// at: the host side of Nomad's port mapping, or turn.public_address and
	// turn.public_port. They differ from the listen addresses in a group
	// network namespace (bridge mode) and behind NAT.
	PlayerPublic string `json:"player_public,omitempty"`
	TURNPublic   string `json:"turn_public,omitempty"`
	// RelayIP is, in a group network namespace, the allocation's own address:
	// TURN relays bind to it and advertise it (the host address is not local
	// there). "" in host mode; in a namespace "" means find it.
	RelayIP string `json:"relay_ip,omitempty"`
}

// File names inside the runtime dir, shared by the driver and the supervisor.
const (
	ConfigFile = "session.json"
	SocketFile = "session.sock"
	EnvFile    = "env"
	ResultFile = "result.json"
	AuthFile   = "Xauthority"
	AudioDir   = "audio"
	AudioState = "audio-state"
)

// SessionID names this task's session among the others on the node (the
// signalling token cookie ends in it: browsers share cookies across ports).
// It is derived, not random, so a restarted supervisor keeps it.
func (c *Config) SessionID() string {
	sum := sha256.Sum256([]byte(c.AllocID + "/" + c.TaskName))
	return hex.EncodeToString(sum[:8])
}

// Path joins a file name to the runtime dir.
func (c *Config) Path(name string) string { return filepath.Join(c.RuntimeDir, name) }

// Write stores the config for the supervisor to load.
func (c *Config) Write() error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode session config: %w", err)
	}
	if err := os.WriteFile(c.Path(ConfigFile), b, 0o600); err != nil {
		return fmt.Errorf("write session config: %w", err)
	}
	return nil
}

// LoadConfig reads the config the driver wrote.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read session config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode session config %s: %w", path, err)
	}
	return &c, nil
}

// Result is what the supervisor leaves behind when it exits, so the driver
// can tell a session that failed (a component died) from an app that exited.
type Result struct {
	ExitCode int    `json:"exit_code"`
	Signal   int    `json:"signal,omitempty"`
	Error    string `json:"error,omitempty"`
	// AppStarted says the app ran, so an app that exits at once is an
	// exit, not a failed start, even when the driver never saw the event.
	AppStarted bool `json:"app_started,omitempty"`
}

// WriteResult leaves r in runtimeDir for the driver.
func WriteResult(runtimeDir string, r *Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode session result: %w", err)
	}
	if err := os.WriteFile(filepath.Join(runtimeDir, ResultFile), b, 0o600); err != nil {
		return fmt.Errorf("write session result: %w", err)
	}
	return nil
}

// ReadResult reads a session's result file.
func ReadResult(runtimeDir string) (*Result, error) {
	b, err := os.ReadFile(filepath.Join(runtimeDir, ResultFile))
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode session result: %w", err)
	}
	return &r, nil
}
