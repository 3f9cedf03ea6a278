//go:build e2e

package e2e

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pageFrontend is what the page's frontend op reports.
type pageFrontend struct {
	Frontend *string `json:"frontend"`
	PlayerID *string `json:"playerId"`
}

func (p *page) frontend(t *testing.T) pageFrontend {
	t.Helper()
	var f pageFrontend
	if err := p.c.call(30*time.Second, "frontend", map[string]any{"name": p.name}, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// getJSON GETs a session's REST route into v and returns the status code.
func getJSON(t *testing.T, port int, path string, v any) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return resp.StatusCode
}

// TestFrontends plays a session through each page a user can give it:
//   - the default embedded page (Epic's ue5.7 frontend), driven as Epic's
//     minimal-streamer CI does: poll /api/streamers/DefaultStreamer until
//     it streams, open /?StreamerId=DefaultStreamer, frames arrive; the
//     page holds the playerId the session gave it;
//   - the ue5.5 page (frontend = "ue5.5");
//   - a frontend build laid out as Epic's build writes it (player.html, no
//     index.html), deployed into http_root by a Nomad artifact, loaded at /.
func TestFrontends(t *testing.T) {
	a := startAgent(t)
	br := startChromium(t)
	play := func(t *testing.T, s *session, name, query string) (*page, streamState) {
		t.Helper()
		p, status, _ := br.open(t, name, s.url(false, query))
		if status != http.StatusOK {
			t.Fatalf("page %s answered %d", name, status)
		}
		st := p.play(t)
		if st.Presented <= 0 || st.FramesDecoded <= 0 {
			t.Fatalf("page %s: %s, want frames", name, st)
		}
		return p, st
	}
	run := func(t *testing.T, job, config, task string) *session {
		t.Helper()
		a.nomad("job", "run", "-detach", "-var", "streamer="+bin("streamer"), "-var", "resolution=640x480",
			demoVariantWith(t, job, "", config, task))
		s := &session{job: job, width: 640, height: 480}
		t.Cleanup(func() {
			if t.Failed() {
				s.dumpLogs(t, a)
			}
			a.nomad("job", "stop", "-purge", job)
		})
		return s
	}

	t.Run("ue5.7 page, as Epic's minimal-streamer CI drives it; the player shows its playerId", func(t *testing.T) {
		s := run(t, "frontend-57", "", "")
		s.alloc = a.waitAlloc(s.job, "running").ID
		s.http = a.allocDetail(s.alloc).port("http")
		var info struct {
			StreamerID string `json:"streamerId"`
			Streaming  bool   `json:"streaming"`
		}
		a.eventually(60*time.Second, "/api/streamers/DefaultStreamer to say streaming", func() bool {
			return getJSON(t, s.http, "/api/streamers/DefaultStreamer", &info) == http.StatusOK && info.Streaming
		})
		p, _ := play(t, s, "ci-57", "&StreamerId=DefaultStreamer")
		defer p.close(t)
		var players []struct {
			PlayerID     string `json:"playerId"`
			SubscribedTo string `json:"subscribedTo"`
		}
		if getJSON(t, s.http, "/api/players", &players) != http.StatusOK || len(players) != 1 || players[0].SubscribedTo != "DefaultStreamer" {
			t.Fatalf("/api/players: %+v, want the one page subscribed to DefaultStreamer", players)
		}
		f := p.frontend(t)
		if f.Frontend == nil || *f.Frontend != "ue5.7" {
			t.Fatalf("the default page runs %v, want Epic's ue5.7 frontend", f.Frontend)
		}
		if f.PlayerID == nil || *f.PlayerID != players[0].PlayerID {
			t.Fatalf("the ue5.7 page holds playerId %v, the session calls it %q", f.PlayerID, players[0].PlayerID)
		}
	})

	t.Run("ue5.5 page, chosen by the task config", func(t *testing.T) {
		s := run(t, "frontend-55", `        frontend   = "ue5.5"`, "")
		s.wait(t, a)
		p, _ := play(t, s, "page-55", "")
		defer p.close(t)
		if f := p.frontend(t); f.Frontend == nil || *f.Frontend != "ue5.5" {
			t.Fatalf("frontend = \"ue5.5\" serves %v", f.Frontend)
		}
	})

	t.Run("a frontend build with player.html and no index.html, deployed into http_root, loads at /", func(t *testing.T) {
		url := serveEpicLayout(t)
		s := run(t, "frontend-root", `        http_root  = "local/www"`,
			fmt.Sprintf("      artifact {\n        source      = %q\n        destination = \"local/www\"\n      }\n", url))
		s.wait(t, a)
		p, _ := play(t, s, "page-root", "&StreamerId=DefaultStreamer")
		defer p.close(t)
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", s.http))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("/index.html answered %d: the page at / must be the build's player.html", resp.StatusCode)
		}
	})
}

// serveEpicLayout serves, on loopback, a tar.gz of a frontend build laid
// out as Epic's frontend build writes it: player.html (no index.html) and
// its script, made from the embedded ue5.7 page. It returns the URL a Nomad
// artifact downloads.
func serveEpicLayout(t *testing.T) string {
	t.Helper()
	dist := filepath.Join(repo, "driver", "playerhttp", "webroot", "dist", "ue5.7")
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatalf("the ue5.7 page is not built (make page): %v", err)
	}
	archive := filepath.Join(t.TempDir(), "frontend.tar.gz")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".gz") || strings.HasSuffix(name, ".br") || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "index.html" {
			name = "player.html"
		}
		add(name, data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, archive)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/frontend.tar.gz"
}
