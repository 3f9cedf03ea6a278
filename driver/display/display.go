// Package display runs a session's virtual X display: one Xvfb per session,
// on a display number Xvfb picks itself (-displayfd), reachable only through
// its unix socket and only with the session's X cookie.
package display

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/logline"
)

// Config describes the display to start.
type Config struct {
	// XvfbPath is the Xvfb binary (a bare name is looked up on PATH).
	XvfbPath string
	Width    int
	Height   int
	Depth    int
	// AuthFile is where the X authority file is written; the app gets it as
	// XAUTHORITY. It must be in a directory only the task user can read.
	AuthFile string
	// Log receives Xvfb's output, one prefixed line at a time.
	Log    io.Writer
	Logger hclog.Logger
	// ExtraArgs are appended to Xvfb's command line (tests use them to
	// start a display without an extension).
	ExtraArgs []string
}

// Display is a running Xvfb.
type Display struct {
	number   int
	authFile string
	cmd      *exec.Cmd
	log      *logline.Writer
	done     chan struct{}
	exitErr  error
	logger   hclog.Logger
}

// stopGrace is how long Xvfb gets to remove its lock and socket after SIGTERM.
const stopGrace = 5 * time.Second

// Start launches Xvfb and returns once it accepts connections, which is when
// it writes its display number to the -displayfd pipe.
func Start(ctx context.Context, cfg Config) (*Display, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	bin, err := exec.LookPath(cfg.XvfbPath)
	if err != nil {
		return nil, fmt.Errorf("find Xvfb %q: %w (install the xvfb package or set the plugin's xvfb_path)", cfg.XvfbPath, err)
	}
	if err := writeAuthority(cfg.AuthFile); err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start Xvfb: displayfd pipe: %w", err)
	}
	defer r.Close()

	d := &Display{authFile: cfg.AuthFile, done: make(chan struct{}), logger: cfg.Logger,
		log: logline.New(cfg.Log, "[xvfb] ", 20).WithFilter(quietXvfb)}
	d.cmd = exec.Command(bin,
		"-displayfd", "3",
		"-screen", "0", fmt.Sprintf("%dx%dx%d", cfg.Width, cfg.Height, cfg.Depth),
		"-auth", cfg.AuthFile,
		// No TCP. The abstract-namespace socket stays on although any
		// process in the network namespace can reach it (the cookie in
		// AuthFile keeps them out): with -displayfd it is how Xvfb detects a
		// display number already in use (no lock file is written in that
		// mode, and the filesystem socket is silently replaced), and X
		// clients try it before the file socket. A session in its own mount
		// namespace (private /tmp) that turned it off would leave its
		// display's abstract name free for another process in the node's
		// network namespace to take, and the app would connect there.
		"-nolisten", "tcp",
		// Keep the server's state when the last client disconnects: the app
		// may reconnect (crash handler, launcher scripts).
		"-noreset",
	)
	d.cmd.Args = append(d.cmd.Args, cfg.ExtraArgs...)
	d.cmd.ExtraFiles = []*os.File{w}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	// Its own process group so a signal meant for the app never reaches it;
	// Pdeathsig so a supervisor killed outright does not leave it behind.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start Xvfb: %w", err)
	}
	w.Close() // only Xvfb holds the write end now: EOF means it died before it was ready
	go d.wait()

	numCh := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		numCh <- strings.TrimSpace(line)
	}()
	select {
	case line := <-numCh:
		n, err := strconv.Atoi(line)
		if err != nil {
			<-d.done
			return nil, fmt.Errorf("start Xvfb: it exited before its display was ready (%v): %s", d.exitErr, strings.Join(d.log.Tail(), " | "))
		}
		d.number = n
	case <-ctx.Done():
		_ = d.Stop(context.Background())
		return nil, fmt.Errorf("start Xvfb: display not ready: %w", ctx.Err())
	}
	cfg.Logger.Debug("display ready", "display", d.Name(), "pid", d.cmd.Process.Pid)
	return d, nil
}

// quietXvfb drops Xvfb's routine chatter about keymaps, and the socket
// errors -displayfd prints while it skips display numbers already taken, so
// the task's stderr carries only what an operator may need.
func quietXvfb(line string) bool {
	for _, noise := range []string{"_XSERVTrans", "XKEYBOARD keymap compiler", "Could not resolve keysym", "Warning:          Type", "Errors from xkbcomp are not fatal"} {
		if strings.Contains(line, noise) {
			return false
		}
	}
	return !strings.HasPrefix(line, ">")
}

func (d *Display) wait() {
	err := d.cmd.Wait()
	d.log.Flush()
	if err == nil {
		err = errors.New("exited with status 0")
	}
	d.exitErr = err
	close(d.done)
}

// Number is the X display number.
func (d *Display) Number() int { return d.number }

// Name is the DISPLAY value, ":N".
func (d *Display) Name() string { return ":" + strconv.Itoa(d.number) }

// Pid is Xvfb's process id.
func (d *Display) Pid() int { return d.cmd.Process.Pid }

// Env is what a client needs to open the display.
func (d *Display) Env() []string {
	return []string{"DISPLAY=" + d.Name(), "XAUTHORITY=" + d.authFile}
}

// Done is closed when Xvfb has exited.
func (d *Display) Done() <-chan struct{} { return d.done }

// ExitReason says why Xvfb exited, with its last output; valid after Done.
func (d *Display) ExitReason() string {
	msg := d.exitErr.Error()
	if tail := d.log.Tail(); len(tail) > 0 {
		msg += ": " + strings.Join(tail[max(0, len(tail)-5):], " | ")
	}
	return msg
}

// Stop terminates Xvfb (SIGTERM, then SIGKILL after a grace period) and
// removes its lock file and socket if it could not.
func (d *Display) Stop(ctx context.Context) error {
	select {
	case <-d.done:
	default:
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-d.done:
		case <-t.C:
			_ = d.cmd.Process.Kill()
			<-d.done
		case <-ctx.Done():
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	}
	if d.number > 0 || d.cmd.ProcessState != nil {
		Cleanup(d.number)
	}
	_ = os.Remove(d.authFile)
	return nil
}

// lockPath and socketPath are where the X server keeps its lock file and
// socket; they are fixed by the X protocol's conventions.
func lockPath(n int) string   { return fmt.Sprintf("/tmp/.X%d-lock", n) }
func socketPath(n int) string { return filepath.Join(SocketDir, "X"+strconv.Itoa(n)) }

// SocketDir is where X clients look for display sockets.
const SocketDir = "/tmp/.X11-unix"

// Cleanup removes display n's socket and lock file when no live X server owns
// them, which happens only when Xvfb was killed with SIGKILL. It is safe to
// call for a display number that is now someone else's: a socket that still
// accepts connections and a lock held by a live process are left alone.
func Cleanup(n int) {
	if c, err := net.DialTimeout("unix", socketPath(n), time.Second); err == nil {
		c.Close()
		return
	}
	_ = os.Remove(socketPath(n))
	if b, err := os.ReadFile(lockPath(n)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && processAlive(pid) {
			return
		}
		_ = os.Remove(lockPath(n))
	}
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// EnsureSocketDir creates /tmp/.X11-unix as root-owned and world-writable
// with the sticky bit, as X clients and servers expect. Without it the first
// non-root Xvfb would create it as its own and lock every other user out.
func EnsureSocketDir() error {
	if err := os.Mkdir(SocketDir, os.ModeSticky|0o777); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", SocketDir, err)
	}
	if err := os.Chmod(SocketDir, os.ModeSticky|0o777); err != nil {
		return fmt.Errorf("chmod %s: %w", SocketDir, err)
	}
	return nil
}

// Version reports the installed Xvfb's version as its package manager knows
// it; Xvfb itself has no version flag.
func Version(xvfbPath string) (string, error) {
	bin, err := exec.LookPath(xvfbPath)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(bin); err == nil {
		bin = real
	}
	if out, err := exec.Command("dpkg-query", "-S", bin).Output(); err == nil {
		pkg, _, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
		if v, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output(); err == nil && len(v) > 0 {
			return string(v), nil
		}
	}
	if out, err := exec.Command("rpm", "-qf", "--qf", "%{VERSION}-%{RELEASE}", bin).Output(); err == nil && len(out) > 0 {
		return string(out), nil
	}
	return "unknown", nil
}
