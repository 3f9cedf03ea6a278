package signallingcmd

import (
	"bufio"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

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
	resp, err := http.Get(addrs["player"] + "healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	st := dial(t, addrs["streamer"])
	expect(t, st, `{"type":"identify"}`)
	expect(t, st, `{"type":"config","peerConnectionOptions":{"iceServers":[]},"protocolVersion":"1.3.0"}`)
	p := dial(t, strings.Replace(addrs["player"], "http", "ws", 1))
	expect(t, p, `{"type":"config","peerConnectionOptions":{"iceServers":[]},"protocolVersion":"1.3.0"}`)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = p.SetReadDeadline(time.Now().Add(waitFor))
	_, _, err = p.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1001 || ce.Text != "server shutting down" {
		t.Fatalf("player closed with %v on SIGTERM, want 1001 \"server shutting down\"", err)
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
		{"no addresses", nil, "--player-listen is required"},
		{"no streamer address", []string{"--player-listen", ":0"}, "--streamer-listen is required"},
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

// waitFor is how long a test waits for something that should happen at once.
const waitFor = 5 * time.Second

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

func expect(t *testing.T, ws *websocket.Conn, want string) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	_, data, err := ws.ReadMessage()
	if err != nil || string(data) != want {
		t.Fatalf("got %s (%v), want %s", data, err, want)
	}
}
