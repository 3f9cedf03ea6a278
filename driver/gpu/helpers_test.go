package gpu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSMI replays recorded nvidia-smi output: each key is the argument list
// joined with spaces, each value a file under testdata. Unknown invocations
// fail like nvidia-smi does for an unsupported query.
func fakeSMI(t *testing.T, dir string, outputs map[string]string) RunFunc {
	t.Helper()
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		if name != "nvidia-smi" {
			return nil, fmt.Errorf("unexpected command %s", name)
		}
		key := strings.Join(args, " ")
		f, ok := outputs[key]
		if !ok {
			return nil, fmt.Errorf("nvidia-smi %s: exit status 2 (not recorded)", key)
		}
		b, err := os.ReadFile(filepath.Join("testdata", dir, f))
		if err != nil {
			t.Fatalf("read recorded output: %v", err)
		}
		return b, nil
	}
}

// missingSMI behaves like exec on a node without nvidia-smi.
func missingSMI(ctx context.Context, name string, args ...string) ([]byte, error) {
	return nil, &exec.Error{Name: name, Err: exec.ErrNotFound}
}

// failingSMI behaves like nvidia-smi on a node whose driver is wedged.
func failingSMI(ctx context.Context, name string, args ...string) ([]byte, error) {
	return nil, errors.New("exit status 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver")
}

const queryArgs = "--query-gpu=" + smiQueryFields + " --format=csv,noheader"

func detect(t *testing.T, dir string, run RunFunc, env map[string]string) Info {
	t.Helper()
	d := Detector{Root: filepath.Join("testdata", dir, "root"), Run: run}
	if env != nil {
		d.Getenv = func(k string) string { return env[k] }
	}
	info, err := d.Detect(context.Background())
	if err != nil {
		t.Fatalf("Detect(%s): %v", dir, err)
	}
	return info
}
