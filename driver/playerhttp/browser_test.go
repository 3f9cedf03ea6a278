package playerhttp

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// TestBrowserPlayerPage loads each embedded player page (Epic's ue5.7 and
// ue5.5 frontends) in Debian's headless Chromium against a running server and
// a stand-in for the Unreal streamer, and checks the real frontend code
// connects, lists the streamers and subscribes, and that the ue5.7 frontend
// keeps the playerId the server forwards with the streamer's offer. Set
// PIXELSTREAM_SKIP_BROWSER=1 to skip it.
func TestBrowserPlayerPage(t *testing.T) {
	if os.Getenv("PIXELSTREAM_SKIP_BROWSER") == "1" {
		t.Skip("PIXELSTREAM_SKIP_BROWSER=1")
	}
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	const build = "npm --prefix web ci && npm --prefix web run build (then rerun go test)"
	if !BundleEmbedded() {
		t.Fatalf("the player page bundle is not embedded in this build; run: %s", build)
	}
	if _, err := os.Stat(filepath.Join(repo, "web", "node_modules", "playwright-core")); err != nil {
		t.Fatalf("web/node_modules/playwright-core is missing; run: %s", build)
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatalf("/usr/bin/chromium is missing; run: apt-get install -y --no-install-recommends chromium (listed in .ci/apt-signalling.txt)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH: %v", err)
	}

	for _, frontend := range config.Frontends {
		t.Run(frontend, func(t *testing.T) { browserPlayerPage(t, repo, node, frontend) })
	}
}

func browserPlayerPage(t *testing.T, repo, node, frontend string) {
	s := startServer(t, Config{Frontend: frontend})
	// A stand-in for the Unreal streamer: a plain WebSocket client of ours.
	st := newStreamer(t, s, "FakeStreamer")

	cmd := exec.Command(node, filepath.Join(repo, "web", "test", "browser.mjs"), httpURL(s, "/"), "FakeStreamer")
	cmd.Dir = repo
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start browser driver: %v", err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var result struct {
		OK           bool     `json:"ok"`
		Error        string   `json:"error"`
		IDs          []string `json:"ids"`
		AutoSelected string   `json:"autoSelected"`
		Frontend     string   `json:"frontend"`
	}
	select {
	case line, ok := <-lines:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("browser driver ended without a result; its log:\n%s", stderr.String())
		}
		if err := json.Unmarshal([]byte(line), &result); err != nil || !result.OK {
			t.Fatalf("browser driver: %s\nits log:\n%s", line, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("browser driver gave no result in 60s; its log:\n%s", stderr.String())
	}
	if len(result.IDs) != 1 || result.IDs[0] != "FakeStreamer" || result.AutoSelected != "FakeStreamer" {
		t.Fatalf("frontend saw streamers %v and selected %q", result.IDs, result.AutoSelected)
	}
	if result.Frontend != frontend {
		t.Fatalf("the page is Epic's %q frontend, want %q", result.Frontend, frontend)
	}
	// The frontend's subscribe reached the stand-in streamer as playerConnected.
	got := st.recv()
	if !strings.HasPrefix(got, `{"type":"playerConnected","playerId":"`) || !strings.HasSuffix(got, `","dataChannel":true,"sfu":false}`) {
		t.Fatalf("stand-in streamer got %s, want playerConnected", got)
	}
	status := s.Status()
	if len(status.Players) != 1 || status.Players[0].StreamerID != "FakeStreamer" {
		t.Fatalf("server status: %+v", status)
	}
	if frontend == config.FrontendUE57 {
		// The streamer's offer reaches the page with its playerId, which
		// the 5.7 frontend keeps (webRtcController.playerId) to match its
		// stats with the streamer's.
		pid := status.Players[0].ID
		st.send(`{"type":"offer","playerId":"` + pid + `","sdp":"v=0\r\n"}`)
		_, _ = stdin.Write([]byte("playerId\n"))
		var shown struct {
			PlayerID string `json:"playerId"`
		}
		select {
		case line := <-lines:
			if err := json.Unmarshal([]byte(line), &shown); err != nil || shown.PlayerID != pid {
				t.Fatalf("the 5.7 frontend holds playerId %q (%s), want %q; its log:\n%s", shown.PlayerID, line, pid, stderr.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("browser driver gave no playerId in 60s; its log:\n%s", stderr.String())
		}
	}
	_, _ = stdin.Write([]byte("done\n"))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("browser driver: %v\n%s", err, stderr.String())
	}
}
