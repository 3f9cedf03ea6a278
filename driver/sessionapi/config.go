// Package sessionapi is the contract between the driver and a session
// supervisor, the two processes of a task: the session config the driver
// writes, the state socket's routes, state and events, the stop request, the
// client the driver uses, and the result the supervisor leaves. Both sides
// import it; neither imports the other.
package sessionapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// Config is everything the driver tells a supervisor. The driver writes it as
// JSON into the session's runtime dir, root's and mode 0600: it carries the
// session's secrets (player token, gateway secret), and the supervisor reads
// it as root inside its sandbox before it becomes the task user. The
// executor passes no stdin and argv is world-readable.
type Config struct {
	AllocID  string `json:"alloc_id"`
	TaskName string `json:"task_name"`

	Task config.TaskConfig `json:"task"`
	// Executable is Task.Executable resolved against the task dir.
	Executable string `json:"executable"`
	TaskDir    string `json:"task_dir"`
	HomeDir    string `json:"home_dir"`
	// RuntimeDir is short (sun_path limit) and root's (0711); the task
	// user's own files are in its UserDir.
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

	// UID, GID and Groups are the task user the supervisor becomes once it
	// has read this file and bound its state socket (it starts as root
	// inside its sandbox, with no capability beyond changing its ids).
	UID    int   `json:"uid"`
	GID    int   `json:"gid"`
	Groups []int `json:"groups,omitempty"`
	// HiddenEnv names the task's environment variables the app must not
	// see: they carry a secret the session was given (their value is one of
	// the config's secrets, or they are Nomad's, Vault's or Consul's tokens).
	HiddenEnv []string `json:"hidden_env,omitempty"`
	// ClaimKey is the session's gateway claim key (claim.SessionKey of the
	// task's gateway.secret and the allocation id), hex; the driver derives
	// it and blanks the secret in Task, so the fleet secret never reaches
	// the session. "" for a session outside a gateway pool.
	ClaimKey string `json:"claim_key,omitempty"`
	// Sandboxed says the session runs in the driver's sandbox (its own
	// namespaces, the task user's uid): the streamer port then checks that
	// connections come from that uid.
	Sandboxed bool `json:"sandboxed,omitempty"`
}

// File names inside the runtime dir, shared by the driver and the
// supervisor. The first three are root's; UserDir is the task user's, and
// the rest are inside it.
const (
	ConfigFile = "session.json"
	SocketFile = "session.sock"
	ResultFile = "result.json"
	UserDir    = "user"
	EnvFile    = "env"
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

// UserPath joins a file name to the task user's dir in the runtime dir.
func (c *Config) UserPath(name string) string { return filepath.Join(c.RuntimeDir, UserDir, name) }

// Write stores the config for the supervisor to load: a new file, root's,
// mode 0600, never through an existing name.
func (c *Config) Write() error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode session config: %w", err)
	}
	f, err := os.OpenFile(c.Path(ConfigFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write session config: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write session config: %w", err)
	}
	if err := f.Close(); err != nil {
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

// OpenResult creates the result file the supervisor will write its Result
// to. The supervisor opens it while it is still root (the runtime dir is
// root's) and keeps the descriptor.
func OpenResult(runtimeDir string) (*os.File, error) {
	path := filepath.Join(runtimeDir, ResultFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open session result: %w", err)
	}
	return f, nil
}

// WriteResult writes r into a result file from OpenResult.
func WriteResult(f *os.File, r *Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode session result: %w", err)
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("write session result: %w", err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
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
