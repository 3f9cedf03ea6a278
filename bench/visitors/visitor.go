package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"golang.org/x/net/html"
)

// The stages of one visit, in the order a browser passes them. Each is
// timed from the visitor's arrival (its first request).
const (
	stPage        = iota // the navigation answered with the player page (after the queue, when queued)
	stAssets             // the page's scripts and styles loaded
	stWebSocket          // the signalling WebSocket open
	stConfig             // the server's config message (ICE servers) received
	stOffer              // the streamer's offer received (after listStreamers and subscribe)
	stAnswer             // our answer sent
	stICE                // ICE connected
	stDTLS               // DTLS done: the peer connection is connected
	stFirstPacket        // the first video RTP packet
	stFirstFrame         // the first complete keyframe
	numStages
)

var stageNames = [numStages]string{"page", "assets", "websocket", "config", "offer", "answer",
	"ice_connected", "dtls_connected", "first_packet", "first_keyframe"}

// result is what one visitor saw.
type result struct {
	arrived  time.Time
	at       [numStages]time.Duration // since arrival; 0: not reached
	queued   bool
	assigned time.Time // queued visitors: when the gateway assigned a session
	left     time.Time // when the visitor closed its session
	frames   int       // complete frames after the first keyframe, within the watch window
	watched  time.Duration
	freezes  int
	frozen   time.Duration
	bytes    int64  // page and asset bytes as they came over the wire
	cand     string // local candidate type of the selected pair (host, srflx, relay)
	err      error
	failedIn string // the first stage not reached when err is set
}

func (r *result) fps() float64 {
	if r.watched <= 0 {
		return 0
	}
	return float64(r.frames) / r.watched.Seconds()
}

// config is the generator's setup, shared by every visitor.
type config struct {
	url      *url.URL
	streamer string        // streamer id to subscribe to; "" = the first listed
	turn     bool          // ICE transport policy relay (as ?ForceTURN)
	watch    time.Duration // how long frames are counted after the first keyframe
	hold     time.Duration // how long the visitor stays after the first keyframe (>= watch)
	timeout  time.Duration // arrival to first keyframe, at most
	insecure bool
	api      *webrtc.API
}

// newAPI is the WebRTC stack every visitor shares: VP8 and Opus like a
// browser's offer would accept, the default interceptors (NACK, RTCP
// reports: what a browser sends back), no mDNS (one multicast socket per
// visitor would cost more than the visitor).
func newAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// visitor is one simulated browser tab.
type visitor struct {
	cfg  *config
	res  *result
	http *http.Client
	jar  http.CookieJar

	mu      sync.Mutex
	reached [numStages]bool
	done    chan struct{} // first keyframe
	fail    chan error
	pc      *webrtc.PeerConnection
	pending []webrtc.ICECandidateInit
	ws      *websocket.Conn
	wsMu    sync.Mutex
}

func (v *visitor) mark(st int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.reached[st] {
		v.reached[st] = true
		v.res.at[st] = time.Since(v.res.arrived)
	}
}

func (v *visitor) failWith(err error) {
	select {
	case v.fail <- err:
	default:
	}
}

// visit runs one visitor from arrival to leaving; its result says how far
// it got and when.
func visit(ctx context.Context, cfg *config) *result {
	res := &result{arrived: time.Now()}
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: cfg.insecure}, //nolint:gosec // -insecure is the user's choice, for self-signed test setups
		DisableCompression:  true,                                          // bytes are counted as they came; Accept-Encoding is ours
		MaxIdleConnsPerHost: 6,
	}
	defer tr.CloseIdleConnections()
	v := &visitor{cfg: cfg, res: res, jar: jar, http: &http.Client{Jar: jar, Transport: tr, Timeout: cfg.timeout},
		done: make(chan struct{}), fail: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout+cfg.hold)
	defer cancel()
	err := v.run(ctx)
	v.close()
	res.left = time.Now()
	if err != nil {
		res.err = err
		v.mu.Lock()
		for st := 0; st < numStages; st++ {
			if !v.reached[st] {
				res.failedIn = stageNames[st]
				break
			}
		}
		v.mu.Unlock()
	}
	return res
}

func (v *visitor) close() {
	v.wsMu.Lock()
	if v.ws != nil {
		_ = v.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "visitor left"), time.Now().Add(time.Second))
		_ = v.ws.Close()
	}
	v.wsMu.Unlock()
	v.mu.Lock()
	pc := v.pc
	v.mu.Unlock()
	if pc != nil {
		_ = pc.Close()
	}
}

func (v *visitor) run(ctx context.Context) error {
	page, err := v.loadPage(ctx)
	if err != nil {
		return err
	}
	v.mark(stPage)
	if err := v.loadAssets(ctx, page); err != nil {
		return err
	}
	v.mark(stAssets)
	if err := v.connect(ctx, page); err != nil {
		return err
	}
	v.mark(stWebSocket)
	go v.readSignalling()
	deadline := time.NewTimer(time.Until(v.res.arrived.Add(v.cfg.timeout)))
	defer deadline.Stop()
	select {
	case <-v.done:
	case err := <-v.fail:
		return err
	case <-deadline.C:
		return fmt.Errorf("no complete keyframe within %s", v.cfg.timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	// Count frames over the watch window, then stay until hold is over.
	t := time.NewTimer(v.cfg.hold)
	defer t.Stop()
	select {
	case <-t.C:
	case err := <-v.fail:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	v.mu.Lock()
	if v.pc != nil && v.pc.SCTP() != nil {
		if pair, err := v.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
			v.res.cand = pair.Local.Typ.String()
		}
	}
	v.mu.Unlock()
	return nil
}

// get makes a request as a browser would and returns the body (decoded)
// and the final URL; the bytes that came over the wire are counted.
func (v *visitor) get(ctx context.Context, u *url.URL, navigate bool) ([]byte, *url.URL, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, 0, err
	}
	req.Header.Set("User-Agent", "pixelstream-bench-visitors")
	req.Header.Set("Accept-Encoding", "gzip")
	if navigate {
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Sec-Fetch-Dest", "document")
	} else {
		req.Header.Set("Accept", "*/*")
		req.Header.Set("Sec-Fetch-Mode", "cors")
		req.Header.Set("Sec-Fetch-Dest", "script")
	}
	resp, err := v.http.Do(req)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("GET %s: %w", u.Path, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	wire := &countingReader{r: io.LimitReader(resp.Body, 32<<20)}
	var body io.Reader = wire
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(wire)
		if err != nil {
			return nil, nil, resp.StatusCode, fmt.Errorf("GET %s: gzip: %w", u.Path, err)
		}
		body = zr
	} else if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return nil, nil, resp.StatusCode, fmt.Errorf("GET %s: Content-Encoding %q although only gzip was accepted", u.Path, ce)
	}
	b, err := io.ReadAll(body)
	v.mu.Lock()
	v.res.bytes += wire.n
	v.mu.Unlock()
	if err != nil {
		return nil, nil, resp.StatusCode, fmt.Errorf("GET %s: %w", u.Path, err)
	}
	return b, resp.Request.URL, resp.StatusCode, nil
}

type loadedPage struct {
	url  *url.URL
	body []byte
}

// loadPage opens the URL; a gateway's waiting page means the queue: wait
// for the assignment as the waiting page's script does, then load again.
func (v *visitor) loadPage(ctx context.Context) (*loadedPage, error) {
	for attempt := 0; attempt < 3; attempt++ {
		body, final, code, err := v.get(ctx, v.cfg.url, true)
		if err != nil {
			return nil, err
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("%s answered %d: %s", redacted(v.cfg.url.String()), code, firstLine(body))
		}
		if !isWaitingPage(body) {
			return &loadedPage{url: final, body: body}, nil
		}
		v.mu.Lock()
		v.res.queued = true
		v.mu.Unlock()
		if err := v.waitInLine(ctx, final); err != nil {
			return nil, fmt.Errorf("in the queue: %w", err)
		}
	}
	return nil, errors.New("still the waiting page after being assigned twice")
}

func isWaitingPage(b []byte) bool { return strings.Contains(string(b), "/gateway/queue/events") }

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// waitInLine follows the gateway's queue events until "assigned", then
// turns the ticket into the binding cookie (POST /gateway/enter) or, with
// route = redirect, follows the session's URL.
func (v *visitor) waitInLine(ctx context.Context, page *url.URL) error {
	ev := page.ResolveReference(&url.URL{Path: "/gateway/queue/events"})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ev.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	// The stream stays open while waiting: no client timeout on it.
	client := &http.Client{Jar: v.jar, Transport: v.http.Transport}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("queue events answered %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), 64<<10)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			switch event {
			case "full":
				return errors.New("the queue is full")
			case "assigned":
				v.mu.Lock()
				v.res.assigned = time.Now()
				v.mu.Unlock()
				var a struct{ Ticket, URL string }
				if err := json.Unmarshal([]byte(data), &a); err != nil {
					return fmt.Errorf("assigned event: %w", err)
				}
				if a.URL != "" {
					u, err := page.Parse(a.URL)
					if err != nil {
						return fmt.Errorf("assigned url: %w", err)
					}
					v.cfg = v.withURL(u)
					return nil
				}
				return v.enter(ctx, page, a.Ticket)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("queue events ended before an assignment")
}

// withURL is the visitor's own copy of the config, for a redirect route.
func (v *visitor) withURL(u *url.URL) *config {
	c := *v.cfg
	c.url = u
	return &c
}

func (v *visitor) enter(ctx context.Context, page *url.URL, ticket string) error {
	u := page.ResolveReference(&url.URL{Path: "/gateway/enter"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(ticket))
	if err != nil {
		return err
	}
	resp, err := v.http.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /gateway/enter answered %d", resp.StatusCode)
	}
	return nil
}

// loadAssets fetches what the page loads before its script can run: the
// scripts and stylesheets it names, in parallel as a browser does.
func (v *visitor) loadAssets(ctx context.Context, p *loadedPage) error {
	urls := assetURLs(p.url, p.body)
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() {
			_, _, code, err := v.get(ctx, u, false)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("GET %s answered %d", u.Path, code)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("assets: %w", err)
	}
	return nil
}

// assetURLs lists the scripts and stylesheets a page loads, resolved
// against its URL (same origin only: a visitor's page loads nothing else).
func assetURLs(base *url.URL, page []byte) []*url.URL {
	var out []*url.URL
	seen := map[string]bool{}
	add := func(ref string) {
		u, err := base.Parse(ref)
		if err != nil || u.Host != base.Host || seen[u.String()] || (u.Scheme != "http" && u.Scheme != "https") {
			return
		}
		seen[u.String()] = true
		out = append(out, u)
	}
	z := html.NewTokenizer(strings.NewReader(string(page)))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return out
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			attr := func(k string) string {
				for _, a := range t.Attr {
					if a.Key == k {
						return a.Val
					}
				}
				return ""
			}
			switch t.Data {
			case "script":
				if s := attr("src"); s != "" {
					add(s)
				}
			case "link":
				switch strings.ToLower(attr("rel")) {
				case "stylesheet", "modulepreload", "preload":
					if h := attr("href"); h != "" && !strings.HasPrefix(h, "data:") {
						add(h)
					}
				}
			}
		}
	}
}

// connect opens the signalling WebSocket on the page's origin, with the
// page's cookies and Origin, as Epic's frontend does.
func (v *visitor) connect(ctx context.Context, p *loadedPage) error {
	ws := *p.url
	ws.Scheme = map[string]string{"http": "ws", "https": "wss"}[p.url.Scheme]
	ws.Path, ws.RawPath, ws.Fragment = "/", "", ""
	d := websocket.Dialer{Jar: v.jar, HandshakeTimeout: 10 * time.Second,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: v.cfg.insecure}} //nolint:gosec // as above
	h := http.Header{"Origin": {p.url.Scheme + "://" + p.url.Host}, "User-Agent": {"pixelstream-bench-visitors"}}
	conn, resp, err := d.DialContext(ctx, ws.String(), h)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return fmt.Errorf("websocket: %w (HTTP %d)", err, resp.StatusCode)
		}
		return fmt.Errorf("websocket: %w", err)
	}
	conn.SetReadLimit(1 << 20)
	v.wsMu.Lock()
	v.ws = conn
	v.wsMu.Unlock()
	return nil
}

func (v *visitor) send(m any) {
	v.wsMu.Lock()
	defer v.wsMu.Unlock()
	if v.ws == nil {
		return
	}
	_ = v.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := v.ws.WriteJSON(m); err != nil {
		v.failWith(fmt.Errorf("signalling write: %w", err))
	}
}

// inbound is every field a visitor reads from a signalling message.
type inbound struct {
	Type                  string                   `json:"type"`
	SDP                   string                   `json:"sdp"`
	Candidate             *webrtc.ICECandidateInit `json:"candidate"`
	IDs                   []string                 `json:"ids"`
	Message               string                   `json:"message"`
	PeerConnectionOptions *struct {
		ICEServers []struct {
			URLs       json.RawMessage `json:"urls"`
			Username   string          `json:"username"`
			Credential string          `json:"credential"`
		} `json:"iceServers"`
	} `json:"peerConnectionOptions"`
}

func (v *visitor) readSignalling() {
	var servers []webrtc.ICEServer
	for {
		_, data, err := v.ws.ReadMessage()
		if err != nil {
			select {
			case <-v.done:
			default:
				v.failWith(fmt.Errorf("signalling closed: %w", err))
			}
			return
		}
		var m inbound
		if err := json.Unmarshal(data, &m); err != nil {
			v.failWith(fmt.Errorf("signalling sent non-JSON: %.80s", data))
			return
		}
		switch m.Type {
		case "config":
			v.mark(stConfig)
			if m.PeerConnectionOptions != nil {
				for _, s := range m.PeerConnectionOptions.ICEServers {
					var urls []string
					if json.Unmarshal(s.URLs, &urls) != nil {
						var one string
						_ = json.Unmarshal(s.URLs, &one)
						urls = []string{one}
					}
					servers = append(servers, webrtc.ICEServer{URLs: urls, Username: s.Username, Credential: s.Credential})
				}
			}
			v.send(map[string]string{"type": "listStreamers"})
		case "streamerList":
			id := v.cfg.streamer
			if id == "" && len(m.IDs) > 0 {
				id = m.IDs[0]
			}
			if id == "" {
				v.failWith(errors.New("no streamer listed"))
				return
			}
			v.send(map[string]string{"type": "subscribe", "streamerId": id})
		case "subscribeFailed":
			v.failWith(fmt.Errorf("subscribe failed: %s", m.Message))
			return
		case "offer":
			v.mark(stOffer)
			if err := v.answer(m.SDP, servers); err != nil {
				v.failWith(fmt.Errorf("answer: %w", err))
				return
			}
			v.mark(stAnswer)
		case "iceCandidate":
			if m.Candidate != nil {
				v.addCandidate(*m.Candidate)
			}
		}
	}
}

func (v *visitor) addCandidate(c webrtc.ICECandidateInit) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pc == nil || v.pc.RemoteDescription() == nil {
		v.pending = append(v.pending, c)
		return
	}
	if c.Candidate != "" {
		_ = v.pc.AddICECandidate(c)
	}
}

func (v *visitor) answer(sdp string, servers []webrtc.ICEServer) error {
	pcfg := webrtc.Configuration{ICEServers: servers}
	if v.cfg.turn {
		pcfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := v.cfg.api.NewPeerConnection(pcfg)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.pc = pc
	v.mu.Unlock()
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			v.send(map[string]any{"type": "iceCandidate", "candidate": c.ToJSON()})
		}
	})
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			v.mark(stICE)
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			v.mark(stDTLS)
		case webrtc.PeerConnectionStateFailed:
			v.failWith(errors.New("peer connection failed"))
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			v.readVideo(tr)
			return
		}
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
		}
	})
	// The streamer's data channel opens as in a browser; input is not sent.
	pc.OnDataChannel(func(*webrtc.DataChannel) {})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		return err
	}
	v.send(map[string]any{"type": "answer", "sdp": ans.SDP})
	v.mu.Lock()
	pending := v.pending
	v.pending = nil
	v.mu.Unlock()
	for _, c := range pending {
		if c.Candidate != "" {
			_ = pc.AddICECandidate(c)
		}
	}
	return nil
}

// readVideo waits for the first complete keyframe, then counts complete
// frames for the watch window and the freezes among them as Chrome
// counts them (a gap longer than max(3 x the mean frame interval, the
// mean + 150 ms)).
func (v *visitor) readVideo(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	asm := newFrameAssembler()
	var first, last time.Time
	var mean time.Duration
	frames := 0
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		now := time.Now()
		v.mark(stFirstPacket)
		f, ok := asm.push(&pkt)
		if !ok {
			continue
		}
		if first.IsZero() {
			if !f.key {
				continue
			}
			first, last = now, now
			v.mark(stFirstFrame)
			close(v.done)
			continue
		}
		if now.Sub(first) > v.cfg.watch {
			v.mu.Lock()
			v.res.frames, v.res.watched = frames, last.Sub(first)
			v.mu.Unlock()
			// Keep reading so the interceptors see a live receiver.
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
			}
		}
		gap := now.Sub(last)
		if frames > 0 && gap > max(3*mean, mean+150*time.Millisecond) {
			v.mu.Lock()
			v.res.freezes++
			v.res.frozen += gap
			v.mu.Unlock()
		}
		frames++
		mean += (gap - mean) / time.Duration(min(frames, 30))
		last = now
		v.mu.Lock()
		v.res.frames, v.res.watched = frames, last.Sub(first)
		v.mu.Unlock()
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
