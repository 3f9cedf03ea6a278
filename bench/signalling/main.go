// Command signalling benchmarks the Pixel Streaming signalling server: the
// server runs as its own process (pinned to two CPUs when the machine has
// more), and this load generator plays K Unreal-like streamers and N players
// that connect, subscribe, answer and then relay ICE candidates. It prints a
// Markdown table. Run from the repository root: go run ./bench/signalling
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	sizes := flag.String("players", "1000,5000", "player counts to run, comma separated")
	streamers := flag.Int("streamers", 4, "streamers (K)")
	relayFor := flag.Duration("relay", 3*time.Second, "duration of each relay phase")
	serverBin := flag.String("server-bin", "", "a prebuilt bench/signalling/server binary (default: build it with go build)")
	flag.Parse()
	raiseFileLimit()

	dir, err := os.MkdirTemp("", "signalling-bench-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	bin := *serverBin
	if bin == "" {
		if bin, err = buildServer(dir); err != nil {
			fail(err)
		}
	}
	serverCPUs, note := placement()

	var rows []string
	for _, s := range strings.Split(*sizes, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n <= 0 {
			fail(fmt.Errorf("--players: %q is not a positive number", s))
		}
		row, err := runSize(bin, serverCPUs, n, *streamers, *relayFor)
		if err != nil {
			fail(fmt.Errorf("%d players: %w", n, err))
		}
		rows = append(rows, row)
	}

	var starts []time.Duration
	for i := 0; i < 15; i++ {
		d, err := startupTime(bin, serverCPUs)
		if err != nil {
			fail(fmt.Errorf("start-up: %w", err))
		}
		starts = append(starts, d)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })

	fmt.Printf("### Signalling server benchmark\n\n")
	fmt.Printf("%s; %d streamers; Go %s. Handshake = WebSocket connect, config, subscribe, offer, answer, first ICE candidate (128 players connecting at a time). Relay = a player's ICE candidate through the server to its streamer, echoed back through the server (2 forwarded messages per round trip).\n\n", note, *streamers, runtime.Version())
	fmt.Println("| players | handshake p50 | handshake p99 | server CPU per handshake | relayed msgs/s (closed loop) | server CPU s / 1,000 msgs | load generator CPU (cores) | relay RTT p50 @ 2,000 msgs/s | relay RTT p99 @ 2,000 msgs/s | server RSS per player (idle, as is) | same after a forced GC + scavenge |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Printf("\nStart-up to first `/healthz` 200 (process exec included, %d runs): median %s, max %s.\n",
		len(starts), ms(starts[len(starts)/2]), ms(starts[len(starts)-1]))
}

// placement pins the server to two CPUs when there are at least four, so the
// load generator does not compete with it; on smaller machines both share.
func placement() (string, string) {
	n := runtime.NumCPU()
	if n >= 4 {
		return "0,1", fmt.Sprintf("Server pinned to 2 of %d CPUs (taskset -c 0,1); load generator on the others", n)
	}
	return "", fmt.Sprintf("Server and load generator share this machine's %d CPUs (no pinning possible)", n)
}

func runSize(bin, serverCPUs string, n, k int, relayFor time.Duration) (string, error) {
	srv, err := startServer(bin, serverCPUs, "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer srv.stop()
	if serverCPUs != "" {
		pinSelfAwayFrom()
	}
	for i := 0; i < k; i++ {
		if _, err := newSimStreamer(srv.streamer, fmt.Sprintf("S%d", i)); err != nil {
			return "", err
		}
	}
	time.Sleep(500 * time.Millisecond) // let the idle server settle before the baseline
	rssBefore, err := srv.rssBytes()
	if err != nil {
		return "", err
	}

	var phase atomic.Int32
	var echoes atomic.Int64
	hsCPU0, _ := srv.cpuSeconds()
	players, err := connectPlayers(srv.player, n, k, 128, &phase, &echoes)
	if err != nil {
		return "", err
	}
	hsCPU1, _ := srv.cpuSeconds()
	hs := make([]time.Duration, 0, n)
	for _, p := range players {
		hs = append(hs, p.handshake)
	}
	time.Sleep(2 * time.Second) // idle, as connected players mostly are
	rssAfter, err := srv.rssBytes()
	if err != nil {
		return "", err
	}
	_ = srv.cmd.Process.Signal(syscall.SIGUSR1)
	time.Sleep(500 * time.Millisecond)
	rssFloor, err := srv.rssBytes()
	if err != nil {
		return "", err
	}

	// Closed loop: every player keeps one candidate in flight.
	cpu0, _ := srv.cpuSeconds()
	self0 := selfCPUSeconds()
	e0 := echoes.Load()
	t0 := time.Now()
	phase.Store(phaseThroughput)
	for _, p := range players {
		_ = p.write(relayMessage())
	}
	time.Sleep(relayFor)
	phase.Store(phaseIdle)
	wall := time.Since(t0)
	e1 := echoes.Load()
	cpu1, _ := srv.cpuSeconds()
	self1 := selfCPUSeconds()
	forwarded := float64(2 * (e1 - e0))
	time.Sleep(500 * time.Millisecond) // drain

	// Open loop at 2,000 forwarded messages per second (1,000 round trips).
	phase.Store(phaseLatency)
	start := time.Now()
	sent := 0
	for time.Since(start) < relayFor {
		due := int(time.Since(start).Seconds() * 1000)
		for ; sent < due; sent++ {
			_ = players[sent%n].write(relayMessage())
		}
		time.Sleep(200 * time.Microsecond)
	}
	time.Sleep(500 * time.Millisecond)
	phase.Store(phaseIdle)
	var rtts []time.Duration
	for _, p := range players {
		rtts = append(rtts, p.rtts...)
	}
	for _, p := range players {
		_ = p.ws.Close()
	}
	if len(rtts) < sent*9/10 {
		return "", fmt.Errorf("only %d of %d latency probes came back", len(rtts), sent)
	}

	perPlayer := float64(rssAfter-rssBefore) / float64(n)
	floor := float64(rssFloor-rssBefore) / float64(n)
	return fmt.Sprintf("| %d | %s | %s | %.3f ms | %.0f | %.4f | %.2f | %s | %s | %.1f KB (%.1f → %.1f MB) | %.1f KB |",
		n, ms(pct(hs, 50)), ms(pct(hs, 99)), (hsCPU1-hsCPU0)/float64(n)*1000, forwarded/wall.Seconds(), (cpu1-cpu0)/forwarded*1000,
		(self1-self0)/wall.Seconds(), ms(pct(rtts, 50)), ms(pct(rtts, 99)),
		perPlayer/1024, float64(rssBefore)/(1<<20), float64(rssAfter)/(1<<20), floor/1024), nil
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i >= len(s) {
		i = len(s) - 1
	}
	if i > 0 {
		i--
	}
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "signalling bench:", err)
	os.Exit(1)
}
