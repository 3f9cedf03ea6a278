package display

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

func startDisplay(t *testing.T, w, h, depth int) *Display {
	t.Helper()
	if err := EnsureSocketDir(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := Start(ctx, Config{XvfbPath: "Xvfb", Width: w, Height: h, Depth: depth,
		AuthFile: filepath.Join(t.TempDir(), "Xauthority"), Log: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	return d
}

func TestDisplaySizeAndAuth(t *testing.T) {
	cases := []struct{ w, h, depth int }{{1280, 720, 24}, {640, 480, 16}}
	for _, c := range cases {
		d := startDisplay(t, c.w, c.h, c.depth)

		t.Setenv("XAUTHORITY", d.authFile)
		conn, err := xgb.NewConnDisplay(d.Name())
		if err != nil {
			t.Fatalf("connect with cookie: %v", err)
		}
		s := xproto.Setup(conn).DefaultScreen(conn)
		conn.Close()
		if int(s.WidthInPixels) != c.w || int(s.HeightInPixels) != c.h || int(s.RootDepth) != c.depth {
			t.Fatalf("screen = %dx%dx%d, want %dx%dx%d", s.WidthInPixels, s.HeightInPixels, s.RootDepth, c.w, c.h, c.depth)
		}

		// Without the cookie the display must refuse the client.
		t.Setenv("XAUTHORITY", filepath.Join(t.TempDir(), "none"))
		if conn, err := xgb.NewConnDisplay(d.Name()); err == nil {
			conn.Close()
			t.Fatalf("display %s accepted a client without the session's cookie", d.Name())
		}
	}
}

func TestTwoDisplaysGetDistinctNumbers(t *testing.T) {
	a := startDisplay(t, 640, 480, 24)
	b := startDisplay(t, 640, 480, 24)
	if a.Number() == b.Number() {
		t.Fatalf("both displays got %s", a.Name())
	}
}

func TestStopLeavesNothing(t *testing.T) {
	for _, kill := range []bool{false, true} {
		d := startDisplay(t, 640, 480, 24)
		n := d.Number()
		if _, err := os.Stat(socketPath(n)); err != nil {
			t.Fatalf("socket of running display: %v", err)
		}
		if kill {
			// SIGKILL leaves the lock and socket behind; Stop must clean up.
			_ = d.cmd.Process.Kill()
			<-d.Done()
		}
		if err := d.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{lockPath(n), socketPath(n), d.authFile} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("kill=%v: %s left behind (%v)", kill, p, err)
			}
		}
		if processAlive(d.Pid()) {
			t.Errorf("Xvfb pid %d still alive", d.Pid())
		}
	}
}

func TestStartErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing binary", Config{XvfbPath: "/nonexistent/Xvfb", Width: 640, Height: 480, Depth: 24}, "install the xvfb package"},
		{"bad depth dies early", Config{XvfbPath: "Xvfb", Width: 640, Height: 480, Depth: 7}, "exited before its display was ready"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.AuthFile = filepath.Join(t.TempDir(), "Xauthority")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			d, err := Start(ctx, c.cfg)
			if err == nil {
				_ = d.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

func TestCleanupSparesLiveOwner(t *testing.T) {
	d := startDisplay(t, 640, 480, 24)
	Cleanup(d.Number())
	if _, err := os.Stat(socketPath(d.Number())); err != nil {
		t.Fatalf("Cleanup removed a live display's socket: %v", err)
	}
}

func TestHasExtension(t *testing.T) {
	cases := []struct {
		name  string
		extra []string
		glx   bool
	}{
		{"default Xvfb offers GLX", nil, true},
		{"GLX disabled", []string{"-extension", "GLX"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := EnsureSocketDir(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			d, err := Start(ctx, Config{XvfbPath: "Xvfb", Width: 640, Height: 480, Depth: 24,
				AuthFile: filepath.Join(t.TempDir(), "Xauthority"), Log: &bytes.Buffer{}, ExtraArgs: c.extra})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Stop(context.Background())
			got, err := d.HasExtension("GLX")
			if err != nil || got != c.glx {
				t.Fatalf("HasExtension(GLX) = %v, %v; want %v", got, err, c.glx)
			}
			if ok, err := d.HasExtension("XTEST"); err != nil || !ok {
				t.Fatalf("HasExtension(XTEST) = %v, %v; want true", ok, err)
			}
		})
	}
}
