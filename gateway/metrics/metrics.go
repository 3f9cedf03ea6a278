// Package metrics holds the gateway's Prometheus collectors, on a registry
// of their own that /metrics serves.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the gateway's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	Sessions         *prometheus.GaugeVec   // by state: starting, free, claimed, busy
	QueueLength      prometheus.Gauge       // visitors waiting
	AssignSeconds    prometheus.Histogram   // arrival to a claimed session
	QueueWaitSeconds prometheus.Histogram   // time spent in the queue, assigned or not
	Dispatches       prometheus.Counter     // dispatches Nomad accepted
	DispatchFailures prometheus.Counter     // dispatches Nomad refused or that failed
	Claims           *prometheus.CounterVec // by result: ok, conflict, not_ready, error
	Visitors         *prometheus.CounterVec // arrivals by outcome: assigned, same_session, queued, unauthorized, queue_full, cross_site, address_limit, stream_limit
	ProxyErrors      prometheus.Counter     // requests the session did not answer
	Panics           prometheus.Counter     // handler panics caught (the visitor dropped, the gateway up)
	// ForeignRegistrations counts registrations of the session service
	// that Nomad did not confirm as the gateway's own sessions.
	ForeignRegistrations prometheus.Counter
}

// New registers every collector on a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pixelstream_gateway_sessions",
			Help: "Sessions the gateway knows, by state (starting, free, claimed, busy)."}, []string{"state"}),
		QueueLength: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pixelstream_gateway_queue_length",
			Help: "Visitors waiting for a session."}),
		AssignSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pixelstream_gateway_assign_seconds",
			Help:    "Time from a visitor's arrival to a claimed session.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}}),
		QueueWaitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pixelstream_gateway_queue_wait_seconds",
			Help:    "Time visitors spent in the queue (until assigned or gone).",
			Buckets: []float64{.1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}}),
		Dispatches: prometheus.NewCounter(prometheus.CounterOpts{Name: "pixelstream_gateway_dispatches_total",
			Help: "Session job dispatches Nomad accepted."}),
		DispatchFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "pixelstream_gateway_dispatch_failures_total",
			Help: "Session job dispatches that failed."}),
		Claims: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pixelstream_gateway_claims_total",
			Help: "Claims sent to sessions, by result."}, []string{"result"}),
		Visitors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pixelstream_gateway_visitors_total",
			Help: "Visitor arrivals, by outcome (assigned, same_session, queued, unauthorized, queue_full, cross_site, address_limit, stream_limit)."}, []string{"outcome"}),
		ProxyErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pixelstream_gateway_proxy_errors_total",
			Help: "Proxied requests the session did not answer."}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "pixelstream_gateway_panics_total",
			Help: "Handler panics caught; the request was dropped, the gateway kept serving."}),
		ForeignRegistrations: prometheus.NewCounter(prometheus.CounterOpts{Name: "pixelstream_gateway_foreign_registrations_total",
			Help: "Registrations of the session service that are not live children of the session job (never polled, claimed or proxied to)."}),
	}
	r.MustRegister(m.Sessions, m.QueueLength, m.AssignSeconds, m.QueueWaitSeconds, m.Dispatches,
		m.DispatchFailures, m.Claims, m.Visitors, m.ProxyErrors, m.Panics, m.ForeignRegistrations,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
