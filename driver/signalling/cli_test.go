package signalling

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }

// TestMain lets tests (and the benchmark) run the standalone command from
// this test binary: SIGNALLING_MAIN=1 makes it Main(os.Args after "--").
func TestMain(m *testing.M) {
	if os.Getenv("SIGNALLING_MAIN") == "1" {
		args := os.Args[1:]
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		os.Exit(Main(args))
	}
	os.Exit(m.Run())
}

// TestStandaloneCommand runs `signalling` as its own process: it prints the
// addresses it serves, serves them, and exits 0 on SIGTERM.
func TestStandaloneCommand(t *testing.T) {
	cmd := exec.Command(os.Args[0], "--", "--player-listen", "127.0.0.1:0", "--streamer-listen", "127.0.0.1:0",
		"--sfu-listen", "127.0.0.1:0", "--max-players", "2", "--peer-options", `{"iceServers":[]}`)
	cmd.Env = append(os.Environ(), "SIGNALLING_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	lines := bufio.NewScanner(out)
	addrs := map[string]string{}
	for len(addrs) < 3 && lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) == 2 {
			addrs[f[0]] = f[1]
		}
	}
	if !strings.HasPrefix(addrs["player"], "http://127.0.0.1:") || !strings.HasPrefix(addrs["streamer"], "ws://127.0.0.1:") ||
		!strings.HasPrefix(addrs["sfu"], "ws://127.0.0.1:") {
		t.Fatalf("printed addresses: %v", addrs)
	}
	resp, _ := httpGet(t, addrs["player"]+"healthz", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	st := dial(t, "streamer", addrs["streamer"], nil)
	st.expect(wantIdentify)
	st.expect(`{"type":"config","peerConnectionOptions":{"iceServers":[]},"protocolVersion":"1.3.0"}`)
	p := dial(t, "player", strings.Replace(addrs["player"], "http", "ws", 1), nil)
	p.recv()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, reason := p.expectClose()
	if code != 1001 || reason != "server shutting down" {
		t.Fatalf("player closed with %d %q on SIGTERM", code, reason)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("did not exit after SIGTERM")
	}
}

// TestCommandFlags: bad flags exit 2 with a message naming the flag.
func TestCommandFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no addresses", nil, "PlayerListen is required"},
		{"bad peer options", []string{"--player-listen", ":0", "--streamer-listen", ":0", "--peer-options", "{"}, "--peer-options is not valid JSON"},
		{"stray argument", []string{"extra"}, `unexpected argument "extra"`},
		{"bad log level", []string{"--log-level", "loud"}, `--log-level "loud"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			if code := run(tc.args, &stdout, &stderr, nil); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q lacks %q", stderr.String(), tc.want)
			}
		})
	}
}
