// Command gateway measures the gateway's own costs, printed as a Markdown
// table: the signalling round trip it adds as a reverse proxy (p50/p99 over
// 2000 round trips, direct vs through the gateway), and its memory with
// 10,000 visitors waiting in the queue, each holding the waiting page's
// event stream open.
//
// The gateway runs as its own process (build/nomad-driver-pixelstream
// gateway); the session is a real signalling server with claims; a FAKE
// Nomad HTTP API (named so: a handful of canned answers) stands in for
// Nomad, because these figures are the gateway's, not Nomad's. The figures
// that need Nomad and a browser (arrival to first frame warm and cold,
// session end to the next visitor's first frame) come from the e2e
// benchmark: PIXELSTREAM_BENCH=1 go test -tags e2e -run TestBenchGateway ./e2e/.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

const (
	secret    = "bench-gateway-secret-0123456789abcdef"
	opToken   = "bench-operator-token-0123456789abcdef"
	rtts      = 2000
	queued    = 10000
	service   = "pixelstream-session"
	childJob  = service + "/dispatch-bench"
	allocID   = "00000000-0000-0000-0000-0000000000b1"
	nodeID    = "00000000-0000-0000-0000-0000000000a1"
	readyWait = 30 * time.Second
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench gateway:", err)
		os.Exit(1)
	}
}

func run() error {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)

	// The session: a real signalling server in a gateway's pool, with a
	// stand-in streamer that answers nothing (the round trip measured is
	// the player's listStreamers, answered by the server itself).
	sig, err := playerhttp.Start(signalling.Config{StreamerListen: "127.0.0.1:0",
		Logger: hclog.NewNullLogger(),
		Limits: signalling.Limits{MessagesPerSecond: 1e6, Burst: 1e6}},
		playerhttp.Config{Listen: "127.0.0.1:0", Claim: playerhttp.ClaimConfig{Secret: secret, AllocID: allocID, TTL: time.Hour},
			Logger: hclog.NewNullLogger()})
	if err != nil {
		return err
	}
	defer func() { _ = sig.Shutdown(context.Background()) }()
	st, _, err := websocket.DefaultDialer.Dial("ws://"+sig.StreamerAddr().String()+"/", nil)
	if err != nil {
		return fmt.Errorf("streamer: %w", err)
	}
	defer st.Close()
	go func() {
		for {
			var m map[string]any
			if err := st.ReadJSON(&m); err != nil {
				return
			}
			if m["type"] == "identify" {
				_ = st.WriteJSON(map[string]any{"type": "endpointId", "id": "DefaultStreamer", "protocolVersion": signalling.ProtocolVersion})
			}
		}
	}()

	nomadAddr, stopNomad, err := fakeNomad(sig.PlayerAddr().String())
	if err != nil {
		return err
	}
	defer stopNomad()

	gwAddr, opAddr, gwPid, stopGW, err := startGateway(nomadAddr)
	if err != nil {
		return err
	}
	defer stopGW()

	// One visitor claims the only session; the player token derives from
	// the claim id the session reports (what the gateway does).
	jar, err := claimThroughGateway(gwAddr, opAddr)
	if err != nil {
		return err
	}
	tok, err := playerToken(sig.PlayerAddr().String())
	if err != nil {
		return err
	}
	direct, err := measureRTT("ws://"+sig.PlayerAddr().String()+"/", http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	proxied, err := measureRTT("ws://"+gwAddr+"/", http.Header{"Cookie": {jar}, "Origin": {"http://" + gwAddr}})
	if err != nil {
		return fmt.Errorf("through the gateway: %w", err)
	}

	rssBefore := rss(gwPid)
	held, err := queueVisitors(gwAddr, queued)
	if err != nil {
		return err
	}
	rssAfter := rss(gwPid)
	for _, c := range held {
		_ = c.Close()
	}

	fmt.Println("| figure | value |")
	fmt.Println("|---|---|")
	fmt.Printf("| signalling round trip direct, p50 / p99 | %s / %s |\n", ms(pct(direct, 50)), ms(pct(direct, 99)))
	fmt.Printf("| signalling round trip through the gateway, p50 / p99 | %s / %s |\n", ms(pct(proxied, 50)), ms(pct(proxied, 99)))
	fmt.Printf("| added by the gateway's proxy, p99 | %s |\n", ms(pct(proxied, 99)-pct(direct, 99)))
	fmt.Printf("| gateway memory (RSS) idle, with one proxied visitor | %.1f MiB |\n", float64(rssBefore)/(1<<20))
	fmt.Printf("| gateway memory (RSS) with %d visitors queued (event streams open) | %.1f MiB (%.1f KiB per waiting visitor) |\n",
		len(held), float64(rssAfter)/(1<<20), float64(rssAfter-rssBefore)/1024/float64(max(1, len(held))))
	return nil
}

// fakeNomad is a FAKE of the four Nomad endpoints the gateway uses: one
// running child of the session job, one registration at sessionAddr.
// Blocking queries are held until the client gives up (nothing changes).
func fakeNomad(sessionAddr string) (string, func(), error) {
	host, portS, _ := net.SplitHostPort(sessionAddr)
	port, _ := strconv.Atoi(portS)
	mux := http.NewServeMux()
	answer := func(w http.ResponseWriter, r *http.Request, v any) {
		if r.URL.Query().Get("index") != "" {
			<-r.Context().Done() // nothing ever changes
			return
		}
		w.Header().Set("X-Nomad-Index", "1")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/service/{name}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, []map[string]any{{"ID": "reg-1", "ServiceName": service, "Namespace": "default", "NodeID": nodeID, "JobID": childJob,
			"AllocID": allocID, "Address": host, "Port": port}})
	})
	mux.HandleFunc("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, []map[string]any{{"ID": childJob, "ParentID": service, "Status": "running"}})
	})
	mux.HandleFunc("GET /v1/allocation/{id}", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"ID": allocID, "Namespace": "default", "NodeID": nodeID, "JobID": childJob,
			"ClientStatus": "running", "Job": map[string]any{"ID": childJob, "ParentID": service, "Dispatched": true}})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "fake Nomad: not part of the benchmark", http.StatusInternalServerError)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func startGateway(nomadAddr string) (addr, opAddr string, pid int, stop func(), err error) {
	free := func() (string, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		defer ln.Close()
		return ln.Addr().String(), nil
	}
	if addr, err = free(); err != nil {
		return "", "", 0, nil, err
	}
	if opAddr, err = free(); err != nil {
		return "", "", 0, nil, err
	}
	root, _ := filepath.Abs(".")
	bin := filepath.Join(root, "build", "nomad-driver-pixelstream")
	cmd := exec.Command(bin, "gateway", "-listen", addr, "-nomad-addr", nomadAddr, "-min-free", "0",
		"-max-sessions", "1", "-max-queue", strconv.Itoa(queued+100), "-log-level", "warn", "-operator-listen", opAddr,
		// Every waiting visitor of this benchmark comes from 127.0.0.1.
		"-max-waiting-per-address", strconv.Itoa(queued+100), "-max-event-streams", strconv.Itoa(queued+100))
	cmd.Env = append(os.Environ(), "PIXELSTREAM_GATEWAY_SECRET="+secret, "PIXELSTREAM_OPERATOR_TOKEN="+opToken)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", "", 0, nil, fmt.Errorf("start %s gateway (make build): %w", bin, err)
	}
	stop = func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }
	deadline := time.Now().Add(readyWait)
	for {
		// Ready when the gateway sees the session free.
		if sessionFree(opAddr) {
			return addr, opAddr, cmd.Process.Pid, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", "", 0, nil, fmt.Errorf("the gateway did not see the session free within %s", readyWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sessionFree asks the gateway's operator endpoint whether it sees the
// session free.
func sessionFree(opAddr string) bool {
	req, _ := http.NewRequest(http.MethodGet, "http://"+opAddr+"/api/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+opToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return strings.Contains(string(b), `"state": "free"`)
}

// claimThroughGateway is a visitor's first page load; it returns the
// cookies to send on.
func claimThroughGateway(addr, opAddr string) (cookies string, err error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var parts []string
	bound := false
	for _, c := range resp.Cookies() {
		parts = append(parts, c.Name+"="+c.Value)
		bound = bound || c.Name == "pixelstream_session"
	}
	if !bound || sessionFree(opAddr) {
		return "", fmt.Errorf("the gateway gave the visitor no session (HTTP %d)", resp.StatusCode)
	}
	return strings.Join(parts, "; "), nil
}

// playerToken is the current claim's player token, derived as the gateway
// derives it: the claim id from the session's signed state, the key from
// the fleet secret and the allocation.
func playerToken(sessionAddr string) (string, error) {
	key := claim.SessionKey(secret, allocID)
	req, _ := http.NewRequest(http.MethodGet, "http://"+sessionAddr+claim.Path, nil)
	claim.Authorize(req, key, nil, time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var st claim.Response
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Claim == "" {
		return "", fmt.Errorf("the session's claim state names no claim (HTTP %d): %v", resp.StatusCode, err)
	}
	return claim.PlayerToken(key, st.Claim), nil
}

// measureRTT sends listStreamers and waits for the streamerList, rtts times.
func measureRTT(u string, h http.Header) ([]time.Duration, error) {
	ws, resp, err := websocket.DefaultDialer.Dial(u, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	defer ws.Close()
	var m map[string]any
	if err := ws.ReadJSON(&m); err != nil { // config
		return nil, err
	}
	out := make([]time.Duration, 0, rtts)
	for i := 0; i < rtts+50; i++ {
		t0 := time.Now()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"listStreamers"}`)); err != nil {
			return nil, err
		}
		for {
			if err := ws.ReadJSON(&m); err != nil {
				return nil, err
			}
			if m["type"] == "streamerList" {
				break
			}
		}
		if i >= 50 { // warm-up
			out = append(out, time.Since(t0))
		}
	}
	return out, nil
}

// queueVisitors opens n waiting pages' event streams (each a visitor of
// its own) and returns once the gateway counts them all in its queue.
func queueVisitors(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var firstErr error
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.Dial("tcp", addr)
			if err == nil {
				visitor := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("v%015d", i)))
				_, err = fmt.Fprintf(c, "GET /gateway/queue/events HTTP/1.1\r\nHost: %s\r\nCookie: pixelstream_visitor=%s\r\nAccept: text/event-stream\r\n\r\n", addr, visitor)
			}
			if err == nil {
				// Wait for the first position event: the visitor is in line.
				_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, rerr := br.ReadString('\n')
					if rerr != nil {
						err = rerr
						break
					}
					if strings.HasPrefix(line, "event: position") {
						break
					}
				}
				_ = c.SetReadDeadline(time.Time{})
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("visitor %d: %w", i, err)
				}
				if c != nil {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		for _, c := range conns {
			c.Close()
		}
		return nil, firstErr
	}
	return conns, nil
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000) }
