package driver

import (
	"net/http"
	"os/user"
	"runtime"
	"strconv"
	"testing"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// dialStreamerAs connects to a session's streamer URL the way its app does:
// from a socket of the task user (the session checks who owns the
// connecting socket). The test runs as root; only this goroutine's thread
// takes the task user's effective uid while it creates the socket.
func dialStreamerAs(t *testing.T, username, url string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	u, err := user.Lookup(username)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	type dialed struct {
		c    *websocket.Conn
		resp *http.Response
		err  error
	}
	ch := make(chan dialed, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked: should restoring root fail, the thread dies with
		// the goroutine instead of serving others as the task user.
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
			ch <- dialed{err: e}
			return
		}
		c, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0)); e == 0 {
			runtime.UnlockOSThread()
		}
		ch <- dialed{c, resp, err}
	}()
	d := <-ch
	return d.c, d.resp, d.err
}
