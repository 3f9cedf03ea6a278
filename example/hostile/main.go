// Command hostile is a hostile app for the isolation tests: run as a
// session's app next to a victim session, it tries what a malicious Unreal
// build (or one taken over through its data channel) would try against the
// victim, the node and its own session's secrets, and prints one JSON line
// per attempt: {"attempt": ..., "blocked": true|false, "detail": ...}.
// It is not a fake of anything: every attempt is the real system call.
//
// The test tells it where the victim is (host paths and pids, as a process
// on the node would find them) with flags; it never gets a secret.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

type result struct {
	Attempt string `json:"attempt"`
	Blocked bool   `json:"blocked"`
	Detail  string `json:"detail"`
}

var out = bufio.NewWriter(os.Stdout)

func report(attempt string, blocked bool, detail string) {
	if len(detail) > 300 {
		detail = detail[:300]
	}
	b, _ := json.Marshal(result{attempt, blocked, detail})
	fmt.Fprintf(out, "HOSTILE %s\n", b)
	out.Flush()
}

// readAttempt reports a read of path as blocked when it fails.
func readAttempt(name, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		report(name, true, err.Error())
		return
	}
	report(name, false, fmt.Sprintf("read %d bytes of %s: %q", len(b), path, truncate(b, 120)))
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func main() {
	var (
		victimPids    = flag.String("victim-pids", "", "comma-separated node pids of the victim session's processes")
		victimTaskDir = flag.String("victim-task-dir", "", "the victim's task dir on the node")
		victimRuntime = flag.String("victim-runtime-dir", "", "the victim's runtime dir on the node")
		victimAlloc   = flag.String("victim-alloc-dir", "", "the victim's shared alloc dir on the node")
		victimStream  = flag.String("victim-streamer", "", "host:port of the victim's streamer WebSocket (from its task attributes)")
		ownRuntime    = flag.String("own-runtime-dir", "", "this session's runtime dir")
		symlinkTarget = flag.String("symlink-home-to", "", "replace local/home with a symlink to this path, then exit 1 (Nomad restarts the task)")
		hold          = flag.Duration("hold", time.Hour, "how long to stay up after the attempts")
	)
	flag.Parse()
	if *ownRuntime == "" {
		// The session's X cookie is in <runtime dir>/user/.
		if x := os.Getenv("XAUTHORITY"); x != "" {
			*ownRuntime = filepath.Dir(filepath.Dir(x))
		}
	}

	if *symlinkTarget != "" {
		// The restart attack: the driver (root) prepares local/home again
		// on the restart; if it followed this link it would hand the target
		// to this task's user.
		home := "/local/home"
		_ = os.RemoveAll(home)
		if err := os.Symlink(*symlinkTarget, home); err != nil {
			report("plant symlink local/home -> "+*symlinkTarget, true, err.Error())
		} else {
			report("plant symlink local/home -> "+*symlinkTarget, false, "planted; exiting so Nomad restarts the task")
		}
		os.Exit(1)
	}

	for _, p := range strings.Split(*victimPids, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || pid <= 0 {
			continue
		}
		attackPid(pid)
	}
	if *victimTaskDir != "" {
		for _, rel := range []string{"secrets/gateway.env", "secrets/player.env", "local", "executor.out"} {
			readAttempt("read victim task dir "+rel, filepath.Join(*victimTaskDir, rel))
		}
		_, err := os.ReadDir(*victimTaskDir)
		report("list victim task dir", err != nil, errString(err))
	}
	if *victimAlloc != "" {
		_, err := os.ReadDir(*victimAlloc)
		report("list victim alloc dir", err != nil, errString(err))
	}
	if *victimRuntime != "" {
		readAttempt("read victim session.json (player token, gateway secret)", filepath.Join(*victimRuntime, "session.json"))
		readAttempt("read victim Xauthority", filepath.Join(*victimRuntime, "user", "Xauthority"))
		stopOverSocket("POST /stop to victim state socket", filepath.Join(*victimRuntime, "session.sock"))
		dialUnix("connect to victim PipeWire socket", filepath.Join(*victimRuntime, "user", "audio", "pipewire-0"))
	}
	// The X display: other sessions' displays are on abstract sockets of the
	// node's network namespace (host mode); opening one takes its cookie.
	for n := 0; n < 4; n++ {
		xAttempt(fmt.Sprintf("open X display :%d through its abstract socket, no cookie", n), "unix", "@/tmp/.X11-unix/X"+strconv.Itoa(n), nil)
		xAttempt(fmt.Sprintf("open X display :%d through its abstract socket, a guessed cookie", n), "unix", "@/tmp/.X11-unix/X"+strconv.Itoa(n), []byte("0123456789abcdef"))
		xAttempt(fmt.Sprintf("open X display :%d over TCP", n), "tcp", fmt.Sprintf("127.0.0.1:%d", 6000+n), nil)
	}
	if *victimStream != "" {
		hijackStreamer(*victimStream)
	}
	// Its own session's secrets: the supervisor (pid 1 here) holds them.
	readAttempt("read own supervisor's environment (/proc/1/environ)", "/proc/1/environ")
	readAttempt("read own supervisor's memory (/proc/1/mem)", "/proc/1/mem")
	ptraceAttempt("ptrace own supervisor", 1)
	if *ownRuntime != "" {
		readAttempt("read own session.json", filepath.Join(*ownRuntime, "session.json"))
		stopOverSocket("POST /stop to own state socket", filepath.Join(*ownRuntime, "session.sock"))
	}
	readAttempt("read own secrets/player.env (its player token)", "/secrets/player.env")
	var leaked []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "NOMAD_SECRETS_DIR" && (strings.Contains(k, "SECRET") || strings.Contains(k, "TOKEN")) {
			leaked = append(leaked, k)
		}
	}
	report("secret variables in own environment", len(leaked) == 0, strings.Join(leaked, ","))
	// Other sessions' and the node's private places.
	readAttempt("read the node's /etc/shadow", "/etc/shadow")
	if *ownRuntime != "" {
		base := filepath.Dir(*ownRuntime)
		entries, err := os.ReadDir(base)
		report("list every session's runtime dir ("+base+")", err != nil || onlyOwn(entries, *ownRuntime), fmt.Sprintf("%d entries, %s", len(entries), errString(err)))
	}
	err := syscall.Setuid(0)
	report("setuid(0)", err != nil, errString(err))
	err = syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, "")
	report("mount", err != nil, errString(err))
	report("done", true, "")

	time.Sleep(*hold)
}

func errString(err error) string {
	if err == nil {
		return "succeeded"
	}
	return err.Error()
}

// onlyOwn: listing the runtime dirs' base is harmless when the sandbox
// shows nothing but this session's own dir there.
func onlyOwn(entries []os.DirEntry, own string) bool {
	for _, e := range entries {
		if filepath.Join(filepath.Dir(own), e.Name()) != own {
			return false
		}
	}
	return true
}

func attackPid(pid int) {
	p := strconv.Itoa(pid)
	if inChildPIDNamespace() {
		// Every pid this sandbox's /proc shows is one of this session's own:
		// the victim's processes cannot be reached under any number.
		if _, err := os.Stat("/proc/" + p); err == nil {
			report("reach victim pid "+p, true, "pid "+p+" here is one of this session's own processes")
			return
		}
	}
	readAttempt("read victim /proc/"+p+"/environ", "/proc/"+p+"/environ")
	readAttempt("read victim /proc/"+p+"/cmdline", "/proc/"+p+"/cmdline")
	readAttempt("read victim /proc/"+p+"/mem", "/proc/"+p+"/mem")
	err := syscall.Kill(pid, 0)
	report("signal victim pid "+p, err != nil, errString(err))
	ptraceAttempt("ptrace victim pid "+p, pid)
}

func ptraceAttempt(name string, pid int) {
	err := syscall.PtraceAttach(pid)
	if err == nil {
		_ = syscall.PtraceDetach(pid)
	}
	report(name, err != nil, errString(err))
}

func dialUnix(name, path string) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if c != nil {
		c.Close()
	}
	report(name, err != nil, errString(err))
}

func stopOverSocket(name, path string) {
	cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	resp, err := cl.Post("http://session/stop", "application/json", strings.NewReader(`{"signal":"SIGKILL"}`))
	if err != nil {
		report(name, true, err.Error())
		return
	}
	resp.Body.Close()
	report(name, resp.StatusCode != http.StatusAccepted, resp.Status)
}

// hijackStreamer tries to pose as the victim's streamer: without its key, and
// with a guessed one.
func hijackStreamer(addr string) {
	for _, path := range []string{"/", "/0123456789abcdef0123456789abcdef"} {
		d := websocket.Dialer{HandshakeTimeout: 3 * time.Second}
		c, resp, err := d.Dial("ws://"+addr+path, nil)
		if err == nil {
			_ = c.WriteJSON(map[string]any{"type": "endpointId", "id": "DefaultStreamer"})
			c.Close()
			report("connect to victim streamer port as a streamer (path "+path+")", false, "upgraded")
			continue
		}
		detail := err.Error()
		if resp != nil {
			detail = resp.Status
		}
		report("connect to victim streamer port as a streamer (path "+path+")", true, detail)
	}
}

// inChildPIDNamespace reports whether this process has a PID namespace of
// its own (its NSpid line lists more than one pid).
func inChildPIDNamespace() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			return len(strings.Fields(rest)) > 1
		}
	}
	return false
}

// xAttempt opens an X connection the way libxcb does and reports it as
// blocked unless the server answers the setup with Success.
func xAttempt(name, network, addr string, cookie []byte) {
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		report(name, true, err.Error())
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	authName := ""
	if cookie != nil {
		authName = "MIT-MAGIC-COOKIE-1"
	}
	pad := func(n int) int { return (4 - n%4) % 4 }
	req := []byte{'l', 0, 11, 0, 0, 0, byte(len(authName)), byte(len(authName) >> 8), byte(len(cookie)), byte(len(cookie) >> 8), 0, 0}
	req = append(req, authName...)
	req = append(req, make([]byte, pad(len(authName)))...)
	req = append(req, cookie...)
	req = append(req, make([]byte, pad(len(cookie)))...)
	if _, err := c.Write(req); err != nil {
		report(name, true, err.Error())
		return
	}
	reply := make([]byte, 8)
	if _, err := io.ReadFull(c, reply); err != nil {
		report(name, true, "connection closed: "+err.Error())
		return
	}
	switch reply[0] {
	case 1:
		report(name, false, "X server accepted the connection")
	case 0:
		reason := make([]byte, int(reply[1]))
		_, _ = io.ReadFull(c, reason)
		report(name, true, "X server refused: "+strings.TrimSpace(string(reason)))
	default:
		report(name, true, fmt.Sprintf("X server answered %d (authenticate)", reply[0]))
	}
}
