package signalling

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelstream/nomad-driver-pixelstream/quality"
)

// Player quality: the player page reports its WebRTC stats every
// quality.ReportEvery in a "stats" message (Epic's message type, its data
// a JSON text; see package quality). The server keeps each player's latest
// report (at most one a quality.MinInterval, at most MaxReportBytes), and
// never forwards it: the streamer does not see it. The reports feed
// /api/status, the pixelstream_player_* metrics, the gateway's per-node
// aggregate (GET /api/claim) and the summary line of the player's
// PlayerDisconnected event.

// playerQuality is one player's latest report.
type playerQuality struct {
	last    quality.Report
	at      time.Time
	reports int
}

// qualityStore holds the reports of connected players; its own lock, so
// a report never waits on the router's.
type qualityStore struct {
	mu      sync.Mutex
	players map[*conn]*playerQuality
	m       *qualityMetrics
}

// qualityMetrics are the pixelstream_player_* collectors. Counters grow by
// the difference between a player's consecutive cumulative reports.
type qualityMetrics struct {
	reports, dropped          prometheus.Counter
	frames, dropFrames        prometheus.Counter
	freezes, freezeSeconds    prometheus.Counter
	packetsLost, packetsRecvd prometheus.Counter
	fps, rtt, jitter, bitrate prometheus.Histogram
	candidates                *prometheus.GaugeVec
}

func newQualityStore(reg prometheus.Registerer) (*qualityStore, error) {
	const ns = "pixelstream_player"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: buckets})
	}
	m := &qualityMetrics{
		reports:       counter("reports_total", "Quality reports accepted from player pages."),
		dropped:       counter("reports_dropped_total", "Quality reports dropped: sent faster than one a second."),
		frames:        counter("frames_decoded_total", "Video frames the players decoded."),
		dropFrames:    counter("frames_dropped_total", "Video frames the players dropped."),
		freezes:       counter("freezes_total", "Video freezes the players saw (as WebRTC counts them)."),
		freezeSeconds: counter("freeze_seconds_total", "Time the players' video was frozen."),
		packetsLost:   counter("packets_lost_total", "Video RTP packets the players lost."),
		packetsRecvd:  counter("packets_received_total", "Video RTP packets the players received."),
		fps: histogram("fps", "Frames per second decoded, one observation per report.",
			[]float64{1, 5, 10, 15, 20, 25, 28, 30, 45, 55, 60, 90, 120}),
		rtt: histogram("rtt_seconds", "Round trip time of the players' selected ICE candidate pair, one observation per report.",
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}),
		jitter: histogram("jitter_seconds", "Video jitter the players measured, one observation per report.",
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25}),
		bitrate: histogram("bitrate_bits_per_second", "Video bitrate received, one observation per report.",
			prometheus.ExponentialBuckets(250_000, 2, 8)),
		candidates: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "connected",
			Help: "Players that have reported, by the local type of their selected ICE candidate (host, srflx, prflx, relay; unknown before a pair is picked)."}, []string{"candidate"}),
	}
	for _, c := range []prometheus.Collector{m.reports, m.dropped, m.frames, m.dropFrames, m.freezes, m.freezeSeconds,
		m.packetsLost, m.packetsRecvd, m.fps, m.rtt, m.jitter, m.bitrate, m.candidates} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register player metric: %w", err)
		}
	}
	for _, c := range []string{"host", "srflx", "prflx", "relay", "unknown"} {
		m.candidates.WithLabelValues(c)
	}
	return &qualityStore{players: map[*conn]*playerQuality{}, m: m}, nil
}

func candidateLabel(c string) string {
	if c == "" {
		return "unknown"
	}
	return c
}

// playerStats takes a player's "stats" message.
func (s *Server) playerStats(c *conn, m *message) *protocolError {
	data, err := m.requireString("data")
	if err != nil {
		return err
	}
	q := s.quality
	now := time.Now()
	q.mu.Lock()
	pq := q.players[c]
	if pq != nil && now.Sub(pq.at) < quality.MinInterval {
		q.mu.Unlock()
		q.m.dropped.Inc()
		s.metrics.reject(c.role, reasonRateLimit)
		return nil
	}
	q.mu.Unlock()
	r, perr := quality.Parse([]byte(data))
	if perr != nil {
		return badMessage("stats message field data: %v", perr)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if c.killed.Load() {
		return nil // closed meanwhile: its entry is gone and must stay gone
	}
	pq = q.players[c]
	var prev quality.Report
	if pq == nil {
		pq = &playerQuality{}
		q.players[c] = pq
	} else {
		prev = pq.last
		q.m.candidates.WithLabelValues(candidateLabel(prev.Candidate)).Dec()
	}
	q.m.candidates.WithLabelValues(candidateLabel(r.Candidate)).Inc()
	grow := func(ctr prometheus.Counter, now, before float64) {
		if now > before {
			ctr.Add(now - before)
		}
	}
	grow(q.m.frames, r.FramesDecoded, prev.FramesDecoded)
	grow(q.m.dropFrames, r.FramesDropped, prev.FramesDropped)
	grow(q.m.freezes, r.FreezeCount, prev.FreezeCount)
	grow(q.m.freezeSeconds, r.FreezeMS/1000, prev.FreezeMS/1000)
	grow(q.m.packetsLost, r.PacketsLost, prev.PacketsLost)
	grow(q.m.packetsRecvd, r.PacketsReceived, prev.PacketsReceived)
	q.m.reports.Inc()
	if r.FramesDecoded > 0 {
		q.m.fps.Observe(r.FPS)
		q.m.jitter.Observe(r.JitterMS / 1000)
		q.m.bitrate.Observe(r.BitrateKbps * 1000)
	}
	if r.RTTMS > 0 {
		q.m.rtt.Observe(r.RTTMS / 1000)
	}
	pq.last, pq.at = r, now
	pq.reports++
	return nil
}

// playerGone forgets a closing player's reports and returns its summary
// line ("" when it never reported).
func (s *Server) playerGone(c *conn) string {
	q := s.quality
	q.mu.Lock()
	pq := q.players[c]
	delete(q.players, c)
	if pq != nil {
		q.m.candidates.WithLabelValues(candidateLabel(pq.last.Candidate)).Dec()
	}
	q.mu.Unlock()
	if pq == nil {
		return ""
	}
	played := time.Duration(pq.last.PlayedMS)*time.Millisecond + time.Since(pq.at)
	if pq.last.FramesDecoded == 0 {
		played = 0
	}
	return pq.last.Summary(played)
}

// PlayerQuality is one player's latest quality report and its age.
type PlayerQuality struct {
	quality.Report
	AgeSeconds float64 `json:"age_s"`
}

// PlayerQuality returns the connected players' latest reports by player id.
func (s *Server) PlayerQuality() map[string]PlayerQuality {
	q := s.quality
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[string]PlayerQuality, len(q.players))
	for c, pq := range q.players {
		out[c.playerID] = PlayerQuality{Report: pq.last, AgeSeconds: time.Since(pq.at).Seconds()}
	}
	return out
}

// Quality sums the latest reports of the connected players (what the
// gateway aggregates per node).
func (s *Server) Quality() quality.Session {
	q := s.quality
	q.mu.Lock()
	reports := make([]quality.Report, 0, len(q.players))
	for _, pq := range q.players {
		reports = append(reports, pq.last)
	}
	q.mu.Unlock()
	return quality.Aggregate(reports)
}
