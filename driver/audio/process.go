package audio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxLineBytes cuts pathological log lines so one cannot exhaust memory.
const maxLineBytes = 4096

// ringLines is how many recent output lines a component keeps for error reports.
const ringLines = 20

// ring keeps the last lines a component printed.
type ring struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

func newRing(n int) *ring { return &ring{lines: make([]string, n)} }

func (r *ring) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
}

// last returns the kept lines, oldest first.
func (r *ring) last() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]string(nil), r.lines[:r.next]...)
	}
	return append(append([]string(nil), r.lines[r.next:]...), r.lines[:r.next]...)
}

// lineWriter serializes prefixed lines from all components onto one writer.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lineWriter) writeLine(name, line string) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	// A failing log writer must not stop the component; there is nowhere else to report it.
	_, _ = io.WriteString(lw.w, "["+name+"] "+line+"\n")
}

// proc is one run of a component's program.
type proc struct {
	comp    *component
	cmd     *exec.Cmd
	pid     int
	started time.Time
	// exited is closed once the process is reaped and its output drained.
	exited chan struct{}
	err    error // Wait's result; read only after exited is closed
	// intentional marks a process the stack itself is stopping, so its exit
	// is not treated as a failure.
	intentional atomic.Bool
}

// procSpec is what spawn needs to run one component.
type procSpec struct {
	comp  *component
	bin   string
	args  []string
	env   []string
	cred  *syscall.Credential
	extra []*os.File // become fds 3, 4, ... in the child
	out   *lineWriter
	// onExit runs after exited is closed (in the waiter goroutine).
	onExit func(*proc)
}

func spawn(spec procSpec) (*proc, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	cmd := exec.Command(spec.bin, spec.args...)
	cmd.Env = spec.env
	cmd.Dir = "/"
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.ExtraFiles = spec.extra
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a terminal's Ctrl-C aimed at the supervisor must
		// not take the daemons down out of order.
		Setpgid: true,
		// If the supervisor dies without stopping us, the daemons go too:
		// nothing of a session may outlive it.
		Pdeathsig:  syscall.SIGKILL,
		Credential: spec.cred,
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	w.Close()
	p := &proc{comp: spec.comp, cmd: cmd, pid: cmd.Process.Pid, started: time.Now(), exited: make(chan struct{})}
	drained := make(chan struct{})
	go pump(r, spec.comp.name, spec.comp.ring, spec.out, drained)
	go func() {
		err := cmd.Wait()
		// A grandchild holding the pipe would keep it open forever; the
		// lines that matter (the dying process's last words) are already
		// in the pipe, so a short bound loses nothing useful.
		t := time.NewTimer(2 * time.Second)
		select {
		case <-drained:
		case <-t.C:
			r.Close()
		}
		t.Stop()
		p.err = err
		close(p.exited)
		if spec.onExit != nil {
			spec.onExit(p)
		}
	}()
	return p, nil
}

func pump(r *os.File, name string, rg *ring, out *lineWriter, done chan<- struct{}) {
	defer close(done)
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLineBytes)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			text := strings.TrimRight(string(line), "\r\n")
			if errors.Is(err, bufio.ErrBufferFull) {
				text += " [line cut]"
				// Drop the rest of the long line.
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = br.ReadSlice('\n')
				}
			}
			rg.add(text)
			out.writeLine(name, text)
		}
		if err != nil {
			return
		}
	}
}

// done reports whether the process has exited, without blocking.
func (p *proc) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// describeExit says how a process ended, for restart reasons and errors.
func (p *proc) describeExit() string {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("pid %d killed by signal %s", p.pid, ws.Signal())
		}
		return fmt.Sprintf("pid %d exited with status %d", p.pid, ee.ExitCode())
	}
	if p.err != nil {
		return fmt.Sprintf("pid %d: %v", p.pid, p.err)
	}
	return fmt.Sprintf("pid %d exited with status 0", p.pid)
}

// stop ends the process: SIGTERM, then SIGKILL after timeout. It returns an
// error only when the process cannot be made to exit at all.
func (p *proc) stop(timeout time.Duration) (killed bool, err error) {
	p.intentional.Store(true)
	if p.done() {
		return false, nil
	}
	// Process.Signal refuses a reaped process, so a recycled pid is never hit.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return false, nil
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	t.Reset(timeout)
	select {
	case <-p.exited:
		return true, nil
	case <-t.C:
		return true, fmt.Errorf("%s (pid %d) still running %v after SIGKILL", p.comp.name, p.pid, timeout)
	}
}
