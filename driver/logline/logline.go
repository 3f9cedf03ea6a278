// Package logline turns a child process's output into prefixed lines on a
// shared writer (the task's stderr), and remembers the last lines so that a
// component that dies can be reported with what it said last.
package logline

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// maxLine bounds one line so a component that never prints a newline cannot
// grow the buffer without limit.
const maxLine = 4096

// Writer prefixes every line written to it and keeps the last few lines.
type Writer struct {
	mu     sync.Mutex
	out    io.Writer
	prefix string
	buf    []byte
	tail   []string
	keep   int
	filter func(line string) bool
}

// New returns a Writer that writes "<prefix>line\n" to out for every line and
// remembers the last keep lines. out may be nil to only remember.
func New(out io.Writer, prefix string, keep int) *Writer {
	return &Writer{out: out, prefix: prefix, keep: keep}
}

// WithFilter sets a predicate deciding which lines reach out; every line is
// still remembered for failure reports. It returns w for chaining.
func (w *Writer) WithFilter(f func(line string) bool) *Writer {
	w.filter = f
	return w
}

// Write implements io.Writer. It never fails: losing a log line must not
// break the child writing it.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLine {
				w.emit(string(w.buf))
				w.buf = w.buf[:0]
			}
			break
		}
		w.emit(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// Flush emits a trailing partial line.
func (w *Writer) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = w.buf[:0]
	}
}

func (w *Writer) emit(line string) {
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return
	}
	if w.keep > 0 {
		if len(w.tail) == w.keep {
			copy(w.tail, w.tail[1:])
			w.tail = w.tail[:w.keep-1]
		}
		w.tail = append(w.tail, line)
	}
	if w.out != nil && (w.filter == nil || w.filter(line)) {
		_, _ = io.WriteString(w.out, w.prefix+line+"\n")
	}
}

// Tail returns the remembered lines, oldest first.
func (w *Writer) Tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.tail...)
}
