package driver

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestTaskDirsNeverFollowTaskLinks: what a task (or a restarted one) left in
// its task dir where the driver prepares local/home never makes root change
// something outside: a symlink or a file is refused with an error naming
// the path, and the link's target keeps its owner and mode.
func TestTaskDirsNeverFollowTaskLinks(t *testing.T) {
	cases := []struct {
		name  string
		plant func(t *testing.T, taskDir, target string)
		want  string // "" = prepared
	}{
		{"fresh task dir", func(*testing.T, string, string) {}, ""},
		{"home is a symlink out", func(t *testing.T, taskDir, target string) {
			must(t, os.Symlink(target, filepath.Join(taskDir, "local", "home")))
		}, "local/home is not a directory"},
		{"home is a symlink inside", func(t *testing.T, taskDir, _ string) {
			must(t, os.Mkdir(filepath.Join(taskDir, "local", "elsewhere"), 0o755))
			must(t, os.Symlink("elsewhere", filepath.Join(taskDir, "local", "home")))
		}, "local/home is not a directory"},
		{"home is a file", func(t *testing.T, taskDir, _ string) {
			must(t, os.WriteFile(filepath.Join(taskDir, "local", "home"), nil, 0o644))
		}, "local/home is not a directory"},
		{"local is a symlink out", func(t *testing.T, taskDir, target string) {
			must(t, os.Remove(filepath.Join(taskDir, "local")))
			must(t, os.Symlink(target, filepath.Join(taskDir, "local")))
		}, "local/home"},
		{"X socket dir is a symlink out", func(t *testing.T, taskDir, target string) {
			must(t, os.Symlink(target, filepath.Join(taskDir, "tmp", ".X11-unix")))
		}, "tmp/.X11-unix is not a directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			taskDir := filepath.Join(base, "task")
			target := filepath.Join(base, "root-owned")
			for _, d := range []string{taskDir, filepath.Join(taskDir, "local"), filepath.Join(taskDir, "tmp"), target} {
				must(t, os.Mkdir(d, 0o755))
			}
			c.plant(t, taskDir, target)
			_, err := makeTaskDirs(taskDir, 4242, 4242)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("prepare: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("prepare: %v, want an error naming %q", err, c.want)
			}
			var st syscall.Stat_t
			must(t, syscall.Stat(target, &st))
			if st.Uid != 0 || st.Mode&0o7777 != 0o755 {
				t.Fatalf("the link's target is now uid %d mode %o", st.Uid, st.Mode&0o7777)
			}
			if c.want == "" {
				must(t, syscall.Stat(filepath.Join(taskDir, "local", "home"), &st))
				if st.Uid != 4242 || st.Mode&0o777 != 0o700 {
					t.Fatalf("home is uid %d mode %o, want the task user's 0700", st.Uid, st.Mode&0o777)
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
