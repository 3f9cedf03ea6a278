package turn

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the control-plane counters; the data-plane counters live in
// each relay loop (plain atomics, summed at scrape time) so the hot path
// never touches a shared cache line.
type metrics struct {
	allocations      prometheus.Gauge
	allocationsTotal prometheus.Counter
	permissions      prometheus.Gauge
	channels         prometheus.Gauge
	deniedPeers      *prometheus.CounterVec
	authFailures     *prometheus.CounterVec
	quotaRejections  *prometheus.CounterVec
	capRejections    *prometheus.CounterVec
	tcpRefused       *prometheus.CounterVec
	acceptErrors     prometheus.Counter
	panics           *prometheus.CounterVec
}

const ns = "pixelstream_turn_"

func newMetrics(reg *prometheus.Registry, loops func() []*loop) (*metrics, error) {
	m := &metrics{
		allocations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "allocations", Help: "Active TURN allocations."}),
		allocationsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "allocations_created_total", Help: "TURN allocations created."}),
		permissions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "permissions", Help: "Active TURN permissions (peer IPs) over all allocations."}),
		channels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "channels", Help: "Active TURN channel bindings over all allocations."}),
		deniedPeers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "denied_peers_total",
			Help: "CreatePermission/ChannelBind peers refused by the peer policy, by reason."}, []string{"reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "auth_failures_total",
			Help: "Requests with credentials that were refused, by reason."}, []string{"reason"}),
		quotaRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "quota_rejections_total",
			Help: "Allocate requests answered 486 (Allocation Quota Reached), by quota."}, []string{"quota"}),
		capRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "cap_rejections_total",
			Help: "ChannelBind/CreatePermission requests refused by a per-allocation cap (508), by cap."}, []string{"cap"}),
		tcpRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "tcp_refused_total",
			Help: "TCP/TLS connections closed by a connection cap, by cap: total and per_address (the newcomer refused at accept), evicted (at the total cap, the oldest connection without an allocation closed for a newcomer)."}, []string{"cap"}),
		acceptErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "tcp_accept_errors_total",
			Help: "TCP accept errors (EMFILE and the like); the listener backs off and goes on."}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "panics_total",
			Help: "Panics recovered at a peer's boundary (the packet or connection was dropped), by place."}, []string{"where"}),
	}
	sum := func(f func(*loopStats) uint64) func() float64 {
		return func() float64 {
			var t uint64
			for _, l := range loops() {
				t += f(&l.stats)
			}
			return float64(t)
		}
	}
	cs := []prometheus.Collector{m.allocations, m.allocationsTotal, m.permissions, m.channels,
		m.deniedPeers, m.authFailures, m.quotaRejections, m.capRejections, m.tcpRefused, m.acceptErrors, m.panics}
	for _, d := range []struct {
		dir            string
		packets, bytes func(*loopStats) uint64
	}{
		{"client_to_peer", func(s *loopStats) uint64 { return s.c2pPackets.Load() }, func(s *loopStats) uint64 { return s.c2pBytes.Load() }},
		{"peer_to_client", func(s *loopStats) uint64 { return s.p2cPackets.Load() }, func(s *loopStats) uint64 { return s.p2cBytes.Load() }},
	} {
		labels := prometheus.Labels{"direction": d.dir}
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: ns + "relayed_packets_total",
				Help: "Packets relayed, by direction.", ConstLabels: labels}, sum(d.packets)),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: ns + "relayed_bytes_total",
				Help: "Payload bytes relayed, by direction.", ConstLabels: labels}, sum(d.bytes)))
	}
	cs = append(cs,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: ns + "denied_packets_total",
			Help: "Relayed packets dropped by the peer policy (an allowed IP's other ports, or after the policy changed)."},
			sum(func(s *loopStats) uint64 { return s.denied.Load() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: ns + "dropped_packets_total",
			Help: "Packets dropped for lack of a channel/allocation or buffer space."},
			sum(func(s *loopStats) uint64 { return s.dropped.Load() })))
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register turn metrics: %w", err)
		}
	}
	return m, nil
}
