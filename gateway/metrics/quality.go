package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelstream/nomad-driver-pixelstream/quality"
)

// QualityCollector exports the players' stream quality per node, as the
// sessions last reported it (their /api/claim answers), computed at
// scrape time from nodes().
type QualityCollector struct {
	nodes                                             func() map[string]quality.Session
	players, fps, rtt, freezes, frozen, loss, relayed *prometheus.Desc
}

// NewQualityCollector collects from nodes (node id -> merged sessions).
func NewQualityCollector(nodes func() map[string]quality.Session) *QualityCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("pixelstream_gateway_node_"+name, help, []string{"node"}, nil)
	}
	return &QualityCollector{nodes: nodes,
		players: d("players", "Players on the node's sessions that reported their stream quality."),
		fps:     d("player_fps", "Mean frames per second the node's players decode (their latest reports)."),
		rtt:     d("player_rtt_seconds", "Mean round trip time of the node's players' ICE candidate pairs."),
		freezes: d("player_freezes", "Video freezes the node's current players have seen, summed."),
		frozen:  d("player_freeze_seconds", "Time the node's current players' video was frozen, summed."),
		loss:    d("player_packet_loss_ratio", "Video packets lost over packets expected, the node's current players together."),
		relayed: d("relay_players", "The node's players whose media goes through TURN."),
	}
}

// Describe implements prometheus.Collector.
func (c *QualityCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.players, c.fps, c.rtt, c.freezes, c.frozen, c.loss, c.relayed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *QualityCollector) Collect(ch chan<- prometheus.Metric) {
	for node, q := range c.nodes() {
		loss := 0.0
		if n := q.PacketsLost + q.PacketsReceived; n > 0 {
			loss = q.PacketsLost / n
		}
		for _, m := range []struct {
			d *prometheus.Desc
			v float64
		}{
			{c.players, float64(q.Players)}, {c.fps, q.FPS}, {c.rtt, q.RTTMS / 1000}, {c.freezes, q.Freezes},
			{c.frozen, q.FreezeMS / 1000}, {c.loss, loss}, {c.relayed, float64(q.Relay)},
		} {
			ch <- prometheus.MustNewConstMetric(m.d, prometheus.GaugeValue, m.v, node)
		}
	}
}
