package session

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
)

// becomeTaskUser turns the supervisor, started as root inside its sandbox,
// into the task user for good, and makes it a process no other process of
// that user can look into: not dumpable (no ptrace, no /proc/<pid>/mem,
// environ or fd for the app, which runs as the same user and holds none of
// the secrets the supervisor keeps), and without new privileges for
// anything it starts (setuid binaries and file capabilities in the
// sandbox's /usr stay inert).
func becomeTaskUser(cfg *sessionapi.Config) error {
	if os.Geteuid() == 0 && cfg.UID != 0 {
		if err := dropTo(cfg.UID, cfg.GID, cfg.Groups); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make the supervisor non-dumpable: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}

// dropTo sets the process's groups, gid and uid (every thread: Go applies
// these to all of them). Without keep-caps, the setuid away from root
// clears every capability.
func dropTo(uid, gid int, groups []int) error {
	if groups == nil {
		groups = []int{}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("become the task user: setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("become the task user: setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("become the task user: setuid %d: %w", uid, err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid || os.Getgid() != gid {
		return fmt.Errorf("become the task user: still uid %d/%d gid %d after setuid %d", os.Getuid(), os.Geteuid(), os.Getgid(), uid)
	}
	return nil
}

// listenState binds the state socket, root's and mode 0600, and answers only
// peers whose credentials say root: /stop and /signal are the driver's.
func listenState(path string) (net.Listener, error) {
	_ = os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on state socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	return &rootOnly{UnixListener: ln.(*net.UnixListener)}, nil
}

// rootOnly accepts connections from uid 0 only (SO_PEERCRED); the file mode
// already keeps others out, this holds even if the mode is ever wrong.
type rootOnly struct{ *net.UnixListener }

func (l *rootOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && uid == 0 {
			return c, nil
		}
		c.Close()
	}
}

// peerUID is the uid of the process at the other end of a unix socket.
func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if serr != nil {
		return -1, serr
	}
	if cred == nil {
		return -1, errors.New("no peer credentials")
	}
	return int(cred.Uid), nil
}
