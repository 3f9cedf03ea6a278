package audio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"
)

const (
	pollFirst = time.Millisecond
	pollMax   = 50 * time.Millisecond
)

// pollUntil runs check with exponential backoff until it succeeds, ctx ends
// or the process exits (a daemon that died is never waited for until timeout).
func pollUntil(ctx context.Context, p *proc, check func(context.Context) error) error {
	delay := pollFirst
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		if p.done() {
			return fmt.Errorf("%s before it was ready (last check: %v)", p.describeExit(), err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("not ready: %w (last check: %v)", ctx.Err(), err)
		case <-p.exited:
			t.Stop()
			return fmt.Errorf("%s before it was ready (last check: %v)", p.describeExit(), err)
		case <-t.C:
		}
		delay = min(delay*2, pollMax)
	}
}

// socketAccepts is ready when a listener is bound to path and accepts.
func socketAccepts(path string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return err
		}
		return conn.Close()
	}
}

// dbusAnswers is ready when the bus speaks the D-Bus auth protocol: an AUTH
// without a mechanism is answered with the list of mechanisms it accepts.
// This works from any uid, unlike a full Hello (the bus admits only its owner).
func dbusAnswers(socket string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", socket)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
			return err
		}
		if _, err := conn.Write([]byte("\x00AUTH\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read auth answer: %w", err)
		}
		if !strings.HasPrefix(line, "REJECTED") {
			return fmt.Errorf("unexpected auth answer %q", strings.TrimSpace(line))
		}
		return nil
	}
}

// defaultSinkSet is WirePlumber's readiness: it has created the "default"
// metadata and chosen the session's null sink as default.audio.sink. Before
// that an app's stream would not be linked anywhere.
func defaultSinkSet(s *Stack) func(context.Context) error {
	return func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, s.cfg.Bins.PWMetadata, "-n", "default", "0", "default.audio.sink")
		cmd.Env = s.daemonEnv()
		cmd.Dir = "/"
		cmd.SysProcAttr = s.probeAttr()
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("pw-metadata: %w", err)
		}
		name, ok := parseDefaultSink(out)
		if !ok {
			return fmt.Errorf("no default.audio.sink in the default metadata yet")
		}
		if name != SinkName {
			return fmt.Errorf("default sink is %q, want %q", name, SinkName)
		}
		return nil
	}
}

// parseDefaultSink finds default.audio.sink in pw-metadata's output, e.g.
// update: id:0 key:'default.audio.sink' value:'{"name":"pixelstream_sink"}' type:'Spa:String:JSON'
func parseDefaultSink(out []byte) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "key:'default.audio.sink'") {
			continue
		}
		_, v, ok := strings.Cut(line, "value:'")
		if !ok {
			continue
		}
		v, _, ok = strings.Cut(v, "' type:")
		if !ok {
			continue
		}
		var val struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal([]byte(v), &val); err != nil || val.Name == "" {
			continue
		}
		return val.Name, true
	}
	return "", false
}

// pulseServes is pipewire-pulse's readiness: the socket the app will use
// answers the native protocol and names the session's sink as default.
func pulseServes(socket string) func(context.Context) error {
	return func(ctx context.Context) error {
		info, err := pulseQueryServerInfo(ctx, socket)
		if err != nil {
			return err
		}
		if info.DefaultSink != SinkName {
			return fmt.Errorf("pulse default sink is %q, want %q", info.DefaultSink, SinkName)
		}
		return nil
	}
}
