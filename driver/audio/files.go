package audio

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// layout is where the stack keeps its sockets, config and state.
type layout struct {
	runtime    string // XDG_RUNTIME_DIR
	state      string // HOME of the daemons
	config     string // XDG_CONFIG_HOME
	dbusConfig string
}

func newLayout(runtimeDir, stateDir string) layout {
	return layout{
		runtime:    runtimeDir,
		state:      stateDir,
		config:     filepath.Join(stateDir, "config"),
		dbusConfig: filepath.Join(stateDir, "config", "pixelstream-dbus.conf"),
	}
}

func (l layout) busSocket() string      { return filepath.Join(l.runtime, "bus") }
func (l layout) pipewireSocket() string { return filepath.Join(l.runtime, "pipewire-0") }
func (l layout) pulseSocket() string    { return filepath.Join(l.runtime, "pulse", "native") }

// pipewireFragment adds the null sink to the pipewire daemon itself, so it
// exists as soon as pipewire is up and survives restarts of the pulse server
// and the session manager. PipeWire reads pipewire.conf.d/*.conf from
// XDG_CONFIG_HOME on top of the packaged pipewire.conf (0.3.x and later), so
// the distribution's config stays in charge of everything else.
const pipewireFragment = `# Written by nomad-driver-pixelstream: the session's default output.
context.objects = [
  { factory = adapter
    args = {
      factory.name           = support.null-audio-sink
      node.name              = "` + SinkName + `"
      node.description       = "Pixel Streaming output"
      media.class            = "Audio/Sink"
      audio.position         = [ FL FR ]
      monitor.channel-volumes = true
      priority.session       = 2000
    }
  }
]
`

// wireplumberMain turns off hardware monitors: on a GPU node the HDMI audio
// of the GPU would otherwise become the default sink (and be fought over by
// every session on the node) instead of the session's own null sink.
const wireplumberMain = `-- Written by nomad-driver-pixelstream: sessions use their own null sink only.
alsa_monitor.enabled = false
v4l2_monitor.enabled = false
libcamera_monitor.enabled = false
`

const wireplumberBluetooth = `-- Written by nomad-driver-pixelstream: no bluetooth in a session.
bluez_monitor.enabled = false
`

// dbusConfig is a bus of its own: one socket in the private runtime dir, no
// service activation and no system-wide includes, so nothing else starts on
// it or joins it. Without <user> rules only the daemon's own uid may connect.
func dbusConfig(socket string) ([]byte, error) {
	var addr strings.Builder
	if err := xml.EscapeText(&addr, []byte("unix:path="+socket)); err != nil {
		return nil, fmt.Errorf("encode dbus listen address: %w", err)
	}
	return []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>` + addr.String() + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), nil
}

// writeConfig writes the daemons' private config under the state dir.
func (l layout) writeConfig(cred *syscall.Credential) error {
	dbusConf, err := dbusConfig(l.busSocket())
	if err != nil {
		return err
	}
	dirs := []string{
		l.state,
		l.config,
		filepath.Join(l.state, "state"),
		filepath.Join(l.state, "data"),
		filepath.Join(l.state, "cache"),
		filepath.Join(l.config, "pipewire"),
		filepath.Join(l.config, "pipewire", "pipewire.conf.d"),
		filepath.Join(l.config, "wireplumber"),
		filepath.Join(l.config, "wireplumber", "main.lua.d"),
		filepath.Join(l.config, "wireplumber", "bluetooth.lua.d"),
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create state dir %s: %w", d, err)
		}
		if err := chown(d, cred); err != nil {
			return err
		}
	}
	files := map[string][]byte{
		l.dbusConfig: dbusConf,
		filepath.Join(l.config, "pipewire", "pipewire.conf.d", "50-pixelstream-sink.conf"):    []byte(pipewireFragment),
		filepath.Join(l.config, "wireplumber", "main.lua.d", "51-pixelstream.lua"):            []byte(wireplumberMain),
		filepath.Join(l.config, "wireplumber", "bluetooth.lua.d", "51-pixelstream-bluez.lua"): []byte(wireplumberBluetooth),
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := chown(path, cred); err != nil {
			return err
		}
	}
	return nil
}

// makeRuntimeDir creates dir 0700 for uid, or accepts an existing empty dir
// of that owner (a caller may have made it), and tightens its mode.
func makeRuntimeDir(dir string, cred *syscall.Credential) error {
	uid := os.Getuid()
	if cred != nil {
		uid = int(cred.Uid)
	}
	err := os.Mkdir(dir, 0o700)
	switch {
	case err == nil:
		if err := chown(dir, cred); err != nil {
			return err
		}
	case errors.Is(err, os.ErrExist):
		fi, err := os.Lstat(dir)
		if err != nil {
			return fmt.Errorf("runtime dir: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("runtime dir %s exists and is not a directory", dir)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
			return fmt.Errorf("runtime dir %s is owned by uid %d, not %d: give a fresh path", dir, st.Uid, uid)
		}
		empty, err := isEmptyDir(dir)
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("runtime dir %s is not empty: give a fresh path (another stack may be using it)", dir)
		}
	default:
		return fmt.Errorf("create runtime dir: %w", err)
	}
	// Mkdir is subject to the umask; the mode is the isolation, so set it exactly.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("runtime dir mode: %w", err)
	}
	return nil
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("runtime dir: %w", err)
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("runtime dir: %w", err)
	}
	return false, nil
}

func chown(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	if err := os.Lchown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("hand %s to uid %d: %w", path, cred.Uid, err)
	}
	return nil
}
