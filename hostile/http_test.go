package hostile

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The HTTP half of the hostile-input suite: issue 11 cases 6 (connections
// parked on the server, descriptor exhaustion), 7 (connection caps), 10
// (Origin, per-session token cookie) and 11 (http_root). Each row runs
// against fresh signalling processes, asserts what the attacker gets, that
// a bystander player keeps receiving from the streamer, and that the
// process still exits on SIGTERM.

// httpRSSBudget is the peak RSS a signalling process may reach under these
// rows.
const httpRSSBudget = 256 << 20

// httpRecover bounds how long a row waits for the server to recover from a
// flood (idle connections timing out in waves, accept backing off).
const httpRecover = 45 * time.Second

var (
	httpHelpOnce sync.Once
	httpHelp     string
)

// httpFlags drops the flags ("--name=value") the binary under test does not
// know, saying so: with PIXELSTREAM_HOSTILE_BIN set to a build of an older
// commit, a row then shows how that build behaves under the same attack
// rather than failing on its command line.
func httpFlags(tb testing.TB, flags ...string) []string {
	tb.Helper()
	httpHelpOnce.Do(func() {
		out, _ := exec.Command(pluginBin, "signalling", "--help").CombinedOutput()
		httpHelp = string(out)
	})
	var keep []string
	for _, f := range flags {
		name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if !strings.Contains(httpHelp, "-"+name+" ") && !strings.Contains(httpHelp, "-"+name+"\n") {
			tb.Logf("the binary has no --%s flag: running without it", name)
			continue
		}
		keep = append(keep, f)
	}
	return keep
}

// httpStart starts a standalone signalling process, with its descriptors
// limited to nofile (soft and hard) when nofile > 0.
func httpStart(tb testing.TB, nofile int, flags ...string) *Target {
	tb.Helper()
	if external != nil {
		tb.Skip("the HTTP rows start their own processes")
	}
	if pluginBin == "" {
		tb.Skip("no plugin binary")
	}
	args := append([]string{"signalling", "--player-listen", "127.0.0.1:0", "--streamer-listen", "127.0.0.1:0",
		"--log-level", "warn"}, httpFlags(tb, flags...)...)
	var p *Proc
	if nofile > 0 {
		p = turnStartProc(tb, "prlimit", append([]string{fmt.Sprintf("--nofile=%d:%d", nofile, nofile), pluginBin}, args...)...)
	} else {
		p = StartProc(tb, args...)
	}
	player := strings.TrimSpace(p.WaitLine(tb, "player "))
	streamer := strings.TrimSpace(p.WaitLine(tb, "streamer "))
	u, err := url.Parse(player)
	if err != nil {
		tb.Fatalf("player address %q: %v", player, err)
	}
	return &Target{PlayerURL: "ws://" + u.Host + "/", StreamerURL: streamer, PID: p.PID(), Proc: p}
}

// httpAttacker is the i-th attacking address, 127.0.2.1 to 127.0.2.254:
// all of 127.0.0.0/8 reaches loopback listeners on Linux, so the suite can
// be many remote addresses (the bystander is 127.0.0.1).
func httpAttacker(i int) net.IP { return net.IPv4(127, 0, 2, byte(1+i%254)) }

// httpDial opens a TCP connection to the player port from local.
func httpDial(tb testing.TB, tg *Target, local net.IP) (net.Conn, error) {
	d := net.Dialer{Timeout: waitFor, LocalAddr: &net.TCPAddr{IP: local}}
	nc, err := d.Dial("tcp", tg.PlayerAddr())
	if err == nil {
		tb.Cleanup(func() { _ = nc.Close() })
	}
	return nc, err
}

// httpKeepAlive sends one keep-alive request on nc and returns the status
// (0 when the connection ended without an answer), leaving nc open.
func httpKeepAlive(nc net.Conn, path string) int {
	_ = nc.SetDeadline(time.Now().Add(waitFor))
	defer nc.SetDeadline(time.Time{})
	if _, err := io.WriteString(nc, "GET "+path+" HTTP/1.1\r\nHost: "+nc.RemoteAddr().String()+"\r\n\r\n"); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// httpMetric is the value of one sample in the target's /metrics (0 when
// absent).
func httpMetric(tb testing.TB, tg *Target, sample string) float64 {
	tb.Helper()
	resp, err := (&http.Client{Timeout: waitFor}).Get(tg.HTTPBase() + "/metrics")
	if err != nil {
		tb.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// httpPlayerGetsIn polls until a new player connects and gets its config
// message, within httpRecover.
func httpPlayerGetsIn(tb testing.TB, tg *Target, header http.Header) {
	tb.Helper()
	deadline := time.Now().Add(httpRecover)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		ws, resp, err := d.Dial(tg.PlayerDialURL(), header)
		if err == nil {
			_ = ws.SetReadDeadline(time.Now().Add(waitFor))
			_, msg, err := ws.ReadMessage()
			_ = ws.Close()
			if err == nil && strings.Contains(string(msg), `"type":"config"`) {
				return
			}
			last = fmt.Errorf("no config message: %v %s", err, msg)
			continue
		}
		last = err
		if resp != nil {
			last = fmt.Errorf("%v: %s", err, resp.Status)
		}
	}
	tb.Fatalf("no new player got in within %s: %v", httpRecover, last)
}

func TestHTTPHostile(t *testing.T) {
	rows := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"6 idle keep-alive flood exhausts descriptors, then new players get in", httpIdleFlood},
		{"6 unfinished request headers and bodies are closed", httpSlowRequests},
		{"7 one address cannot fill the player port, players cannot lock the streamer out", httpCaps},
		{"10 other sites' pages and other sessions' cookies", httpOriginAndCookie},
		{"11 http_root stays inside its root", httpRootEscape},
	}
	for _, row := range rows {
		t.Run(row.name, row.run)
	}
}

// httpIdleFlood: 160 connections from 8 addresses each send one
// keep-alive request and then sit idle, holding on. With 64 descriptors the
// process runs out (EMFILE) while a bystander streams. Idle connections
// must be closed and the accept loop must back off and continue, so a new
// player gets in while the attacker still holds its sockets.
func httpIdleFlood(t *testing.T) {
	tg := httpStart(t, 64, "--http-idle-timeout=1s", "--max-connections-per-address=1000")
	st := StartStreamer(t, tg, "hostile")
	by := ConnectBystander(t, tg, st)

	var held []net.Conn
	for i := 0; i < 160; i++ {
		nc, err := httpDial(t, tg, httpAttacker(i%8))
		if err != nil {
			break // the kernel's backlog is full: enough
		}
		_ = nc.SetWriteDeadline(time.Now().Add(waitFor))
		_, _ = io.WriteString(nc, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		held = append(held, nc) // never closed by the attacker until the row ends
	}
	t.Logf("attacker holds %d connections", len(held))
	httpPlayerGetsIn(t, tg, nil)
	if n := httpMetric(t, tg, `pixelstream_signalling_accept_errors_total{listener="player"}`); n == 0 {
		t.Fatalf("no accept error counted: the flood did not exhaust descriptors, the row tests nothing")
	} else {
		t.Logf("accept loop backed off %v times", n)
	}
	tg.Finish(t, by, httpRSSBudget)
}

// httpSlowRequests: connections that never finish their request header,
// or the body they announced, are closed at the read timeouts and do not
// keep a player out.
func httpSlowRequests(t *testing.T) {
	tg := httpStart(t, 0, "--http-read-header-timeout=1s", "--http-read-timeout=2s")
	st := StartStreamer(t, tg, "hostile")
	by := ConnectBystander(t, tg, st)
	var conns []net.Conn
	for i := 0; i < 20; i++ {
		nc, err := httpDial(t, tg, httpAttacker(i))
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			_, _ = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		} else {
			_, _ = io.WriteString(nc, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
		}
		conns = append(conns, nc)
	}
	for i, nc := range conns {
		_ = nc.SetReadDeadline(time.Now().Add(httpRecover))
		if _, err := io.Copy(io.Discard, nc); isTimeout(err) {
			t.Fatalf("connection %d (unfinished %s) was still open after %s", i, map[bool]string{true: "header", false: "body"}[i%2 == 0], httpRecover)
		}
	}
	httpPlayerGetsIn(t, tg, nil)
	tg.Finish(t, by, httpRSSBudget)
}

// httpCaps: three addresses open 40 keep-alive connections each against a
// per-address cap of 32 (the default) and a player-port total of 64. Each
// address gets at most 32, all together at most 64 (bystander included),
// the rest 503 with Retry-After, counted in /metrics; a second streamer
// still connects while the player port is full.
func httpCaps(t *testing.T) {
	tg := httpStart(t, 0, "--max-player-connections=64")
	st := StartStreamer(t, tg, "hostile")
	by := ConnectBystander(t, tg, st)

	served := map[int]int{}
	var held []net.Conn
	refused := 0
	for a := 0; a < 3; a++ {
		for i := 0; i < 40; i++ {
			nc, err := httpDial(t, tg, httpAttacker(a))
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			switch code := httpKeepAlive(nc, "/healthz"); code {
			case http.StatusOK:
				served[a]++
				held = append(held, nc)
			case http.StatusServiceUnavailable, 0:
				refused++
			default:
				t.Fatalf("attacker connection answered %d", code)
			}
		}
	}
	t.Logf("served per address %v, refused %d", served, refused)
	total := 0
	for a, n := range served {
		total += n
		if n > 32 {
			t.Errorf("address %v holds %d connections, over the per-address cap of 32", httpAttacker(a), n)
		}
	}
	if total+1 > 64 {
		t.Errorf("the player port holds %d connections, over its total of 64", total+1)
	}
	// The streamer's port has its own budget.
	second := &Target{StreamerURL: tg.StreamerURL}
	StartStreamer(t, second, "second")
	// The flood ends; the server notices the closes and frees the places
	// (/metrics needs one too).
	for _, nc := range held {
		_ = nc.Close()
	}
	httpPlayerGetsIn(t, tg, nil)
	perAddr := httpMetric(t, tg, `pixelstream_signalling_connections_refused_total{listener="player",reason="per_address"}`)
	totalRefused := httpMetric(t, tg, `pixelstream_signalling_connections_refused_total{listener="player",reason="total"}`)
	if perAddr == 0 || totalRefused == 0 {
		t.Errorf("refusals counted: per_address %v, total %v; want both > 0", perAddr, totalRefused)
	}
	tg.Finish(t, by, httpRSSBudget)
}

// httpOriginAndCookie: two sessions on one host, each with a token. A
// browser that opened both keeps both cookies (neither overwrites the
// other), and a page of another origin (the other session, or any site)
// cannot open a player WebSocket with the visitor's cookie.
func httpOriginAndCookie(t *testing.T) {
	const tokenA, tokenB = "token-of-session-a-0123456789", "token-of-session-b-0123456789"
	tgA := httpStart(t, 0, "--player-token="+tokenA)
	tgA.Token = tokenA
	tgB := httpStart(t, 0, "--player-token="+tokenB)
	tgB.Token = tokenB
	st := StartStreamer(t, tgA, "hostile")
	by := ConnectBystander(t, tgA, st)

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: waitFor}
	for _, tg := range []*Target{tgA, tgB} {
		resp, err := browser.Get(tg.HTTPBase() + "/?token=" + tg.Token)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page with its token: %s", resp.Status)
		}
	}
	cookies := func(tg *Target) http.Header {
		u, _ := url.Parse(tg.HTTPBase() + "/")
		var parts []string
		for _, c := range jar.Cookies(u) {
			parts = append(parts, c.Name+"="+c.Value)
		}
		return http.Header{"Cookie": {strings.Join(parts, "; ")}}
	}
	dial := func(tg *Target, h http.Header) (*websocket.Conn, *http.Response, error) {
		d := websocket.Dialer{HandshakeTimeout: waitFor}
		ws, resp, err := d.Dial(tg.PlayerURL, h) // no ?token=: only the cookie
		if ws != nil {
			t.Cleanup(func() { _ = ws.Close() })
		}
		return ws, resp, err
	}
	// The visitor's own page of session A, after opening session B.
	for _, tg := range []*Target{tgA, tgB} {
		if _, resp, err := dial(tg, cookies(tg)); err != nil {
			t.Fatalf("the visitor's cookie no longer opens %s after visiting the other session: %v %v", tg.HTTPBase(), err, resp)
		}
	}
	// Another session's page, and any site's, driving a player of A with
	// the visitor's cookies.
	for _, origin := range []string{tgB.HTTPBase(), "https://evil.example"} {
		h := cookies(tgA)
		h.Set("Origin", origin)
		ws, resp, err := dial(tgA, h)
		if err == nil {
			_ = ws.Close()
			t.Fatalf("a page of %s opened a player WebSocket of session A", origin)
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("page of %s: %v %v, want 403", origin, err, resp)
		}
	}
	// The page's own origin still works.
	h := cookies(tgA)
	h.Set("Origin", tgA.HTTPBase())
	if _, resp, err := dial(tgA, h); err != nil {
		t.Fatalf("the session's own page: %v %v", err, resp)
	}
	tgB.Proc.Terminate(t)
	tgA.Finish(t, by, httpRSSBudget)
}

// httpRootEscape: a user's http_root with a symlink out, dotfiles and a
// directory without index; overlong URLs.
func httpRootEscape(t *testing.T) {
	outside := t.TempDir()
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(outside+"/secret.txt", "OUTSIDE-SECRET")
	write(root+"/index.html", "<html>player</html>")
	write(root+"/.env", "DOTFILE-SECRET")
	write(root+"/.git/config", "DOTFILE-SECRET")
	write(root+"/assets/app.js", "console.log(1)")
	for _, l := range [][2]string{{outside + "/secret.txt", root + "/escape.txt"}, {outside, root + "/linkdir"}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	tg := httpStart(t, 0, "--http-root="+root)
	st := StartStreamer(t, tg, "hostile")
	by := ConnectBystander(t, tg, st)

	client := &http.Client{Timeout: waitFor}
	for _, c := range []struct {
		path string
		want []int
	}{
		{"/", []int{200}},
		{"/escape.txt", []int{404}},
		{"/linkdir/secret.txt", []int{404}},
		{"/.env", []int{404}},
		{"/.git/config", []int{404}},
		{"/assets/", []int{404}},
		{"/" + strings.Repeat("a", 9<<10), []int{414}},
		{"/" + strings.Repeat("a", 200<<10), []int{414, 431}},
	} {
		resp, err := client.Get(tg.HTTPBase() + c.path)
		if err != nil {
			t.Fatalf("GET %.40s: %v", c.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		ok := false
		for _, w := range c.want {
			ok = ok || resp.StatusCode == w
		}
		if !ok {
			t.Errorf("GET %.40s: %s, want %v", c.path, resp.Status, c.want)
		}
		if s := string(body); strings.Contains(s, "SECRET") || strings.Contains(s, "app.js") {
			t.Errorf("GET %.40s served %.80q", c.path, s)
		}
	}
	tg.Finish(t, by, httpRSSBudget)
}
