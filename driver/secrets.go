package driver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"syscall"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

// maxSecretScan bounds what checkSecretFiles reads of one file: secrets
// come in small env files and tokens, and the task writes the dir.
const maxSecretScan = 1 << 20

// sessionSecrets are the values of the task config the app must never read.
func sessionSecrets(tc *config.TaskConfig) [][]byte {
	var out [][]byte
	for _, v := range []string{tc.Auth.Token, tc.Gateway.Secret} {
		if v != "" {
			out = append(out, []byte(v))
		}
	}
	return out
}

// checkSecretFiles refuses a task whose secrets/ dir holds one of the
// session's secrets in a file the task user can read: the usual way a job
// hands a secret to the session is a template with env = true, and Nomad
// renders that file for the app to read unless the template says
// otherwise. It reads inside the task dir only (os.Root), never through a
// symlink out of it.
func checkSecretFiles(taskDir string, uid, gid int, groups []int, secrets [][]byte) error {
	if len(secrets) == 0 {
		return nil
	}
	root, err := os.OpenRoot(taskDir)
	if err != nil {
		return fmt.Errorf("open task dir: %w", err)
	}
	defer root.Close()
	var found []error
	err = fs.WalkDir(root.FS(), "secrets", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || !readableBy(info.Mode().Perm(), st, uid, gid, groups) {
			return nil
		}
		f, err := root.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return nil
		}
		b, _ := io.ReadAll(io.LimitReader(f, maxSecretScan))
		f.Close()
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				found = append(found, fmt.Errorf("%s holds a secret of the session's config (auth.token or gateway.secret) and the app's user can read it: render it root-only, with perms = \"0400\" in its template block (the session still gets the value through the task config)", path))
				break
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check the secrets dir: %w", err)
	}
	return errors.Join(found...)
}

// readableBy reports whether a file of this mode and owner is readable by
// uid with the given groups.
func readableBy(mode fs.FileMode, st *syscall.Stat_t, uid, gid int, groups []int) bool {
	switch {
	case int(st.Uid) == uid:
		return mode&0o400 != 0
	case int(st.Gid) == gid || slices.Contains(groups, int(st.Gid)):
		return mode&0o040 != 0
	default:
		return mode&0o004 != 0
	}
}
