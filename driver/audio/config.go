package audio

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// SinkName is the node name of the null sink every stack creates and makes the
// default output; its monitor source is SinkName + ".monitor".
const SinkName = "pixelstream_sink"

// Defaults used when the matching Config field is zero.
const (
	DefaultMaxRestarts   = 5
	DefaultRestartWindow = 5 * time.Minute
	DefaultReadyTimeout  = 10 * time.Second
	DefaultStopTimeout   = 5 * time.Second
)

// maxSocketPath is the usable length of sun_path (108 bytes with its NUL).
const maxSocketPath = 107

// longestSocket is the deepest socket the stack creates under RuntimeDir.
const longestSocket = "/pulse/native"

// Binaries names the programs the stack runs. An empty field is looked up on PATH.
type Binaries struct {
	DBusDaemon    string // dbus-daemon
	PipeWire      string // pipewire
	WirePlumber   string // wireplumber
	PipeWirePulse string // pipewire-pulse
	PWMetadata    string // pw-metadata, used to see WirePlumber's default sink
}

// Config describes one session's audio stack.
type Config struct {
	// RuntimeDir becomes XDG_RUNTIME_DIR of the stack and the app. It is
	// created mode 0700 (its parent must exist) and removed by Stop. It must
	// be short: the pulse socket inside it is limited to 108 bytes.
	RuntimeDir string
	// StateDir holds HOME and the XDG config/state/data dirs of the daemons,
	// so nothing touches the user's real home. Created if missing (with
	// Credential, its parent must already be traversable by that user);
	// kept on Stop, as it lives in the task dir.
	StateDir string
	// Log receives every output line of the components, prefixed "[name] ".
	// Use io.Discard to drop them; nil is refused so output is never lost by accident.
	Log io.Writer
	// Logger gets the stack's own events; nil means no logging.
	Logger hclog.Logger
	// Bins overrides program paths; zero fields are looked up on PATH.
	Bins Binaries
	// MaxRestarts bounds the restarts of one component within RestartWindow;
	// 0 means DefaultMaxRestarts. Past it, Failed() reports the component.
	MaxRestarts int
	// RestartWindow is how far back restarts count against MaxRestarts;
	// 0 means DefaultRestartWindow.
	RestartWindow time.Duration
	// ReadyTimeout bounds the wait for each component to become ready;
	// 0 means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// StopTimeout bounds the wait after SIGTERM before SIGKILL, per component;
	// 0 means DefaultStopTimeout.
	StopTimeout time.Duration
	// OnRestart is called after a component that died is running and ready
	// again (with the components that depend on it). attempt counts restarts
	// within RestartWindow. Called from the supervisor goroutine: keep it short.
	OnRestart func(component string, attempt int, reason string)
	// Credential, when set, runs the daemons as that user and hands the
	// directories to it. Needed only when the caller is root (tests, tools);
	// a session supervisor already running as the task user leaves it nil.
	Credential *syscall.Credential
}

// settings is a validated Config with defaults applied and binaries resolved.
type settings struct {
	Config
	backoffBase time.Duration
	backoffMax  time.Duration
}

func (c Config) validate() (settings, error) {
	s := settings{Config: c, backoffBase: 100 * time.Millisecond, backoffMax: 5 * time.Second}
	var errs []error
	switch {
	case c.RuntimeDir == "":
		errs = append(errs, errors.New("RuntimeDir is empty: give an absolute, short path for the private runtime dir"))
	case !filepath.IsAbs(c.RuntimeDir):
		errs = append(errs, fmt.Errorf("RuntimeDir %q is not absolute: give an absolute path", c.RuntimeDir))
	case filepath.Clean(c.RuntimeDir) != c.RuntimeDir:
		errs = append(errs, fmt.Errorf("RuntimeDir %q is not clean: use %q", c.RuntimeDir, filepath.Clean(c.RuntimeDir)))
	case len(c.RuntimeDir)+len(longestSocket) > maxSocketPath:
		errs = append(errs, fmt.Errorf("RuntimeDir %q is %d bytes: at most %d fit, since the socket %s inside it must stay within the 108-byte unix socket limit",
			c.RuntimeDir, len(c.RuntimeDir), maxSocketPath-len(longestSocket), longestSocket))
	}
	switch {
	case c.StateDir == "":
		errs = append(errs, errors.New("StateDir is empty: give an absolute path (inside the task dir) for the daemons' HOME and state"))
	case !filepath.IsAbs(c.StateDir):
		errs = append(errs, fmt.Errorf("StateDir %q is not absolute: give an absolute path", c.StateDir))
	}
	if c.Log == nil {
		errs = append(errs, errors.New("the Log writer is nil: give a writer for component output (io.Discard to drop it)"))
	}
	if c.MaxRestarts < 0 {
		errs = append(errs, fmt.Errorf("MaxRestarts is %d: use 0 for the default (%d) or a positive count", c.MaxRestarts, DefaultMaxRestarts))
	}
	for name, d := range map[string]time.Duration{"RestartWindow": c.RestartWindow, "ReadyTimeout": c.ReadyTimeout, "StopTimeout": c.StopTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s is %v: use 0 for the default or a positive duration", name, d))
		}
	}
	if s.Logger == nil {
		s.Logger = hclog.NewNullLogger()
	}
	if s.MaxRestarts == 0 {
		s.MaxRestarts = DefaultMaxRestarts
	}
	if s.RestartWindow == 0 {
		s.RestartWindow = DefaultRestartWindow
	}
	if s.ReadyTimeout == 0 {
		s.ReadyTimeout = DefaultReadyTimeout
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = DefaultStopTimeout
	}
	bins, missing := c.Bins.resolve()
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("audio programs not found: %v: %s", missing, installHint(missing)))
	}
	s.Bins = bins
	return s, errors.Join(errs...)
}

// resolve looks up every empty field on PATH and checks explicit ones exist.
func (b Binaries) resolve() (Binaries, []string) {
	var missing []string
	look := func(field *string, name string) {
		p := *field
		if p == "" {
			p = name
		}
		full, err := exec.LookPath(p)
		if err != nil {
			missing = append(missing, p)
			return
		}
		*field = full
	}
	look(&b.DBusDaemon, "dbus-daemon")
	look(&b.PipeWire, "pipewire")
	look(&b.WirePlumber, "wireplumber")
	look(&b.PipeWirePulse, "pipewire-pulse")
	look(&b.PWMetadata, "pw-metadata")
	return b, missing
}
