package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverProc is the signalling server running as its own process.
type serverProc struct {
	cmd      *exec.Cmd
	player   string // host:port
	streamer string
}

// buildServer compiles bench/signalling/server into dir.
func buildServer(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	pkg := filepath.Join(filepath.Dir(file), "server")
	bin := filepath.Join(dir, "signalling-bench-server")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = pkg
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build the benchmark server: %w", err)
	}
	return bin, nil
}

// startServer runs the server, pinned to serverCPUs when given (taskset), and
// waits for the addresses it prints.
func startServer(bin, serverCPUs, playerListen string) (*serverProc, error) {
	args := []string{bin, "--player-listen", playerListen, "--streamer-listen", "127.0.0.1:0"}
	if serverCPUs != "" {
		args = append([]string{"taskset", "-c", serverCPUs}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	p := &serverProc{cmd: cmd}
	sc := bufio.NewScanner(out)
	for (p.player == "" || p.streamer == "") && sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		addr := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(f[1], "http://"), "ws://"), "/")
		switch f[0] {
		case "player":
			p.player = addr
		case "streamer":
			p.streamer = addr
		}
	}
	if p.player == "" || p.streamer == "" {
		p.stop()
		return nil, fmt.Errorf("server printed no addresses")
	}
	return p, nil
}

func (p *serverProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// rssBytes reads the server's resident set size from /proc.
func (p *serverProc) rssBytes() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", p.cmd.Process.Pid)
}

// cpuSeconds reads the server's user+system CPU time from /proc.
func (p *serverProc) cpuSeconds() (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	rest := string(data)[strings.LastIndexByte(string(data), ')')+2:]
	f := strings.Fields(rest)
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// freePort asks the kernel for a free loopback port.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startupTime measures process start to the first 200 from /healthz.
func startupTime(bin, serverCPUs string) (time.Duration, error) {
	addr, err := freePort()
	if err != nil {
		return 0, err
	}
	args := []string{bin, "--player-listen", addr, "--streamer-listen", "127.0.0.1:0"}
	if serverCPUs != "" {
		args = append([]string{"taskset", "-c", serverCPUs}, args...)
	}
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	for time.Since(start) < 10*time.Second {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return 0, fmt.Errorf("no /healthz answer within 10s")
}
