// Command audio measures the per-session audio stack: time from Start to
// ready (all four daemons answering), time to Stop, and the resident memory
// of the stack's processes. It prints a Markdown table.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/audio"
)

const (
	runs   = 10
	goalMs = 300
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/audio:", err)
		os.Exit(1)
	}
}

type sample struct {
	ready, stop time.Duration
	readyIn     map[string]time.Duration
	rssKiB      map[string]int
}

func run() error {
	info := audio.Detect()
	if !info.Available {
		fmt.Printf("## Audio stack\n\nnot measured: missing %v; %s\n", info.Missing, info.Hint)
		return nil
	}
	cred, who, err := credential()
	if err != nil {
		return err
	}
	var samples []sample
	for i := 0; i < runs; i++ {
		s, err := once(cred)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		samples = append(samples, s)
	}
	report(samples, info.PipeWireVersion, who)
	return nil
}

// credential runs the stack as a non-root user when the bench runs as root,
// as the session supervisor does in production.
func credential() (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		u, _ := user.Current()
		return nil, u.Username, nil
	}
	for _, name := range []string{"pixelstream", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, name, nil
	}
	return nil, "", fmt.Errorf("running as root and found no user pixelstream or nobody to run the stack as")
}

func once(cred *syscall.Credential) (sample, error) {
	base, err := os.MkdirTemp("/tmp", "psab-")
	if err != nil {
		return sample{}, err
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		return sample{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	st, err := audio.Start(ctx, audio.Config{
		RuntimeDir: filepath.Join(base, "rt"),
		StateDir:   filepath.Join(base, "state"),
		Log:        io.Discard,
		Credential: cred,
	})
	if err != nil {
		return sample{}, err
	}
	smp := sample{ready: time.Since(t0), readyIn: map[string]time.Duration{}, rssKiB: map[string]int{}}
	for _, c := range st.Components() {
		smp.readyIn[c.Name] = c.ReadyIn
		smp.rssKiB[c.Name] = rssKiB(c.PID)
	}
	t1 := time.Now()
	if err := st.Stop(ctx); err != nil {
		return sample{}, err
	}
	smp.stop = time.Since(t1)
	return smp, nil
}

func rssKiB(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

func median[T int | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func report(samples []sample, version, who string) {
	col := func(f func(sample) time.Duration) []time.Duration {
		var out []time.Duration
		for _, s := range samples {
			out = append(out, f(s))
		}
		return out
	}
	ready := col(func(s sample) time.Duration { return s.ready })
	stop := col(func(s sample) time.Duration { return s.stop })
	names := []string{audio.CompDBus, audio.CompPipeWire, audio.CompWirePlumber, audio.CompPipeWirePulse}

	fmt.Printf("## Audio stack (PipeWire %s, %d runs, as user %s, %d CPUs)\n\n", version, len(samples), who, runtime.NumCPU())
	fmt.Println("| Measure | Median | Min | Max |")
	fmt.Println("|---|---|---|---|")
	row := func(name string, v []time.Duration) {
		fmt.Printf("| %s | %s | %s | %s |\n", name, ms(median(v)), ms(slices.Min(v)), ms(slices.Max(v)))
	}
	row("Start to ready (all four)", ready)
	for _, n := range names {
		row(n+": spawn to ready", col(func(s sample) time.Duration { return s.readyIn[n] }))
	}
	row("Stop (all down, dir removed)", stop)

	fmt.Println()
	fmt.Println("| Process | RSS (median) |")
	fmt.Println("|---|---|")
	var totals []int
	for _, s := range samples {
		t := 0
		for _, n := range names {
			t += s.rssKiB[n]
		}
		totals = append(totals, t)
	}
	for _, n := range names {
		var v []int
		for _, s := range samples {
			v = append(v, s.rssKiB[n])
		}
		fmt.Printf("| %s | %.1f MiB |\n", n, float64(median(v))/1024)
	}
	fmt.Printf("| **stack total** | **%.1f MiB** |\n", float64(median(totals))/1024)

	verdict := "met"
	if median(ready) >= goalMs*time.Millisecond {
		verdict = "NOT met"
	}
	fmt.Printf("\nGoal: ready under %d ms (median): %s.\n", goalMs, verdict)
}
