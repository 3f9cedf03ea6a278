package audio

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	toneRate = 48000
	toneFreq = 440.0
)

// sine returns seconds of a mono s16le tone at half amplitude.
func sine(seconds float64) []byte {
	n := int(seconds * toneRate)
	buf := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		v := int16(0.5 * math.MaxInt16 * math.Sin(2*math.Pi*toneFreq*float64(i)/toneRate))
		binary.LittleEndian.PutUint16(buf[2*i:], uint16(v))
	}
	return buf
}

// analyse returns the RMS and the frequency estimated from zero crossings of
// a mono s16le chunk.
func analyse(chunk []byte) (rms, freq float64) {
	n := len(chunk) / 2
	if n == 0 {
		return 0, 0
	}
	var sum float64
	crossings := 0
	prev := int16(binary.LittleEndian.Uint16(chunk))
	for i := 0; i < n; i++ {
		v := int16(binary.LittleEndian.Uint16(chunk[2*i:]))
		sum += float64(v) * float64(v)
		if (prev < 0) != (v < 0) {
			crossings++
		}
		prev = v
	}
	return math.Sqrt(sum / float64(n)), float64(crossings) / 2 / (float64(n) / toneRate)
}

func TestAppHearsPipeWireAndItsToneReachesTheMonitor(t *testing.T) {
	s := startStack(t, credFor(t, testUser), nil)

	info := mustRunApp(t, s, "pactl", "info")
	for _, want := range []string{
		"Server Name: PulseAudio (on PipeWire ",
		"Default Sink: " + SinkName,
		"Server String: unix:" + s.RuntimeDir() + "/pulse/native",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("pactl info lacks %q:\n%s", want, info)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := appCmd(ctx, s, s.cred, "parec", "--device="+SinkName+".monitor", "--raw",
		"--format=s16le", "--rate=48000", "--channels=1", "--latency-msec=20")
	recOut, err := rec.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Start(); err != nil {
		t.Fatalf("parec: %v", err)
	}
	defer func() { _ = rec.Process.Kill(); _ = rec.Wait() }()

	// The recorder may connect after a short tone has ended, so the tone is
	// played again and again until it is heard or the deadline passes.
	tone := sine(0.5)
	go func() {
		for ctx.Err() == nil {
			play := appCmd(ctx, s, s.cred, "pacat", "--playback", "--raw",
				"--format=s16le", "--rate=48000", "--channels=1")
			play.Stdin = strings.NewReader(string(tone))
			if out, err := play.CombinedOutput(); err != nil && ctx.Err() == nil {
				t.Errorf("pacat: %v\n%s", err, out)
				return
			}
		}
	}()

	chunk := make([]byte, 2*toneRate/10) // 100 ms
	r := bufio.NewReader(recOut)
	loudest := 0.0
	for {
		if _, err := io.ReadFull(r, chunk); err != nil {
			t.Fatalf("capture ended before the tone was heard (loudest chunk RMS %.0f): %v", loudest, err)
		}
		rms, freq := analyse(chunk)
		loudest = max(loudest, rms)
		// Half amplitude is an RMS of ~11585; a chunk partly filled with the
		// tone is quieter and its frequency estimate off, so only a full one counts.
		if rms > 8000 && math.Abs(freq-toneFreq) < 0.05*toneFreq {
			t.Logf("monitor captured the tone: RMS %.0f, %.0f Hz", rms, freq)
			cancel()
			return
		}
	}
}

func TestTwoStacksAreIsolated(t *testing.T) {
	credA, credB := credFor(t, testUser), credFor(t, secondUser)
	a := startStack(t, credA, nil)
	b := startStack(t, credB, nil)

	t.Run("distinct servers", func(t *testing.T) {
		for _, s := range []*testStack{a, b} {
			info := mustRunApp(t, s, "pactl", "info")
			if !strings.Contains(info, "Server String: unix:"+s.RuntimeDir()+"/pulse/native") {
				t.Errorf("stack in %s: pactl info names another server:\n%s", s.RuntimeDir(), info)
			}
		}
		// A sink made in one stack must not appear in the other.
		mustRunApp(t, a, "pactl", "load-module", "module-null-sink", "sink_name=only_in_a")
		if sinks := mustRunApp(t, a, "pactl", "list", "short", "sinks"); !strings.Contains(sinks, "only_in_a") {
			t.Fatalf("stack A does not list the sink it just made:\n%s", sinks)
		}
		sinks := mustRunApp(t, b, "pactl", "list", "short", "sinks")
		if strings.Contains(sinks, "only_in_a") || !strings.Contains(sinks, SinkName) {
			t.Errorf("stack B lists:\n%s\nwant its own %s and not A's only_in_a", sinks, SinkName)
		}
	})

	t.Run("private dirs", func(t *testing.T) {
		for _, s := range []*testStack{a, b} {
			fi, err := os.Stat(s.RuntimeDir())
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("%s has mode %v, want 0700", s.RuntimeDir(), fi.Mode().Perm())
			}
			want := uint32(os.Getuid())
			if s.cred != nil {
				want = s.cred.Uid
			}
			if got := fi.Sys().(*syscall.Stat_t).Uid; got != want {
				t.Errorf("%s is owned by uid %d, want %d", s.RuntimeDir(), got, want)
			}
		}
	})

	t.Run("daemons see only private paths", func(t *testing.T) {
		for _, s := range []*testStack{a, b} {
			for _, c := range s.Components() {
				raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", c.PID))
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				env := map[string]string{}
				for _, kv := range strings.Split(string(raw), "\x00") {
					if k, v, ok := strings.Cut(kv, "="); ok {
						env[k] = v
					}
				}
				private := map[string]string{
					"XDG_RUNTIME_DIR": s.RuntimeDir(), "PIPEWIRE_RUNTIME_DIR": s.RuntimeDir(),
					"HOME": s.home, "XDG_CONFIG_HOME": s.home, "XDG_STATE_HOME": s.home,
				}
				for k, dir := range private {
					if v := env[k]; v != dir && !strings.HasPrefix(v, dir+"/") {
						t.Errorf("%s of %s has %s=%q, want it inside %s", c.Name, s.RuntimeDir(), k, v, dir)
					}
				}
				if bus := env["DBUS_SESSION_BUS_ADDRESS"]; c.Name != CompDBus && !strings.Contains(bus, s.RuntimeDir()+"/") {
					t.Errorf("%s uses bus %q, want the stack's own", c.Name, bus)
				}
			}
		}
	})

	t.Run("neither reaches the other", func(t *testing.T) {
		if credA == nil {
			t.Skip("needs root to run the two stacks as two users")
		}
		// Each check runs a client as one stack's user against the other
		// stack's environment; the same client as the owner must succeed,
		// so a refusal means isolation and not a broken client.
		type probe struct {
			name string
			args []string
		}
		probes := []probe{
			{"pulse socket", []string{"pactl", "info"}},
			{"pipewire socket", []string{"pw-metadata", "-n", "default"}},
			{"session bus", []string{"dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
				"/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames"}},
		}
		pairs := []struct {
			name            string
			target          *testStack
			owner, intruder *syscall.Credential
		}{
			{"B into A", a, credA, credB},
			{"A into B", b, credB, credA},
		}
		for _, pair := range pairs {
			for _, p := range probes {
				t.Run(pair.name+"/"+p.name, func(t *testing.T) {
					if out, err := runApp(pair.target, pair.owner, p.args[0], p.args[1:]...); err != nil {
						t.Fatalf("the owner itself cannot use its %s: %v\n%s", p.name, err, out)
					}
					out, err := runApp(pair.target, pair.intruder, p.args[0], p.args[1:]...)
					if err == nil {
						t.Errorf("uid %d reached the other stack's %s:\n%s", pair.intruder.Uid, p.name, out)
						return
					}
					t.Logf("refused as expected: %s", strings.TrimSpace(out))
				})
			}
		}
	})
}

func TestKilledComponentComesBack(t *testing.T) {
	cases := []struct {
		component string
		// also restarted with it; their pids change too
		withIt []string
	}{
		{CompDBus, nil},
		{CompPipeWire, []string{CompWirePlumber, CompPipeWirePulse}},
		{CompWirePlumber, nil},
		{CompPipeWirePulse, nil},
	}
	for _, tc := range cases {
		t.Run(tc.component, func(t *testing.T) {
			restarted := make(chan string, 8)
			s := startStack(t, credFor(t, testUser), func(c *Config) {
				c.OnRestart = func(component string, attempt int, reason string) {
					restarted <- component + "|" + reason
				}
			})
			before := map[string]int{}
			for _, c := range s.Components() {
				before[c.Name] = c.PID
			}
			if before[tc.component] <= 0 {
				// kill(0) would hit the test's own process group.
				t.Fatalf("%s has no pid: %v", tc.component, before)
			}
			if err := syscall.Kill(before[tc.component], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			select {
			case ev := <-restarted:
				name, reason, _ := strings.Cut(ev, "|")
				if name != tc.component || !strings.Contains(reason, "killed") {
					t.Fatalf("restart reported as %q, want %s killed", ev, tc.component)
				}
			case err := <-s.Failed():
				t.Fatalf("stack failed instead of restarting: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatalf("%s was not restarted; components: %+v", tc.component, s.Components())
			}

			info := mustRunApp(t, s, "pactl", "info")
			if !strings.Contains(info, "Default Sink: "+SinkName) {
				t.Errorf("pactl info after the restart:\n%s", info)
			}
			if tc.component == CompDBus {
				// The app's bus address must survive a new bus on the same socket.
				mustRunApp(t, s, "dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
					"/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames")
			}
			changed := append([]string{tc.component}, tc.withIt...)
			for _, c := range s.Components() {
				if c.State != StateRunning || c.PID == 0 {
					t.Errorf("%s after the restart: %+v, want running", c.Name, c)
				}
				moved := c.PID != before[c.Name]
				if want := contains(changed, c.Name); moved != want {
					t.Errorf("%s pid %d -> %d: restarted=%v, want %v", c.Name, before[c.Name], c.PID, moved, want)
				}
				if wantRestarts := b2i(c.Name == tc.component); c.Restarts != wantRestarts {
					t.Errorf("%s restarts = %d, want %d", c.Name, c.Restarts, wantRestarts)
				}
			}
			select {
			case ev := <-restarted:
				t.Errorf("unexpected second restart %q", ev)
			default:
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestPipeWireKilledPastBudgetFailsTheStack(t *testing.T) {
	const budget = 2
	restarted := make(chan int, 8)
	s := startStack(t, credFor(t, testUser), func(c *Config) {
		c.MaxRestarts = budget
		c.OnRestart = func(component string, attempt int, reason string) { restarted <- attempt }
	})
	for i := 1; i <= budget+1; i++ {
		if err := syscall.Kill(pidOf(t, s.Stack, CompPipeWire), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if i > budget {
			break
		}
		select {
		case got := <-restarted:
			if got != i {
				t.Fatalf("restart attempt %d reported as %d", i, got)
			}
		case err := <-s.Failed():
			t.Fatalf("failed after %d kills, budget is %d: %v", i, budget, err)
		case <-time.After(60 * time.Second):
			t.Fatalf("no restart after kill %d", i)
		}
	}
	var err error
	select {
	case err = <-s.Failed():
	case <-time.After(60 * time.Second):
		t.Fatalf("no failure after %d kills; components: %+v", budget+1, s.Components())
	}
	var ce *ComponentError
	if !errors.As(err, &ce) || ce.Component != CompPipeWire {
		t.Fatalf("Failed() = %v, want a *ComponentError for pipewire", err)
	}
	// The error carries pipewire's own last words (or says it had none).
	var lastLine string
	for _, l := range strings.Split(s.log.String(), "\n") {
		if strings.HasPrefix(l, "[pipewire] ") {
			lastLine = l
		}
	}
	want := "(no output)"
	if lastLine != "" {
		want = lastLine
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error lacks pipewire's last output %q:\n%v", want, err)
	}
	if !strings.Contains(err.Error(), "killed") {
		t.Errorf("error does not say how pipewire died: %v", err)
	}
	for _, c := range s.Components() {
		if c.Name == CompPipeWire && c.State != StateFailed {
			t.Errorf("pipewire state %q, want %q", c.State, StateFailed)
		}
	}
}

func TestStopLeavesNothingBehind(t *testing.T) {
	restarted := make(chan struct{}, 1)
	s := startStack(t, credFor(t, testUser), func(c *Config) {
		c.OnRestart = func(string, int, string) { restarted <- struct{}{} }
	})
	var pids []int
	for _, c := range s.Components() {
		pids = append(pids, c.PID)
	}
	// A replaced process must be gone as well as the current ones.
	if err := syscall.Kill(pidOf(t, s.Stack, CompWirePlumber), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarted:
	case <-time.After(60 * time.Second):
		t.Fatal("wireplumber not restarted")
	}
	for _, c := range s.Components() {
		pids = append(pids, c.PID)
	}
	if got := processesWithEnv(t, s.RuntimeDir()); len(got) != len(specs) {
		t.Fatalf("before Stop, /proc shows %d stack processes %v, want %d: the scan would miss leftovers", len(got), got, len(specs))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Stop (kill 0: %v)", pid, err)
		}
	}
	if left := processesWithEnv(t, s.RuntimeDir()); len(left) > 0 {
		t.Errorf("processes of the stack left after Stop: %v", left)
	}
	if _, err := os.Stat(s.RuntimeDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("runtime dir after Stop: %v, want it gone", err)
	}
	for _, c := range s.Components() {
		if c.State != StateStopped || c.PID != 0 {
			t.Errorf("%s after Stop: %+v", c.Name, c)
		}
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}
