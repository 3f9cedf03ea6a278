package signalling

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// ProtocolVersion is the signalling protocol version the server speaks (UE 5.5 and later).
const ProtocolVersion = "1.3.0"

// Config configures a signalling server. The zero value of every optional field
// means its default.
type Config struct {
	// StreamerListen is the "host:port" the Unreal streamer connects to.
	StreamerListen string
	// SFUListen is the "host:port" of the SFU endpoint; "" disables it.
	SFUListen string
	// StreamerID is the session's own streamer's id (task config
	// streamer_id). When that streamer connects again while its previous
	// connection is still open (a PixelStreaming2 streamer reconnects every
	// 2 s after a lost socket, before the ping sweep notices the stale one),
	// the new connection takes the old one's place under the same id
	// instead of being listed as StreamerID1; see sameStreamerReturns.
	// "" keeps Epic's rule for every id: a taken id gets a number suffix.
	// When set it is also the streamer Ready (/readyz) waits for: other ids
	// on the streamer port do not make the session ready.
	StreamerID string
	// MaxPlayers caps the players subscribed to one streamer; 0 = unlimited.
	MaxPlayers int
	// StreamerKey, when set, is required from streamers: they connect to
	// ws://<streamer addr>/<key>; any other path is refused with 401 at
	// the upgrade. A session always sets one and tells only its app.
	StreamerKey string
	// StreamerPeer, when set, vets a streamer's TCP connection before its
	// upgrade (a session refuses processes of other users on the node).
	StreamerPeer func(local, remote net.Addr) error
	// PeerConnectionOptions is the static peerConnectionOptions object sent in
	// config messages; nil means {}.
	PeerConnectionOptions json.RawMessage
	// Limits bounds what one connection may do; the zero value means defaults.
	Limits Limits
	// Hooks lets the embedding session observe and extend the server.
	Hooks Hooks
	// Registry receives the server's metrics; nil means a private registry.
	Registry *prometheus.Registry
	// Logger receives the server's logs; nil means a default hclog logger.
	Logger hclog.Logger
}

// Limits bounds what one connection may do. A zero field means its default.
type Limits struct {
	// MaxMessageBytes is the largest message accepted (default 64 KiB).
	MaxMessageBytes int64
	// MessagesPerSecond and Burst rate-limit each player and SFU connection
	// (defaults 100 and 400).
	MessagesPerSecond float64
	Burst             int
	// StreamerMessagesPerSecond and StreamerBurst rate-limit each streamer
	// connection, which carries the traffic of all its players (defaults
	// 20000 and 40000).
	StreamerMessagesPerSecond float64
	StreamerBurst             int
	// IdentifyTimeout is how long a streamer has to send endpointId (default 30s).
	IdentifyTimeout time.Duration
	// SubscribeTimeout is how long a player has to subscribe (default 2m).
	SubscribeTimeout time.Duration
	// MaxConnections caps all WebSocket connections together (default 10000).
	MaxConnections int
	// SendQueue is how many messages may wait for a slow player or SFU before it
	// is closed (default 256); StreamerSendQueue the same for a streamer (default 65536).
	SendQueue         int
	StreamerSendQueue int
	// SendQueueBytes bounds the bytes waiting for one player or SFU (default
	// 1 MiB); past it the peer is dropped as too slow. StreamerSendQueueBytes
	// does the same for a streamer (default 8 MiB), except that a player
	// whose message would take the streamer's queue within an eighth of it
	// is closed with 1013 instead, so players cannot drop the streamer.
	// Each must be at least MaxMessageBytes.
	SendQueueBytes         int64
	StreamerSendQueueBytes int64
	// MaxPendingBytes bounds the bytes held in messages still arriving
	// (partial frames and unfinished fragmented messages) across all
	// connections together (default 16 MiB, at least MaxMessageBytes); a
	// peer whose message would go over it is closed with 1013.
	MaxPendingBytes int64
	// FrameTimeout is how long a frame may take to arrive once its first
	// byte has (default 5s); a peer that stalls in the middle of a frame is
	// dropped.
	FrameTimeout time.Duration
	// WriteTimeout bounds one frame write (default 10s).
	WriteTimeout time.Duration
	// PingInterval is how often WebSocket ping frames probe idle peers
	// (default 20s); a peer silent for PongTimeout (default 60s) is closed.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// MaxConnectionsPerAddress caps the TCP connections (HTTP and WebSocket)
	// one remote address holds on the player port: an IPv4 address or an
	// IPv6 /64 (default 32).
	MaxConnectionsPerAddress int
	// MaxPlayerConnections caps all TCP connections on the player port
	// (default 10000); MaxStreamerConnections those on the streamer port and
	// on the SFU port each (default 64), a budget players cannot touch.
	MaxPlayerConnections   int
	MaxStreamerConnections int
	// HTTP timeouts of every endpoint: the request header (default 10s), a
	// whole non-upgrade request (default 30s), writing a response (default
	// 60s) and an idle keep-alive connection (default 60s). Upgraded
	// WebSockets drop these and keep their own per-frame deadlines.
	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration
	HTTPWriteTimeout      time.Duration
	HTTPIdleTimeout       time.Duration
	// MaxHeaderBytes caps a request's header, request line included
	// (default 32 KiB); MaxURLBytes caps its URL (default 8 KiB, 414 beyond).
	MaxHeaderBytes int
	MaxURLBytes    int
	// FullProbe is how long a subscribe to a full streamer waits for its
	// players to answer a ping before those that did not are dropped
	// (default 2s): a player reconnecting after a network blip gets back in.
	FullProbe time.Duration
}

// Hooks lets the session plug TURN credentials, the TURN peer policy and task
// events in without this package importing them. Every field is optional,
// must be safe for concurrent use and must return quickly: hooks run on the
// loops that read connections.
type Hooks struct {
	// PlayerPeerOptions returns the peerConnectionOptions for this player's
	// config message; a nil result means the static options.
	PlayerPeerOptions func(playerID string) json.RawMessage
	// StreamerSDP and StreamerCandidate see every SDP and ICE candidate line
	// the streamer sends towards playerID, before the player receives it.
	StreamerSDP       func(playerID, sdp string)
	StreamerCandidate func(playerID, candidate string)
	// Event reports streamers and players coming and going.
	Event func(Event)
	// StreamerPeerOptions returns the peerConnectionOptions for a streamer
	// connection's config message (its own TURN credentials, so it gathers
	// relay candidates as Epic's stack lets it); key names the connection,
	// as PlayerSDP, PlayerCandidate and StreamerLeft do. nil: static options.
	StreamerPeerOptions func(key string) json.RawMessage
	// PlayerSDP and PlayerCandidate see every SDP and ICE candidate line
	// player playerID sends towards the streamer connection key (TURN gives
	// each player a bounded share of the streamer's allow-list).
	PlayerSDP       func(key, playerID, sdp string)
	PlayerCandidate func(key, playerID, candidate string)
	// StreamerLeft reports a streamer connection closing.
	StreamerLeft func(key string)
	// PlayerLeft reports every player connection closing, subscribed or
	// not (TURN revokes the credentials its config message carried).
	PlayerLeft func(playerID string)
}

// EventKind says what an Event reports.
type EventKind int

// The events reported through Hooks.Event.
const (
	StreamerIdentified EventKind = iota + 1
	StreamerDisconnected
	PlayerConnected // the player subscribed to a streamer
	PlayerDisconnected
	// StreamerReconnected: the session's streamer came back on a new
	// connection and replaced its stale one under the same id; the
	// streamer count did not change (readiness is kept).
	StreamerReconnected
)

func (k EventKind) String() string {
	switch k {
	case StreamerIdentified:
		return "streamer identified"
	case StreamerDisconnected:
		return "streamer disconnected"
	case PlayerConnected:
		return "player connected"
	case PlayerDisconnected:
		return "player disconnected"
	case StreamerReconnected:
		return "streamer reconnected"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one streamer or player change, with the counts after it.
type Event struct {
	Kind       EventKind
	StreamerID string
	PlayerID   string
	Streamers  int // identified (listed) streamers
	Players    int // players subscribed to a streamer
	// Quality, on a PlayerDisconnected event of a player that reported
	// its stream quality, is the summary line ("played 4m12s, 59.8 fps,
	// 0 freezes, relay").
	Quality string
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = 64 << 10
	}
	if l.MessagesPerSecond == 0 {
		l.MessagesPerSecond = 100
	}
	if l.StreamerMessagesPerSecond == 0 {
		l.StreamerMessagesPerSecond = 20000
	}
	def(&l.Burst, 400)
	def(&l.StreamerBurst, 40000)
	def(&l.MaxConnections, 10000)
	def(&l.SendQueue, 256)
	def(&l.StreamerSendQueue, 65536)
	defDur(&l.IdentifyTimeout, 30*time.Second)
	defDur(&l.SubscribeTimeout, 2*time.Minute)
	defDur(&l.WriteTimeout, 10*time.Second)
	def64 := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def64(&l.SendQueueBytes, 1<<20)
	def64(&l.StreamerSendQueueBytes, 8<<20)
	def64(&l.MaxPendingBytes, 16<<20)
	defDur(&l.FrameTimeout, 5*time.Second)
	defDur(&l.PingInterval, 20*time.Second)
	defDur(&l.PongTimeout, 60*time.Second)
	defDur(&l.FullProbe, 2*time.Second)
	def(&l.MaxConnectionsPerAddress, 32)
	def(&l.MaxPlayerConnections, 10000)
	def(&l.MaxStreamerConnections, 64)
	defDur(&l.HTTPReadHeaderTimeout, 10*time.Second)
	defDur(&l.HTTPReadTimeout, 30*time.Second)
	defDur(&l.HTTPWriteTimeout, 60*time.Second)
	defDur(&l.HTTPIdleTimeout, 60*time.Second)
	def(&l.MaxHeaderBytes, 32<<10)
	def(&l.MaxURLBytes, 8<<10)
	return l
}

func (l Limits) validate() error {
	var errs []error
	neg := func(name string, bad bool) {
		if bad {
			errs = append(errs, fmt.Errorf("limits.%s must not be negative", name))
		}
	}
	neg("MaxMessageBytes", l.MaxMessageBytes < 0)
	neg("MessagesPerSecond", l.MessagesPerSecond < 0)
	neg("Burst", l.Burst < 0)
	neg("StreamerMessagesPerSecond", l.StreamerMessagesPerSecond < 0)
	neg("StreamerBurst", l.StreamerBurst < 0)
	neg("IdentifyTimeout", l.IdentifyTimeout < 0)
	neg("SubscribeTimeout", l.SubscribeTimeout < 0)
	neg("MaxConnections", l.MaxConnections < 0)
	neg("SendQueue", l.SendQueue < 0)
	neg("StreamerSendQueue", l.StreamerSendQueue < 0)
	neg("WriteTimeout", l.WriteTimeout < 0)
	neg("SendQueueBytes", l.SendQueueBytes < 0)
	neg("StreamerSendQueueBytes", l.StreamerSendQueueBytes < 0)
	neg("MaxPendingBytes", l.MaxPendingBytes < 0)
	neg("FrameTimeout", l.FrameTimeout < 0)
	if len(errs) == 0 {
		// A budget smaller than one message would refuse every large message.
		d := l.withDefaults()
		atLeastMessage := func(name string, v int64) {
			if v < d.MaxMessageBytes {
				errs = append(errs, fmt.Errorf("limits.%s (%d) must be at least MaxMessageBytes (%d)", name, v, d.MaxMessageBytes))
			}
		}
		atLeastMessage("SendQueueBytes", d.SendQueueBytes)
		atLeastMessage("StreamerSendQueueBytes", d.StreamerSendQueueBytes)
		atLeastMessage("MaxPendingBytes", d.MaxPendingBytes)
	}
	neg("PingInterval", l.PingInterval < 0)
	neg("PongTimeout", l.PongTimeout < 0)
	neg("FullProbe", l.FullProbe < 0)
	neg("MaxConnectionsPerAddress", l.MaxConnectionsPerAddress < 0)
	neg("MaxPlayerConnections", l.MaxPlayerConnections < 0)
	neg("MaxStreamerConnections", l.MaxStreamerConnections < 0)
	neg("HTTPReadHeaderTimeout", l.HTTPReadHeaderTimeout < 0)
	neg("HTTPReadTimeout", l.HTTPReadTimeout < 0)
	neg("HTTPWriteTimeout", l.HTTPWriteTimeout < 0)
	neg("HTTPIdleTimeout", l.HTTPIdleTimeout < 0)
	neg("MaxHeaderBytes", l.MaxHeaderBytes < 0)
	neg("MaxURLBytes", l.MaxURLBytes < 0)
	return errors.Join(errs...)
}

func (c *Config) validate() error {
	var errs []error
	checkAddr := func(name, addr string, required bool) {
		if addr == "" {
			if required {
				errs = append(errs, fmt.Errorf("%s is required (host:port, e.g. 127.0.0.1:0)", name))
			}
			return
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not host:port: %w", name, addr, err))
		}
	}
	checkAddr("StreamerListen", c.StreamerListen, true)
	checkAddr("SFUListen", c.SFUListen, false)
	if c.MaxPlayers < 0 {
		errs = append(errs, fmt.Errorf("MaxPlayers must be 0 (unlimited) or positive, got %d", c.MaxPlayers))
	}
	if len(c.PeerConnectionOptions) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(c.PeerConnectionOptions, &obj); err != nil || obj == nil {
			errs = append(errs, fmt.Errorf("PeerConnectionOptions must be a JSON object (e.g. {\"iceServers\":[]}): %v", err))
		}
	}
	if err := c.Limits.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
