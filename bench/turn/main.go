// Command turn benchmarks the session TURN server against coturn under the
// same load from coturn's own turnutils_uclient on loopback, and prints a
// Markdown table: relayed packets per second, loss, round trip, and server
// CPU microseconds per relayed packet (from /proc/<pid>/stat).
//
//	go run ./bench/turn [-n 5000] [-loads 40,80,120]
//
// Needs the Debian package coturn (turnserver, turnutils_uclient).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pion/stun/v4"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/turn"
)

const (
	secret   = "bench-secret-0123456789abcdef"
	realm    = "pixelstream"
	minPort  = 50000
	maxPort  = 59999
	clkTck   = 100 // USER_HZ on Linux
	listenIP = "127.0.0.1"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(turn.Main(os.Args[2:]))
	}
	n := flag.Int("n", 3000, "messages per client (turnutils_uclient -n); the issue's figure is 15000 (~45 s per run here)")
	loads := flag.String("loads", "40,80,120", "client counts (turnutils_uclient -m), comma separated")
	size := flag.Int("l", 1200, "payload bytes (turnutils_uclient -l)")
	flag.Parse()
	if err := run(*n, *size, *loads); err != nil {
		fmt.Fprintln(os.Stderr, "bench/turn:", err)
		os.Exit(1)
	}
}

type result struct {
	server     string
	clients    int
	sent, recv int
	wall       time.Duration
	lossPct    float64
	rttMs      float64
	cpu        time.Duration
	err        error
}

func run(n, size int, loads string) error {
	for _, bin := range []string{"turnserver", "turnutils_uclient"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found: install the Debian package coturn (apt-get install coturn)", bin)
		}
	}
	self, cleanup, err := servableSelf()
	if err != nil {
		return err
	}
	defer cleanup()

	var counts []int
	for _, f := range strings.Split(loads, ",") {
		m, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || m < 2 {
			return fmt.Errorf("-loads %q: want client counts >= 2, e.g. 40,80,120", loads)
		}
		counts = append(counts, m)
	}
	servers := []struct {
		name string
		cmd  func(port int) *exec.Cmd
	}{
		{"coturn " + coturnVersion(), func(port int) *exec.Cmd {
			return exec.Command("turnserver", "-n", "--listening-ip", listenIP, "--listening-port", strconv.Itoa(port),
				"--relay-ip", listenIP, "--min-port", strconv.Itoa(minPort), "--max-port", strconv.Itoa(maxPort),
				"--use-auth-secret", "--static-auth-secret", secret, "--realm", realm,
				"--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--log-file", "stdout", "--simple-log")
		}},
		{"pixelstream (pion v5 + epoll data plane)", func(port int) *exec.Cmd {
			c := exec.Command(self, "serve", "--listen", fmt.Sprintf("%s:%d", listenIP, port), "--realm", realm,
				"--relay-ports", fmt.Sprintf("%d-%d", minPort, maxPort), "--allow-peer", listenIP+"/32", "--log-level", "warn",
				"--quota-player", "1000", "--quota-session", "1000", "--quota-lifetime", "100000")
			c.Env = append(os.Environ(), "PIXELSTREAM_TURN_SECRET="+secret)
			return c
		}},
	}
	var results []result
	for _, m := range counts {
		for i, srv := range servers {
			port := 34780 + i
			r := measure(srv.name, srv.cmd(port), port, m, n, size)
			if r.err != nil {
				fmt.Fprintf(os.Stderr, "%s, %d clients: %v\n", srv.name, m, r.err)
			}
			results = append(results, r)
		}
	}
	printTable(os.Stdout, results, n, size)
	return nil
}

// measure starts a server, drives it with turnutils_uclient, and stops it.
func measure(name string, cmd *exec.Cmd, port, clients, n, size int) result {
	r := result{server: name, clients: clients}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	asNobody(cmd)
	if err := cmd.Start(); err != nil {
		r.err = fmt.Errorf("start server: %w", err)
		return r
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	if err := waitSTUN(port, 15*time.Second); err != nil {
		r.err = fmt.Errorf("server not answering STUN: %w; log:\n%s", err, logs.String())
		return r
	}
	cpu0, err := cpuTime(cmd.Process.Pid)
	if err != nil {
		r.err = err
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	uc := exec.CommandContext(ctx, "turnutils_uclient", "-y", "-c", "-m", strconv.Itoa(clients), "-z", "1",
		"-n", strconv.Itoa(n), "-l", strconv.Itoa(size), "-W", secret, "-u", "bench", "-p", strconv.Itoa(port), listenIP)
	start := time.Now()
	out, err := uc.CombinedOutput()
	r.wall = time.Since(start)
	cpu1, cerr := cpuTime(cmd.Process.Pid)
	if err != nil {
		r.err = fmt.Errorf("turnutils_uclient: %w: %s", err, tail(out))
		return r
	}
	if cerr != nil {
		r.err = cerr
		return r
	}
	r.cpu = cpu1 - cpu0
	if err := parseUclient(out, &r); err != nil {
		r.err = err
	}
	return r
}

var (
	reTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$`)
	reLost   = regexp.MustCompile(`Total lost packets (\d+) \(([\d.]+)%\)`)
	reRTT    = regexp.MustCompile(`Average round trip delay ([\d.]+) ms`)
)

func parseUclient(out []byte, r *result) error {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := reTotals.FindStringSubmatch(line); m != nil && !strings.Contains(line, "msz=") {
			r.sent, _ = strconv.Atoi(m[1])
			r.recv, _ = strconv.Atoi(m[2])
			found++
		}
		if m := reLost.FindStringSubmatch(line); m != nil {
			r.lossPct, _ = strconv.ParseFloat(m[2], 64)
			found++
		}
		if m := reRTT.FindStringSubmatch(line); m != nil {
			r.rttMs, _ = strconv.ParseFloat(m[1], 64)
			found++
		}
	}
	if found < 3 {
		return fmt.Errorf("turnutils_uclient output not understood: %s", tail(out))
	}
	return nil
}

// cpuTime is the process's user+system time (all threads) from /proc.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time: %w", err)
	}
	// Fields after the command name (which may hold spaces) start at ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(utime+stime) * time.Second / clkTck, nil
}

// waitSTUN polls the port with STUN binding requests until one is answered.
func waitSTUN(port int, limit time.Duration) error {
	conn, err := net.ListenPacket("udp4", listenIP+":0")
	if err != nil {
		return err
	}
	defer conn.Close()
	to := &net.UDPAddr{IP: net.ParseIP(listenIP), Port: port}
	deadline := time.Now().Add(limit)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := conn.WriteTo(req.Raw, to); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := conn.ReadFrom(buf); err == nil && stun.IsMessage(buf[:n]) {
			return nil
		}
	}
	return errors.New("timed out")
}

// asNobody runs servers as an unprivileged user when the bench runs as root,
// as they would run in a session.
func asNobody(cmd *exec.Cmd) {
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

// servableSelf copies this executable where an unprivileged user can run it
// (go run builds into a private directory).
func servableSelf() (string, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "turn-bench-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o755); err != nil {
		cleanup()
		return "", nil, err
	}
	dst := filepath.Join(dir, "turn-bench")
	src, err := os.Open(exe)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		cleanup()
		return "", nil, err
	}
	if err := out.Close(); err != nil {
		cleanup()
		return "", nil, err
	}
	return dst, cleanup, nil
}

func coturnVersion() string {
	out, _ := exec.Command("dpkg-query", "-W", "-f", "${Version}", "coturn").Output()
	if v := strings.TrimSpace(string(out)); v != "" {
		return v
	}
	return ""
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	return s
}

func printTable(w io.Writer, rs []result, n, size int) {
	fmt.Fprintf(w, "TURN relay, loopback, %d CPUs, `turnutils_uclient -y -c -m M -z 1 -n %d -l %d` (client-to-client: each message crosses two allocations)\n\n",
		runtime.NumCPU(), n, size)
	fmt.Fprintln(w, "| server | clients (M) | offered pkt/s | relayed pkt/s | loss | avg round trip | server CPU µs / relayed pkt | server CPU % |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		if r.err != nil {
			fmt.Fprintf(w, "| %s | %d | - | - | - | - | - | failed: %s |\n", r.server, r.clients, strings.ReplaceAll(firstLine(r.err.Error()), "|", "/"))
			continue
		}
		secs := r.wall.Seconds()
		perPkt := 0.0
		if r.recv > 0 {
			perPkt = float64(r.cpu.Microseconds()) / float64(r.recv)
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.2f%% | %.3f ms | %.2f | %.0f%% |\n", r.server, r.clients,
			float64(r.sent)/secs, float64(r.recv)/secs, r.lossPct, r.rttMs, perPkt, 100*r.cpu.Seconds()/secs)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
