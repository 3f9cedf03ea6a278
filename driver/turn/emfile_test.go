package turn

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const emfileSecret = "emfile-secret-0123456789abcdef"

// Case 13: the TCP accept loop survives running out of file descriptors.
// A child process (this test binary) runs the server with RLIMIT_NOFILE
// lowered and every descriptor taken; this process connects, the child's
// accept fails with EMFILE, the child frees descriptors, and the same
// connection (and a new one) then allocate over TCP.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	if os.Getenv("TURN_EMFILE_CHILD") == "1" {
		emfileChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptSurvivesEMFILE$")
	cmd.Env = append(os.Environ(), "TURN_EMFILE_CHILD=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("child: %v\n%s", err, stderr.String())
		}
	}()
	lines := bufio.NewScanner(stdout)
	expect := func(prefix string) string {
		t.Helper()
		for lines.Scan() {
			if l := lines.Text(); strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix)
			}
		}
		t.Fatalf("child ended before %q: %v\n%s", prefix, lines.Err(), stderr.String())
		return ""
	}
	addr := netip.MustParseAddrPort(expect("addr "))
	expect("full")
	conn, err := net.Dial("tcp", addr.String()) // the kernel completes it; the child cannot accept it yet
	if err != nil {
		t.Fatalf("dial while the child is out of descriptors: %v", err)
	}
	defer conn.Close()
	if n := expect("freed accept_errors="); n == "0" {
		t.Fatalf("the child's accept never failed with EMFILE; the test proves nothing\n%s", stderr.String())
	}
	s := &Server{udpAddr: addr}
	for name, c := range map[string]net.Conn{"connection made during EMFILE": conn, "new connection": mustDial(t, addr)} {
		u := fmt.Sprintf("%d:p", time.Now().Add(time.Hour).Unix())
		cl := newClientOn(t, s, turn.NewSTUNConn(c), ICEServer{Username: u, Credential: restPassword([]byte(emfileSecret), u)})
		if _, err := cl.allocate(t); err != nil {
			t.Errorf("%s: TCP allocation after EMFILE: %v\n%s", name, err, stderr.String())
		}
	}
}

func mustDial(t *testing.T, addr netip.AddrPort) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// emfileChild is the child's side; it reports on stdout and ends when
// stdin closes.
func emfileChild() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	reg := prometheus.NewRegistry()
	s, err := New(Config{Listen: "127.0.0.1:0", Secret: []byte(emfileSecret), Registry: reg,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr})})
	if err != nil {
		fail(err)
	}
	if err := s.Start(); err != nil {
		fail(err)
	}
	defer s.Close()
	fmt.Printf("addr %s\n", s.Addr())
	lim := syscall.Rlimit{Cur: 256, Max: 256}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		fail(err)
	}
	lim.Max = old.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fail(err)
	}
	var fillers []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fillers = append(fillers, f)
	}
	fmt.Println("full")
	deadline := time.Now().Add(20 * time.Second)
	for counterValue(s.metrics.acceptErrors) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	errs := counterValue(s.metrics.acceptErrors)
	for _, f := range fillers {
		f.Close()
	}
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	fmt.Printf("freed accept_errors=%d\n", int(errs))
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
