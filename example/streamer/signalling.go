package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/pion/webrtc/v4"
)

// protocolVersion is the signalling protocol Unreal 5.5 announces.
const protocolVersion = "1.3.0"

// Defaults of PixelStreaming2's signalling client, which the stand-in
// copies: after a lost socket it reconnects every 2 s for as long as it
// runs, and it sends a keep-alive ping message every 30 s. Both can be set
// on the command line as with Unreal (-PixelStreamingSignallingReconnectInterval,
// -PixelStreamingSignallingKeepAliveInterval, in seconds).
const (
	defaultReconnectInterval = 2 * time.Second
	defaultKeepAliveInterval = 30 * time.Second
)

// deadAfterKeepAlives is how many keep-alive intervals the socket may stay
// silent (no message, pong or ping frame) before the streamer counts it as
// lost and reconnects: a socket whose peer vanished without a close (a
// dropped network path) is noticed by the streamer, not only by the server.
const deadAfterKeepAlives = 2

// inbound is every field the streamer reads from a signalling message.
type inbound struct {
	Type                  string                   `json:"type"`
	CommittedID           string                   `json:"committedId"`
	PlayerID              string                   `json:"playerId"`
	DataChannel           bool                     `json:"dataChannel"`
	SFU                   bool                     `json:"sfu"`
	SDP                   string                   `json:"sdp"`
	Candidate             *webrtc.ICECandidateInit `json:"candidate"`
	PeerConnectionOptions *peerConnectionOptions   `json:"peerConnectionOptions"`
	Reason                string                   `json:"reason"`
}

// peerConnectionOptions is the part of config.peerConnectionOptions the
// streamer uses. The browser's RTCConfiguration allows "urls" to be one
// string or a list, so it is decoded by hand.
type peerConnectionOptions struct {
	ICEServers []struct {
		URLs       json.RawMessage `json:"urls"`
		Username   string          `json:"username"`
		Credential string          `json:"credential"`
	} `json:"iceServers"`
}

func (p *peerConnectionOptions) servers() ([]webrtc.ICEServer, error) {
	var out []webrtc.ICEServer
	for i, s := range p.ICEServers {
		var urls []string
		if err := json.Unmarshal(s.URLs, &urls); err != nil {
			var one string
			if err := json.Unmarshal(s.URLs, &one); err != nil {
				return nil, fmt.Errorf("config.peerConnectionOptions.iceServers[%d].urls: want a string or a list of strings, got %s", i, s.URLs)
			}
			urls = []string{one}
		}
		out = append(out, webrtc.ICEServer{URLs: urls, Username: s.Username, Credential: s.Credential})
	}
	return out, nil
}

// players is what the signalling client drives; peerManager implements it.
type players interface {
	setICEServers([]webrtc.ICEServer)
	connected(playerID string, dataChannel, sfu bool)
	answer(playerID, sdp string)
	candidate(playerID string, c webrtc.ICECandidateInit)
	disconnected(playerID string)
	closeAll()
}

// signalClient keeps the streamer's WebSocket to the signalling server up.
type signalClient struct {
	url     string
	id      string
	log     hclog.Logger
	players players
	// reconnect and keepAlive are the intervals above; zero means the default.
	reconnect, keepAlive time.Duration

	mu   sync.Mutex
	conn *websocket.Conn
}

// run connects, serves the connection until it drops, and reconnects every
// reconnect interval until ctx ends, as PixelStreaming2 does.
func (c *signalClient) run(ctx context.Context) {
	every := c.reconnect
	if every <= 0 {
		every = defaultReconnectInterval
	}
	for {
		err := c.session(ctx)
		c.players.closeAll()
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("signalling connection lost; reconnecting", "url", c.url, "error", err, "retry_in", every)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// session serves one connection until it fails or goes silent.
func (c *signalClient) session(ctx context.Context) error {
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := dialer.DialContext(ctx, c.url, http.Header{})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return fmt.Errorf("connect to signalling %s: %w", c.url, err)
	}
	c.log.Info("connected to signalling", "url", c.url)
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "streamer shutting down"), time.Now().Add(time.Second))
		conn.Close()
	})
	defer func() {
		stop()
		c.mu.Lock()
		c.conn = nil
		c.mu.Unlock()
		conn.Close()
	}()

	keepAlive := c.keepAlive
	if keepAlive <= 0 {
		keepAlive = defaultKeepAliveInterval
	}
	alive := func() { _ = conn.SetReadDeadline(time.Now().Add(deadAfterKeepAlives * keepAlive)) }
	alive()
	conn.SetPingHandler(func(data string) error {
		alive()
		c.mu.Lock()
		defer c.mu.Unlock()
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
	})
	conn.SetPongHandler(func(string) error { alive(); return nil })
	pings := time.NewTicker(keepAlive)
	defer pings.Stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-pings.C:
				// The signalling protocol's own keep-alive, answered with a
				// pong message by the server.
				if err := c.send(map[string]any{"type": "ping", "time": time.Now().Unix()}); err != nil {
					c.log.Debug("keep-alive ping not sent", "error", err)
				}
			}
		}
	}()

	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("read from signalling: %w", err)
		}
		alive()
		var m inbound
		if err := json.Unmarshal(data, &m); err != nil {
			c.log.Warn("ignoring signalling message that is not JSON", "error", err)
			continue
		}
		c.dispatch(m)
	}
}

func (c *signalClient) dispatch(m inbound) {
	switch m.Type {
	case "identify":
		if err := c.send(map[string]any{"type": "endpointId", "id": c.id, "protocolVersion": protocolVersion}); err != nil {
			c.log.Error("send endpointId", "error", err)
		}
	case "config":
		if m.PeerConnectionOptions == nil {
			c.players.setICEServers(nil)
			return
		}
		servers, err := m.PeerConnectionOptions.servers()
		if err != nil {
			c.log.Error("unusable ICE servers in config; peers will use host candidates only", "error", err)
			servers = nil
		}
		c.players.setICEServers(servers)
	case "endpointIdConfirm":
		c.log.Info("identified", "streamer_id", m.CommittedID)
	case "playerConnected":
		if m.PlayerID == "" {
			c.log.Warn("playerConnected without playerId; ignored")
			return
		}
		c.players.connected(m.PlayerID, m.DataChannel, m.SFU)
	case "answer":
		c.players.answer(m.PlayerID, m.SDP)
	case "iceCandidate":
		if m.Candidate == nil {
			c.log.Warn("iceCandidate without candidate; ignored", "player", m.PlayerID)
			return
		}
		c.players.candidate(m.PlayerID, *m.Candidate)
	case "playerDisconnected":
		c.players.disconnected(m.PlayerID)
	case "ping":
		// Servers ping players, not streamers; answering would be unsolicited.
	case "pong":
		// The answer to our keep-alive; reading it already proved the socket alive.
	default:
		c.log.Debug("signalling message not handled by the stand-in", "type", m.Type)
	}
}

// send writes one JSON message; safe for concurrent use.
func (c *signalClient) send(v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return errors.New("not connected to signalling")
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.conn.WriteJSON(v); err != nil {
		return fmt.Errorf("write to signalling: %w", err)
	}
	return nil
}
