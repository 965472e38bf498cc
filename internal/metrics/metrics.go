// Package metrics keeps Conclave's Prometheus metrics in a private registry
// and serves them, with the Go profiler, on the admin listener. It is the
// only package that imports the Prometheus client: the services count with
// plain atomics or call plain funcs, and internal/homeserver connects those
// to the methods here when admin_listen is set. With no admin listener
// nothing is measured and nothing here runs.
package metrics

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "conclave"

// Metrics is one server's registry and the collectors the server reports
// into. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	inflight prometheus.Gauge
	requests *prometheus.CounterVec   // route, method, code ("2xx")
	duration *prometheus.HistogramVec // route, method
	limited  *prometheus.CounterVec   // route, method: 429 M_LIMIT_EXCEEDED answers

	events      prometheus.Counter
	groupCommit prometheus.Histogram
}

// New returns a registry holding the Go runtime and process collectors and
// Conclave's own metrics.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "http_requests_in_flight",
			Help: "Client API requests being handled now (including /sync long-polls).",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "Client API requests answered, by route pattern, method and status class.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help: "Time to answer a client API request, by route pattern and method.",
			// SQLite commits take about a millisecond; /sync long-polls up to
			// their timeout (30 s is usual).
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_rate_limited_total",
			Help: "Client API requests refused with 429 M_LIMIT_EXCEEDED, by route pattern and method.",
		}, []string{"route", "method"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "events_persisted_total",
			Help: "Room events written to the store by this process.",
		}),
		groupCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "store_group_commit_calls",
			Help:    "Event writes (PersistEvents calls) sharing one SQLite transaction and fsync.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.inflight, m.requests, m.duration, m.limited, m.events, m.groupCommit,
	)
	return m
}

// Registry is the private registry, for tests and further collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text (or negotiated)
// exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, MaxRequestsInFlight: 4})
}

// EventsPersisted counts n room events written.
func (m *Metrics) EventsPersisted(n int) { m.events.Add(float64(n)) }

// GroupCommit records how many PersistEvents calls one transaction carried.
func (m *Metrics) GroupCommit(calls int) { m.groupCommit.Observe(float64(calls)) }

// SyncWaiting reports the /sync long-polls waiting for news, read at scrape
// time from f.
func (m *Metrics) SyncWaiting(f func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "sync_waiting",
		Help: "/sync long-polls currently waiting for news.",
	}, func() float64 { return float64(f()) }))
}

// NotifierWakeups reports how many waiting /sync requests the notifier has
// signalled, read at scrape time from f (a running total).
func (m *Metrics) NotifierWakeups(f func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "notifier_wakeups_total",
		Help: "Waiting /sync requests woken because something they follow changed.",
	}, func() float64 { return float64(f()) }))
}

// MediaUploadedBytes reports the bytes of media accepted, read at scrape
// time from f (a running total).
func (m *Metrics) MediaUploadedBytes(f func() int64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "media_uploaded_bytes_total",
		Help: "Bytes of media content stored by uploads.",
	}, func() float64 { return float64(f()) }))
}

// Instrument counts and times the requests next answers. next must be the
// mux itself (or pass the request on unchanged), because the route label is
// the pattern the mux matched (r.Pattern, set by http.ServeMux on the request
// it was given), never the raw path: the label set is bounded by the routes
// registered. patterns are the mux's registered patterns; a request matching
// none (the M_UNRECOGNIZED fallback, redirects) is labelled "unmatched".
//
// The status is read from the ResponseWriter when it already records one
// (server's access log does, via a Status() int method), so the common path
// allocates nothing; Prometheus children are resolved once per route.
func (m *Metrics) Instrument(next http.Handler, patterns []string) http.Handler {
	routes := make(map[string]*route, len(patterns))
	for _, p := range patterns {
		method, path, ok := strings.Cut(p, " ")
		if !ok || strings.HasPrefix(p, "/") {
			method, path = "ANY", p
		}
		routes[p] = &route{name: path, method: method}
	}
	var unmatched [len(knownMethods) + 1]route
	for i := range unmatched {
		unmatched[i] = route{name: "unmatched", method: "OTHER"}
		if i < len(knownMethods) {
			unmatched[i].method = knownMethods[i]
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sr, ok := w.(interface{ Status() int })
		if !ok {
			rec := &recorder{ResponseWriter: w, status: http.StatusOK}
			w, sr = rec, rec
		}
		m.inflight.Inc()
		defer m.inflight.Dec()
		start := time.Now()
		next.ServeHTTP(w, r)
		rt := routes[r.Pattern]
		if rt == nil {
			rt = &unmatched[methodIndex(r.Method)]
		}
		m.observe(rt, sr.Status(), time.Since(start))
	})
}

var knownMethods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"}

// methodIndex maps a request method onto knownMethods; anything else is
// len(knownMethods) ("OTHER"): clients choose methods, labels must not
// let them choose unbounded series.
func methodIndex(method string) int {
	for i, k := range knownMethods {
		if method == k {
			return i
		}
	}
	return len(knownMethods)
}

// route holds one route's Prometheus children, resolved on first use (an
// unused route adds no series to the exposition).
type route struct {
	name, method string

	once     sync.Once
	duration prometheus.Observer
	byClass  [6]lazyCounter // index status/100; 0 holds anything out of range
	limited  lazyCounter
}

type lazyCounter struct {
	once sync.Once
	c    prometheus.Counter
}

var classes = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func (m *Metrics) observe(rt *route, status int, d time.Duration) {
	rt.once.Do(func() { rt.duration = m.duration.WithLabelValues(rt.name, rt.method) })
	rt.duration.Observe(d.Seconds())
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	lc := &rt.byClass[class]
	lc.once.Do(func() { lc.c = m.requests.WithLabelValues(rt.name, rt.method, classes[class]) })
	lc.c.Inc()
	if status == http.StatusTooManyRequests {
		rt.limited.once.Do(func() { rt.limited.c = m.limited.WithLabelValues(rt.name, rt.method) })
		rt.limited.c.Inc()
	}
}

// recorder records the status for Instrument when the writer does not.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Status() int { return r.status }

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
