// Command probe is the project's test app: a stand-in for an app that needs a
// display. It opens $DISPLAY, reports the screen size and its environment, and
// reports every signal it receives, so tests and users can see what the
// session gave it. It accepts Unreal-style flags and ignores those it does not
// know.
//
// Its own flags:
//
//	--probe-exit=N          exit with status N once the display has been checked
//	--probe-ignore=SIG,...  report these signals but do not exit on them
//	--probe-tick=DURATION   print a heartbeat line at this interval
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

func main() {
	exitCode := -1
	ignore := map[string]bool{}
	var tick time.Duration
	for _, a := range os.Args[1:] {
		switch {
		case strings.HasPrefix(a, "--probe-exit="):
			exitCode, _ = strconv.Atoi(strings.TrimPrefix(a, "--probe-exit="))
		case strings.HasPrefix(a, "--probe-ignore="):
			for _, s := range strings.Split(strings.TrimPrefix(a, "--probe-ignore="), ",") {
				ignore[strings.ToUpper(s)] = true
			}
		case strings.HasPrefix(a, "--probe-tick="):
			tick, _ = time.ParseDuration(strings.TrimPrefix(a, "--probe-tick="))
		}
	}

	fmt.Printf("probe: pid=%d uid=%d gid=%d\n", os.Getpid(), os.Getuid(), os.Getgid())
	fmt.Printf("probe: args=%s\n", strings.Join(os.Args[1:], " "))
	for _, k := range []string{"DISPLAY", "XAUTHORITY", "HOME", "NOMAD_TASK_NAME"} {
		fmt.Printf("probe: env %s=%s\n", k, os.Getenv(k))
	}

	// Subscribe before reporting readiness so no signal sent after the
	// "display" line can be missed.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGQUIT)

	conn, err := xgb.NewConn()
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: cannot open display %q: %v\n", os.Getenv("DISPLAY"), err)
		os.Exit(3)
	}
	screen := xproto.Setup(conn).DefaultScreen(conn)
	fmt.Printf("probe: display %s size=%dx%d depth=%d\n", os.Getenv("DISPLAY"), screen.WidthInPixels, screen.HeightInPixels, screen.RootDepth)
	conn.Close()

	if exitCode >= 0 {
		fmt.Printf("probe: exiting with %d\n", exitCode)
		os.Exit(exitCode)
	}

	var ticks <-chan time.Time
	if tick > 0 {
		t := time.NewTicker(tick)
		defer t.Stop()
		ticks = t.C
	}
	n := 0
	for {
		select {
		case s := <-sigs:
			name := signalName(s.(syscall.Signal))
			fmt.Printf("probe: signal %s\n", name)
			if ignore[name] {
				continue
			}
			switch s {
			case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
				fmt.Printf("probe: exiting on %s\n", name)
				os.Exit(0)
			}
		case <-ticks:
			n++
			fmt.Printf("probe: tick %d\n", n)
		}
	}
}

func signalName(s syscall.Signal) string {
	names := map[syscall.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT", syscall.SIGHUP: "SIGHUP",
		syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2", syscall.SIGQUIT: "SIGQUIT"}
	if n, ok := names[s]; ok {
		return n
	}
	return s.String()
}
