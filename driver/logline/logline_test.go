package logline

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriter(t *testing.T) {
	cases := []struct {
		name   string
		writes []string
		out    string
		tail   []string
	}{
		{"lines split across writes", []string{"hel", "lo\nwor", "ld\n"}, "[x] hello\n[x] world\n", []string{"hello", "world"}},
		{"blank lines and CR dropped", []string{"a\r\n\n\nb\n"}, "[x] a\n[x] b\n", []string{"a", "b"}},
		{"tail keeps last two", []string{"1\n2\n3\n"}, "[x] 1\n[x] 2\n[x] 3\n", []string{"2", "3"}},
		{"overlong line is cut", []string{strings.Repeat("z", maxLine+1)}, "[x] " + strings.Repeat("z", maxLine+1) + "\n", []string{strings.Repeat("z", maxLine+1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			w := New(&out, "[x] ", 2)
			for _, s := range c.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if out.String() != c.out {
				t.Fatalf("out = %q, want %q", out.String(), c.out)
			}
			if got := strings.Join(w.Tail(), "|"); got != strings.Join(c.tail, "|") {
				t.Fatalf("tail = %q, want %q", got, c.tail)
			}
		})
	}
}

func TestFilterStillRemembers(t *testing.T) {
	var out bytes.Buffer
	w := New(&out, "", 5).WithFilter(func(l string) bool { return strings.HasPrefix(l, "E") })
	_, _ = w.Write([]byte("info\nError: x\npartial"))
	w.Flush()
	if out.String() != "Error: x\n" {
		t.Fatalf("out = %q", out.String())
	}
	if got := strings.Join(w.Tail(), "|"); got != "info|Error: x|partial" {
		t.Fatalf("tail = %q", got)
	}
}
