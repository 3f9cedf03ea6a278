package audio

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Component names, as used in log prefixes, errors and Components().
const (
	CompDBus          = "dbus"
	CompPipeWire      = "pipewire"
	CompWirePlumber   = "wireplumber"
	CompPipeWirePulse = "pipewire-pulse"
)

// launch is everything needed for one run of a component.
type launch struct {
	bin   string
	args  []string
	extra []*os.File
	// started runs after the process was spawned (or failed to, then ok is
	// false), to close the parent's ends of pipes handed to the child.
	started func(ok bool)
	ready   func(ctx context.Context, p *proc) error
}

type componentSpec struct {
	name   string
	launch func(s *Stack) (launch, error)
	// dependents are restarted along with this component: they are clients
	// of it that exit or stay broken when it goes (WirePlumber exits when
	// PipeWire does; pipewire-pulse lingers without a core). D-Bus has none:
	// the others keep working when the bus restarts on the same socket.
	dependents []string
}

// specs lists the components in start order.
var specs = []componentSpec{
	{name: CompDBus, launch: launchDBus},
	{name: CompPipeWire, launch: launchPipeWire, dependents: []string{CompWirePlumber, CompPipeWirePulse}},
	{name: CompWirePlumber, launch: launchWirePlumber},
	{name: CompPipeWirePulse, launch: launchPipeWirePulse},
}

func launchDBus(s *Stack) (launch, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return launch{}, fmt.Errorf("address pipe: %w", err)
	}
	return launch{
		bin: s.cfg.Bins.DBusDaemon,
		// fd 3 is the first of ExtraFiles. --nosyslog keeps warnings on
		// stderr, where the session's log can show them.
		args:  []string{"--config-file=" + s.lay.dbusConfig, "--nofork", "--nosyslog", "--print-address=3"},
		extra: []*os.File{w},
		started: func(ok bool) {
			w.Close()
			if !ok {
				r.Close() // ready, which reads it, will not run
			}
		},
		ready: func(ctx context.Context, p *proc) error {
			defer r.Close()
			addr, err := readPrintedAddress(ctx, p, r)
			if err != nil {
				return err
			}
			appAddr, err := busAddressFor(addr, s.lay.busSocket())
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.busAddr = appAddr
			s.mu.Unlock()
			return pollUntil(ctx, p, dbusAnswers(s.lay.busSocket()))
		},
	}, nil
}

// readPrintedAddress waits for the line dbus-daemon prints once it listens.
func readPrintedAddress(ctx context.Context, p *proc, r *os.File) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	select {
	case res := <-ch:
		if res.line == "" {
			return "", fmt.Errorf("no bus address printed: %v", res.err)
		}
		return res.line, nil
	case <-p.exited:
		return "", fmt.Errorf("%s before printing its address", p.describeExit())
	case <-ctx.Done():
		return "", fmt.Errorf("no bus address printed: %w", ctx.Err())
	}
}

// busAddressFor checks the printed address is the private socket and drops
// its guid: a restarted bus has a new guid on the same socket, and clients
// refuse a bus whose guid differs from the one in their address, while the
// app's environment is fixed when it starts.
func busAddressFor(printed, socket string) (string, error) {
	first, _, _ := strings.Cut(printed, ";")
	transport, params, ok := strings.Cut(first, ":")
	if !ok || transport != "unix" {
		return "", fmt.Errorf("dbus printed address %q: want a unix address", printed)
	}
	var kept []string
	path := ""
	for _, kv := range strings.Split(params, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "guid":
			continue
		case "path":
			p, err := url.PathUnescape(v)
			if err != nil {
				return "", fmt.Errorf("dbus printed address %q: %w", printed, err)
			}
			path = p
		}
		kept = append(kept, kv)
	}
	if path != socket {
		return "", fmt.Errorf("dbus printed address %q: want path=%s (the private bus socket)", printed, socket)
	}
	return "unix:" + strings.Join(kept, ","), nil
}

func launchPipeWire(s *Stack) (launch, error) {
	return launch{
		bin: s.cfg.Bins.PipeWire,
		ready: func(ctx context.Context, p *proc) error {
			return pollUntil(ctx, p, socketAccepts(s.lay.pipewireSocket()))
		},
	}, nil
}

func launchWirePlumber(s *Stack) (launch, error) {
	return launch{
		bin: s.cfg.Bins.WirePlumber,
		ready: func(ctx context.Context, p *proc) error {
			return pollUntil(ctx, p, defaultSinkSet(s))
		},
	}, nil
}

func launchPipeWirePulse(s *Stack) (launch, error) {
	return launch{
		bin: s.cfg.Bins.PipeWirePulse,
		ready: func(ctx context.Context, p *proc) error {
			return pollUntil(ctx, p, pulseServes(s.lay.pulseSocket()))
		},
	}, nil
}
