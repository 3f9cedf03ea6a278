// Package hostile is the hostile-input suite: it attacks a running session
// (or a standalone signalling/TURN server) the way a stranger on the network
// would, and checks after each attack that the attacker was closed or dropped,
// that a bystander player still gets what the streamer sends it, that the
// process is still up, within its memory budget, and still stops on SIGTERM.
//
// By default every row starts its own fresh process of the plugin binary,
// built once by TestMain, so the suite never runs against a stale build. To
// attack something already running (the demo, while a browser streams):
//
//	PIXELSTREAM_HOSTILE_TARGET   player URL, e.g. ws://127.0.0.1:8080/ (or http://...)
//	PIXELSTREAM_HOSTILE_STREAMER streamer ws URL (optional: without it the
//	                             bystander checks the session's own streamer by
//	                             subscribing again and waiting for its offer)
//	PIXELSTREAM_HOSTILE_TOKEN    player token, if the session has one
//	PIXELSTREAM_HOSTILE_PID      the session's pid, to check its peak RSS (optional)
//
// PIXELSTREAM_HOSTILE_BIN runs the per-row processes from a given binary
// instead of building one (e.g. a build of an older commit, to show that a
// row fails there).
package hostile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// waitFor bounds every wait for something that should happen promptly; the
// suite polls conditions until it, never sleeps for readiness.
const waitFor = 10 * time.Second

// pluginBin is the plugin binary the rows start (built by TestMain).
var pluginBin string

// external is the already-running session named by the environment, or nil.
var external *Target

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if u := os.Getenv("PIXELSTREAM_HOSTILE_TARGET"); u != "" {
		t, err := externalTarget(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "hostile: PIXELSTREAM_HOSTILE_TARGET: %v\n", err)
			return 2
		}
		external = t
		return m.Run()
	}
	defer printRSSTable()
	if bin := os.Getenv("PIXELSTREAM_HOSTILE_BIN"); bin != "" {
		pluginBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "hostile-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "hostile: temp dir: %v\n", err)
		return 2
	}
	defer os.RemoveAll(dir)
	pluginBin = filepath.Join(dir, "nomad-driver-pixelstream")
	build := exec.Command("go", "build", "-o", pluginBin, ".")
	build.Dir = ".." // the module root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "hostile: build the plugin binary: %v\n", err)
		return 2
	}
	return m.Run()
}

func externalTarget(raw string) (*Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return nil, fmt.Errorf("%q: want a ws://, wss://, http:// or https:// URL", raw)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	t := &Target{PlayerURL: u.String(), StreamerURL: os.Getenv("PIXELSTREAM_HOSTILE_STREAMER"), Token: os.Getenv("PIXELSTREAM_HOSTILE_TOKEN")}
	if p := os.Getenv("PIXELSTREAM_HOSTILE_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("PIXELSTREAM_HOSTILE_PID %q is not a pid", p)
		}
		t.PID = pid
	}
	return t, nil
}

// Target is what a row attacks: a player endpoint and, when the suite
// controls it, the streamer endpoint and the process behind them.
type Target struct {
	PlayerURL   string // ws://host:port/
	StreamerURL string // ws://host:port/; "" when the session's own streamer is used
	Token       string // player token, "" when none
	PID         int    // the process, 0 when unknown
	Proc        *Proc  // the process when this suite started it, else nil
}

// PlayerAddr is the player endpoint's host:port.
func (t *Target) PlayerAddr() string {
	u, _ := url.Parse(t.PlayerURL)
	return u.Host
}

// HTTPBase is the player endpoint as an http(s):// URL without a trailing slash.
func (t *Target) HTTPBase() string {
	u, _ := url.Parse(t.PlayerURL)
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	return scheme + "://" + u.Host
}

// PlayerDialURL is PlayerURL with the token, if any, in the query string.
func (t *Target) PlayerDialURL() string {
	if t.Token == "" {
		return t.PlayerURL
	}
	u, _ := url.Parse(t.PlayerURL)
	q := u.Query()
	q.Set("token", t.Token)
	u.RawQuery = q.Encode()
	return u.String()
}

// PeakRSS is the target process's peak resident set (VmHWM) in bytes, or 0
// when the process is unknown.
func (t *Target) PeakRSS(tb testing.TB) int64 {
	tb.Helper()
	if t.PID == 0 {
		return 0
	}
	v, err := procStatusBytes(t.PID, "VmHWM")
	if err != nil {
		tb.Fatalf("read peak RSS of pid %d: %v", t.PID, err)
	}
	return v
}

// AssertAlive fails the test if the target process has gone or its player
// endpoint no longer answers HTTP.
func (t *Target) AssertAlive(tb testing.TB) {
	tb.Helper()
	if t.Proc != nil && t.Proc.Exited() {
		tb.Fatalf("the process exited during the attack: %s\nlast output:\n%s", t.Proc.ExitState(), t.Proc.Output())
	}
	client := &http.Client{Timeout: waitFor}
	resp, err := client.Get(t.HTTPBase() + "/healthz")
	if err != nil {
		tb.Fatalf("process no longer answers /healthz: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("/healthz answered %s after the attack", resp.Status)
	}
}

var (
	rssMu   sync.Mutex
	rssRows []string
)

func recordRSS(name string, peak, budget int64) {
	if peak == 0 {
		return
	}
	rssMu.Lock()
	defer rssMu.Unlock()
	rssRows = append(rssRows, fmt.Sprintf("| %s | %.1f MiB | %d MiB |", name, float64(peak)/(1<<20), budget>>20))
}

// printRSSTable prints the peak RSS of each row as a Markdown table when
// PIXELSTREAM_BENCH is set (make bench collects these tables).
func printRSSTable() {
	if os.Getenv("PIXELSTREAM_BENCH") == "" || len(rssRows) == 0 {
		return
	}
	fmt.Printf("\n### Peak RSS of the process under each hostile case\n\n| case | peak RSS (VmHWM) | budget |\n|---|---:|---:|\n")
	for _, r := range rssRows {
		fmt.Println(r)
	}
}

// procStatusBytes reads a "Name:   N kB" line of /proc/PID/status.
func procStatusBytes(pid int, name string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected %s line %q", name, line)
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s line %q: %w", name, line, err)
			}
			return n << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s line in /proc/%d/status", name, pid)
}

// Proc is a subprocess of the plugin binary started by the suite.
type Proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer // stdout and stderr, for failure messages
	outC chan string  // stdout lines
	done chan struct{}
	err  error
}

// StartProc runs the plugin binary with args (a subcommand and its flags)
// and kills it when the test ends if it is still running.
func StartProc(tb testing.TB, args ...string) *Proc {
	tb.Helper()
	if pluginBin == "" {
		tb.Skip("no plugin binary: the suite targets an external session")
	}
	p := &Proc{cmd: exec.Command(pluginBin, args...), outC: make(chan string, 64), done: make(chan struct{})}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("stdout pipe: %v", err)
	}
	p.cmd.Stderr = lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s %v: %v", pluginBin, args, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			_, _ = lockedWriter{p}.Write([]byte(line + "\n"))
			select {
			case p.outC <- line:
			default: // nobody waits for lines any more
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		if !p.Exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

type lockedWriter struct{ p *Proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	// Keep the last 64 KiB: a failure message needs the end of the log.
	if w.p.out.Len() > 64<<10 {
		tail := append([]byte(nil), w.p.out.Bytes()[w.p.out.Len()-32<<10:]...)
		w.p.out.Reset()
		w.p.out.Write(tail)
	}
	return w.p.out.Write(b)
}

// PID is the subprocess's pid.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Output is what the process wrote so far (the last 64 KiB at most).
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitState describes how the process ended.
func (p *Proc) ExitState() string {
	if !p.Exited() {
		return "running"
	}
	if p.err == nil {
		return "exit status 0"
	}
	return p.err.Error()
}

// WaitLine waits for a stdout line starting with prefix and returns the rest.
func (p *Proc) WaitLine(tb testing.TB, prefix string) string {
	tb.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case line := <-p.outC:
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return rest
			}
		case <-p.done:
			tb.Fatalf("process exited (%s) before printing %q:\n%s", p.ExitState(), prefix, p.Output())
		case <-deadline:
			tb.Fatalf("no %q line from the process within %s:\n%s", prefix, waitFor, p.Output())
		}
	}
}

// Terminate sends SIGTERM and asserts the process exits with status 0
// within waitFor.
func (p *Proc) Terminate(tb testing.TB) {
	tb.Helper()
	if p.Exited() {
		tb.Fatalf("process had already exited (%s):\n%s", p.ExitState(), p.Output())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(waitFor):
		tb.Fatalf("process still running %s after SIGTERM:\n%s", waitFor, p.Output())
	}
	if p.err != nil {
		tb.Fatalf("process exited with %v after SIGTERM:\n%s", p.err, p.Output())
	}
}

// StartSignalling starts the standalone `signalling` subcommand on loopback
// ports (extra flags appended) and returns it as a target. With an external
// target configured it returns that instead.
func StartSignalling(tb testing.TB, flags ...string) *Target {
	tb.Helper()
	if external != nil {
		return external
	}
	args := append([]string{"signalling", "--player-listen", "127.0.0.1:0", "--streamer-listen", "127.0.0.1:0", "--log-level", "info"}, flags...)
	p := StartProc(tb, args...)
	player := strings.TrimSpace(p.WaitLine(tb, "player "))
	streamer := strings.TrimSpace(p.WaitLine(tb, "streamer "))
	u, err := url.Parse(player)
	if err != nil {
		tb.Fatalf("player address %q: %v", player, err)
	}
	return &Target{PlayerURL: "ws://" + u.Host + "/", StreamerURL: streamer, PID: p.PID(), Proc: p}
}

// Finish runs the checks every row ends with: the process is alive, a
// bystander still receives from the streamer, peak RSS stays within
// rssBudget bytes (0: not checked), and the process exits on SIGTERM.
func (t *Target) Finish(tb testing.TB, by *Bystander, rssBudget int64) {
	tb.Helper()
	t.AssertAlive(tb)
	if by != nil {
		by.AssertReceiving(tb)
	}
	if rssBudget > 0 {
		peak := t.PeakRSS(tb)
		recordRSS(tb.Name(), peak, rssBudget)
		if peak > rssBudget {
			tb.Errorf("peak RSS %d MiB exceeds the budget of %d MiB", peak>>20, rssBudget>>20)
		} else if peak > 0 {
			tb.Logf("peak RSS %.1f MiB (budget %d MiB)", float64(peak)/(1<<20), rssBudget>>20)
		}
	}
	if t.Proc != nil {
		t.Proc.Terminate(tb)
	}
}

// Msg is a signalling message as the suite reads it.
type Msg map[string]any

// Type is the message's type field.
func (m Msg) Type() string { s, _ := m["type"].(string); return s }

// Str is a string field, "" when absent.
func (m Msg) Str(k string) string { s, _ := m[k].(string); return s }

// WSPeer is a well-behaved WebSocket client (gorilla/websocket), which
// answers pings itself, with a serialised writer and a reader goroutine
// that delivers messages on In until the connection ends.
type WSPeer struct {
	Name string
	ws   *websocket.Conn
	wmu  sync.Mutex
	In   chan Msg
	done chan struct{}
	err  error        // why the reader ended
	gate sync.RWMutex // held for writing while reading is paused
}

// Pause stops reading the connection (after the message being read), so the
// server's writes to it back up, as with a peer that reads slowly.
func (p *WSPeer) Pause() { p.gate.Lock() }

// Resume reads again after Pause.
func (p *WSPeer) Resume() { p.gate.Unlock() }

// DialPeer connects a well-behaved client to url.
func DialPeer(tb testing.TB, name, url string) *WSPeer {
	tb.Helper()
	d := websocket.Dialer{HandshakeTimeout: waitFor}
	ws, resp, err := d.Dial(url, nil)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		tb.Fatalf("%s: dial %s: %v %s", name, url, err, status)
	}
	p := &WSPeer{Name: name, ws: ws, In: make(chan Msg, 1024), done: make(chan struct{})}
	// Small socket buffers, so that a paused reader backs the server up
	// with megabytes rather than whatever the kernel would buffer.
	if tc, ok := ws.NetConn().(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(64 << 10)
	}
	go p.readLoop()
	tb.Cleanup(func() { _ = ws.Close(); <-p.done })
	return p
}

func (p *WSPeer) readLoop() {
	defer close(p.done)
	defer close(p.In)
	for {
		p.gate.RLock()
		//lint:ignore SA2001 waiting out a Pause is all this is for
		p.gate.RUnlock()
		_, data, err := p.ws.ReadMessage()
		if err != nil {
			p.err = err
			return
		}
		var m Msg
		if json.Unmarshal(data, &m) != nil {
			m = Msg{"type": "<not json>", "raw": string(data)}
		}
		select {
		case p.In <- m:
		default:
			// The test is not draining In: keep the newest view by dropping.
		}
	}
}

// Send writes one JSON text message.
func (p *WSPeer) Send(tb testing.TB, v any) {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("%s: marshal: %v", p.Name, err)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.ws.SetWriteDeadline(time.Now().Add(waitFor))
	if err := p.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		tb.Fatalf("%s: send %s: %v", p.Name, b, err)
	}
}

// Expect waits for a message of type typ, skipping others, and fails the
// test if none arrives within waitFor or the connection ends.
func (p *WSPeer) Expect(tb testing.TB, typ string) Msg {
	tb.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case m, ok := <-p.In:
			if !ok {
				tb.Fatalf("%s: connection ended waiting for %q: %v", p.Name, typ, p.err)
			}
			if m.Type() == typ {
				return m
			}
		case <-deadline:
			tb.Fatalf("%s: no %q message within %s", p.Name, typ, waitFor)
		}
	}
}

// Closed reports whether the reader has ended, and why.
func (p *WSPeer) Closed() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Streamer is a stand-in for Unreal's streamer: it identifies, sends an offer
// to each player that connects, and keeps sending numbered iceCandidate
// messages to every player it was asked to feed, as a stream in progress
// does. It is a fake of Unreal only (no media), named so.
type Streamer struct {
	*WSPeer
	ID       string
	mu       sync.Mutex
	players  map[string]bool // fed players
	stop     chan struct{}
	stopped  chan struct{}
	offerFor chan string // playerIds the streamer sent an offer to
}

// StartStreamer connects the stand-in streamer to t's streamer endpoint and
// waits until it is identified.
func StartStreamer(tb testing.TB, t *Target, id string) *Streamer {
	tb.Helper()
	if t.StreamerURL == "" {
		tb.Fatalf("the target has no streamer endpoint the suite can reach")
	}
	s := &Streamer{WSPeer: DialPeer(tb, "streamer", t.StreamerURL), ID: id, players: map[string]bool{},
		stop: make(chan struct{}), stopped: make(chan struct{}), offerFor: make(chan string, 64)}
	s.Expect(tb, "identify")
	s.Send(tb, map[string]any{"type": "endpointId", "id": id, "protocolVersion": "1.3.0"})
	// A streamer of the same id still closing makes the server commit
	// another one: use what it says.
	if id := s.Expect(tb, "endpointIdConfirm").Str("committedId"); id != "" {
		s.ID = id
	}
	go s.run()
	tb.Cleanup(func() { close(s.stop); <-s.stopped })
	return s
}

// run answers players and feeds the fed players until stopped. Sends go
// through a deadline, so a server that stops reading fails the streamer
// rather than hanging the suite.
func (s *Streamer) run() {
	defer close(s.stopped)
	tick := time.NewTicker(20 * time.Millisecond) // the pace of a stream's side traffic, not a readiness wait
	defer tick.Stop()
	seq := 0
	for {
		select {
		case <-s.stop:
			return
		case m, ok := <-s.In:
			if !ok {
				return
			}
			if m.Type() == "playerConnected" {
				pid := m.Str("playerId")
				_ = s.write(map[string]any{"type": "offer", "playerId": pid, "sdp": fakeSDP})
				select {
				case s.offerFor <- pid:
				default:
				}
			}
		case <-tick.C:
			s.mu.Lock()
			ids := make([]string, 0, len(s.players))
			for id := range s.players {
				ids = append(ids, id)
			}
			s.mu.Unlock()
			for _, id := range ids {
				seq++
				_ = s.write(map[string]any{"type": "iceCandidate", "playerId": id, "candidate": map[string]any{
					"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 " + strconv.Itoa(10000+seq%50000) + " typ host", "sdpMid": "0", "sdpMLineIndex": 0}})
			}
		}
	}
}

func (s *Streamer) write(v any) error {
	b, _ := json.Marshal(v)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.ws.SetWriteDeadline(time.Now().Add(waitFor))
	return s.ws.WriteMessage(websocket.TextMessage, b)
}

// Feed makes the streamer send a steady flow of messages to playerID.
func (s *Streamer) Feed(playerID string) {
	s.mu.Lock()
	s.players[playerID] = true
	s.mu.Unlock()
}

const fakeSDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n"

// Bystander is a player that did nothing wrong: after an attack it must
// still receive what the streamer sends it.
type Bystander struct {
	*WSPeer
	target   *Target
	streamer *Streamer // nil when the session's own streamer is used
	streamID string
}

// ConnectBystander connects a player, subscribes it to the streamer (the
// suite's stand-in when s is non-nil, else the first listed streamer) and
// waits for the streamer's offer.
func ConnectBystander(tb testing.TB, t *Target, s *Streamer) *Bystander {
	tb.Helper()
	b := &Bystander{WSPeer: DialPeer(tb, "bystander", t.PlayerDialURL()), target: t, streamer: s}
	b.Expect(tb, "config")
	if s != nil {
		b.streamID = s.ID
	} else {
		b.Send(tb, map[string]any{"type": "listStreamers"})
		list := b.Expect(tb, "streamerList")
		ids, _ := list["ids"].([]any)
		if len(ids) == 0 {
			tb.Fatalf("bystander: the session lists no streamer")
		}
		b.streamID, _ = ids[0].(string)
	}
	b.Send(tb, map[string]any{"type": "subscribe", "streamerId": b.streamID})
	b.Expect(tb, "offer")
	if s != nil {
		// The player id is the one the streamer sent its offer to.
		select {
		case pid := <-s.offerFor:
			s.Feed(pid)
		case <-time.After(waitFor):
			tb.Fatalf("streamer: no playerConnected for the bystander within %s", waitFor)
		}
		b.Expect(tb, "iceCandidate")
	}
	return b
}

// AssertReceiving checks that the bystander is still connected and gets
// fresh messages from the streamer: several fed candidates from the suite's
// streamer, or a new offer from the session's own streamer after
// subscribing again.
func (b *Bystander) AssertReceiving(tb testing.TB) {
	tb.Helper()
	// Drop what arrived during the attack: only new messages count.
	for drained := false; !drained; {
		select {
		case _, ok := <-b.In:
			if !ok {
				tb.Fatalf("bystander was disconnected by the attack: %v", b.err)
			}
		default:
			drained = true
		}
	}
	if b.streamer != nil {
		for i := 0; i < 5; i++ {
			b.Expect(tb, "iceCandidate")
		}
		b.Send(tb, map[string]any{"type": "ping", "time": time.Now().UnixMilli()})
		b.Expect(tb, "pong")
		return
	}
	b.Send(tb, map[string]any{"type": "unsubscribe"})
	b.Send(tb, map[string]any{"type": "subscribe", "streamerId": b.streamID})
	b.Expect(tb, "offer")
}

// RawConn is a WebSocket connection on which the suite writes whatever bytes
// it likes after a proper opening handshake.
type RawConn struct {
	net.Conn
	R *bufio.Reader
}

// DialRaw opens a TCP connection to a ws:// URL and completes the opening
// handshake by hand, so that anything may follow.
func DialRaw(tb testing.TB, wsURL string) *RawConn {
	tb.Helper()
	return DialRawFrom(tb, wsURL, nil)
}

// DialRawFrom is DialRaw from a given local address (nil: any), e.g. one of
// 127.0.0.0/8 to stay within a per-address connection cap.
func DialRawFrom(tb testing.TB, wsURL string, local net.IP) *RawConn {
	tb.Helper()
	u, err := url.Parse(wsURL)
	if err != nil {
		tb.Fatalf("url %q: %v", wsURL, err)
	}
	d := net.Dialer{Timeout: waitFor}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	nc, err := d.Dial("tcp", u.Host)
	if err != nil {
		tb.Fatalf("dial %s: %v", u.Host, err)
	}
	tb.Cleanup(func() { _ = nc.Close() })
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_ = nc.SetDeadline(time.Now().Add(waitFor))
	if _, err := io.WriteString(nc, req); err != nil {
		tb.Fatalf("write handshake: %v", err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("read handshake answer: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("handshake answered %s", resp.Status)
	}
	_ = nc.SetDeadline(time.Time{})
	return &RawConn{Conn: nc, R: br}
}

// CloseResult is how a connection ended as the client saw it.
type CloseResult struct {
	Code    int    // close code from the server's close frame; 0 if none
	Reason  string // its reason
	Dropped bool   // the connection ended without a close frame
	RawBody []byte // the close frame's payload
}

func (r CloseResult) String() string {
	if r.Dropped {
		return "dropped without a close frame"
	}
	return fmt.Sprintf("close %d %q", r.Code, r.Reason)
}

// ReadUntilClose reads server frames until a close frame or the end of the
// connection, within waitFor. Servers never mask and never fragment what
// this suite needs, so the reader here is deliberately minimal.
func (c *RawConn) ReadUntilClose(tb testing.TB) CloseResult {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.R, h[:]); err != nil {
			if isTimeout(err) {
				tb.Fatalf("server neither closed nor dropped the connection within %s", waitFor)
			}
			return CloseResult{Dropped: true}
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(c.R, b[:]); err != nil {
				return CloseResult{Dropped: true}
			}
			n = uint64(b[0])<<8 | uint64(b[1])
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(c.R, b[:]); err != nil {
				return CloseResult{Dropped: true}
			}
			n = 0
			for _, x := range b {
				n = n<<8 | uint64(x)
			}
		}
		if n > 1<<20 {
			tb.Fatalf("server frame of %d bytes", n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.R, body); err != nil {
			return CloseResult{Dropped: true}
		}
		if h[0]&0x0f == 0x8 {
			r := CloseResult{RawBody: body}
			if len(body) >= 2 {
				r.Code = int(body[0])<<8 | int(body[1])
				r.Reason = string(body[2:])
			}
			return r
		}
	}
}

// ReadUntilPongOrClose reads server frames until a pong (pong true) or
// the end of the connection, within waitFor.
func (c *RawConn) ReadUntilPongOrClose(tb testing.TB) (r CloseResult, pong bool) {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.R, h[:]); err != nil {
			if isTimeout(err) {
				tb.Fatalf("server neither answered the ping nor ended the connection within %s", waitFor)
			}
			return CloseResult{Dropped: true}, false
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(c.R, b[:]); err != nil {
				return CloseResult{Dropped: true}, false
			}
			n = int(b[0])<<8 | int(b[1])
		case 127:
			tb.Fatalf("server frame with a 64-bit length on a player connection")
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.R, body); err != nil {
			return CloseResult{Dropped: true}, false
		}
		switch h[0] & 0x0f {
		case 0xA:
			return CloseResult{}, true
		case 0x8:
			r := CloseResult{RawBody: body}
			if len(body) >= 2 {
				r.Code, r.Reason = int(body[0])<<8|int(body[1]), string(body[2:])
			}
			return r, false
		}
	}
}

// TryReadClose is ReadUntilClose for a connection the server may have left
// open: ok is false when it has not ended it within a moment.
func (c *RawConn) TryReadClose() (r CloseResult, ok bool) {
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.R, h[:]); err != nil {
			if isTimeout(err) {
				return CloseResult{}, false
			}
			return CloseResult{Dropped: true}, true
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(c.R, b[:]); err != nil {
				return CloseResult{Dropped: true}, true
			}
			n = int(b[0])<<8 | int(b[1])
		case 127:
			return CloseResult{}, false // the server sends nothing this big to players
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.R, body); err != nil {
			return CloseResult{Dropped: true}, true
		}
		if h[0]&0x0f == 0x8 && len(body) >= 2 {
			return CloseResult{Code: int(body[0])<<8 | int(body[1]), Reason: string(body[2:]), RawBody: body}, true
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
