package signalling

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a message or connection is refused, the label of
// pixelstream_signalling_rejected_total.
const (
	reasonInvalid          = "invalid_message"
	reasonUnexpected       = "unexpected_type"
	reasonTooBig           = "message_too_big"
	reasonRateLimit        = "rate_limit"
	reasonIdentifyTimeout  = "identify_timeout"
	reasonSubscribeTimeout = "subscribe_timeout"
	reasonMaxPlayers       = "max_players"
	reasonMaxConnections   = "max_connections"
	reasonSendQueueFull    = "send_queue_full"
	reasonPingTimeout      = "ping_timeout"
	reasonUnknownStreamer  = "unknown_streamer"
	reasonUnknownPlayer    = "unknown_player"
	reasonNoPlayerID       = "missing_player_id"
	reasonNotSubscribed    = "not_subscribed"
	reasonBadUpgrade       = "bad_upgrade"
	reasonUnauthorized     = "unauthorized"
	reasonReplaced         = "replaced_by_reconnect"
	reasonBadOrigin        = "bad_origin"
	reasonFrameTimeout     = "frame_timeout"  // stalled in the middle of a frame
	reasonPendingBudget    = "pending_budget" // messages in progress over MaxPendingBytes
	reasonStreamerBusy     = "streamer_busy"  // the streamer's send queue is at its byte budget
)

var allReasons = []string{
	reasonInvalid, reasonUnexpected, reasonTooBig, reasonRateLimit, reasonIdentifyTimeout,
	reasonSubscribeTimeout, reasonMaxPlayers, reasonMaxConnections, reasonSendQueueFull,
	reasonPingTimeout, reasonUnknownStreamer, reasonUnknownPlayer, reasonNoPlayerID,
	reasonNotSubscribed, reasonBadUpgrade, reasonUnauthorized, reasonBadOrigin,
	reasonFrameTimeout, reasonPendingBudget, reasonStreamerBusy, reasonReplaced,
}

var allRoles = []role{rolePlayer, roleStreamer, roleSFU}

// metrics holds pre-resolved children so the message path does no label
// lookups.
type metrics struct {
	recv     [3]map[string]prometheus.Counter
	rejected [3]map[string]prometheus.Counter
	bytesIn  [3]prometheus.Counter
	bytesOut [3]prometheus.Counter
	sentMsgs [3]prometheus.Counter
	conns    [3]prometheus.Gauge
	panics   *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, s *Server) (*metrics, error) {
	const ns = "pixelstream_signalling"
	received := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_received_total",
		Help: "Messages received, by endpoint and message type."}, []string{"endpoint", "type"})
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_sent_total",
		Help: "Messages written to peers, by endpoint."}, []string{"endpoint"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rejected_total",
		Help: "Messages and connections refused or dropped, by endpoint and reason."}, []string{"endpoint", "reason"})
	bytesIn := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "received_bytes_total",
		Help: "Message bytes received, by endpoint."}, []string{"endpoint"})
	bytesOut := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "sent_bytes_total",
		Help: "Message bytes written, by endpoint."}, []string{"endpoint"})
	conns := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "connections",
		Help: "Open WebSocket connections, by endpoint."}, []string{"endpoint"})
	streamers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "streamers",
		Help: "Streamers that have identified and are listed."}, func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(len(s.order))
	})
	players := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "players",
		Help: "Players subscribed to a streamer."}, func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(s.subscribed)
	})
	panics := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "peer_panics_total",
		Help: "Panics recovered while handling a peer (the peer was dropped), by where: read, write, timer, hook, event hook, streamer left hook."}, []string{"where"})
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "pending_message_bytes",
		Help: "Bytes held in messages in progress across all connections (limit: MaxPendingBytes)."}, func() float64 {
		return float64(s.pending.Load())
	})
	for _, c := range []prometheus.Collector{received, sent, rejected, bytesIn, bytesOut, conns, streamers, players, panics, pending} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metric: %w", err)
		}
	}
	m := &metrics{panics: panics}
	for _, w := range []string{"read", "write", "timer", "hook"} {
		panics.WithLabelValues(w) // present at 0, so an alert can use rate()
	}
	for _, r := range allRoles {
		ep := r.String()
		m.recv[r] = make(map[string]prometheus.Counter, len(knownTypes)+1)
		for t := range knownTypes {
			m.recv[r][t] = received.WithLabelValues(ep, t)
		}
		m.recv[r]["invalid"] = received.WithLabelValues(ep, "invalid")
		m.rejected[r] = make(map[string]prometheus.Counter, len(allReasons))
		for _, reason := range allReasons {
			m.rejected[r][reason] = rejected.WithLabelValues(ep, reason)
		}
		m.bytesIn[r] = bytesIn.WithLabelValues(ep)
		m.bytesOut[r] = bytesOut.WithLabelValues(ep)
		m.sentMsgs[r] = sent.WithLabelValues(ep)
		m.conns[r] = conns.WithLabelValues(ep)
	}
	return m, nil
}

func (m *metrics) received(r role, typ string, n int) {
	if c := m.recv[r][typ]; c != nil {
		c.Inc()
	}
	m.bytesIn[r].Add(float64(n))
}

func (m *metrics) sent(r role, n int) {
	m.sentMsgs[r].Inc()
	m.bytesOut[r].Add(float64(n))
}

func (m *metrics) reject(r role, reason string) {
	if c := m.rejected[r][reason]; c != nil {
		c.Inc()
	}
}

func (m *metrics) connected(r role, delta float64) { m.conns[r].Add(delta) }

func (m *metrics) panicked(where string) { m.panics.WithLabelValues(where).Inc() }

// Reasons the player port's server counts with CountRejectedPlayer.
const (
	ReasonUnauthorized = reasonUnauthorized // no valid player or claim token
	ReasonBadOrigin    = reasonBadOrigin    // a WebSocket from another site's page
)
