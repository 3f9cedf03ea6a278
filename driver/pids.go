package driver

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// sandboxPIDs maps the pids a session reports (its components and app, as
// its own PID namespace numbers them) to the node's pids, which are what an
// operator sees in top and can signal. supervisor is the session
// supervisor's node pid; every process in its PID namespace is looked up
// in the node's /proc by its NSpid line. A pid not found maps to itself.
func sandboxPIDs(supervisor int) map[int]int {
	nsOf := func(pid string) string {
		l, _ := os.Readlink(filepath.Join("/proc", pid, "ns", "pid"))
		return l
	}
	ns := nsOf(strconv.Itoa(supervisor))
	out := map[int]int{}
	if ns == "" {
		return out
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || nsOf(e.Name()) != ns {
			continue
		}
		if host, inner, ok := nsPID(filepath.Join("/proc", e.Name(), "status")); ok {
			out[inner] = host
		}
	}
	return out
}

// nsPID reads a status file's NSpid line: the pid in the node's namespace
// first, the innermost last.
func nsPID(status string) (host, inner int, ok bool) {
	f, err := os.Open(status)
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, found := strings.CutPrefix(sc.Text(), "NSpid:")
		if !found {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			return 0, 0, false
		}
		h, err1 := strconv.Atoi(fields[0])
		i, err2 := strconv.Atoi(fields[len(fields)-1])
		return h, i, err1 == nil && err2 == nil
	}
	return 0, 0, false
}
