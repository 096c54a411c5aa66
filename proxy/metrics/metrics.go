// Package metrics holds tollgate's Prometheus collectors
// (github.com/prometheus/client_golang) in one Registry value, with small
// methods other packages call; there are no package-level collectors. The
// admin listener serves Handler at /metrics in the Prometheus text format.
//
// Metric names (all prefixed tollgate_):
//
//	registry_requests_total{operation,code}          registry API requests answered
//	registry_bytes_total{operation,direction}        bytes of bodies, direction in|out
//	tee_handoffs_total                               blobs handed to analysis by the tee
//	tee_detaches_total{reason}                       tees that detached (analysis too slow, gap…)
//	deferred_scans_total{reason}                     layer scans deferred to a registry read
//	scan_duration_seconds{phase}                     histogram: layer, image, match…
//	scan_queue_depth                                 scan jobs waiting (GaugeFunc)
//	advisory_data_age_seconds{source}                seconds since the source's last import, at scrape time
//	advisory_last_import_timestamp_seconds{source}   Unix time of the source's last import
//	findings{severity,status}                        findings stored, by severity and status
//	badger_size_bytes{part}                          Badger on-disk size, part lsm|vlog (GaugeFunc)
//	webhook_deliveries_total{target,outcome}         webhook attempts: delivered, failed, gave_up
//	policy_decisions_total{decision}                 pull policy: allowed, denied, error
//
// plus the Go runtime and process collectors.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate-registry/tollgate/scan"
)

const ns = "tollgate"

// Registry is tollgate's metrics. All methods are safe for concurrent use;
// the methods of a nil *Registry do nothing, so callers need no nil checks.
type Registry struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	teeHandoffs   prometheus.Counter
	teeDetaches   *prometheus.CounterVec
	deferredScans *prometheus.CounterVec
	scanDuration  *prometheus.HistogramVec
	findings      *prometheus.GaugeVec
	webhooks      *prometheus.CounterVec
	policy        *prometheus.CounterVec
	now           func() time.Time
}

// New returns a registry with every collector registered, and the Go and
// process collectors.
func New() *Registry {
	r := &Registry{
		reg: prometheus.NewRegistry(),
		now: time.Now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "registry_requests_total",
			Help: "Registry API requests answered, by OCI distribution operation and HTTP status code.",
		}, []string{"operation", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "registry_bytes_total",
			Help: "Registry API body bytes, by operation and direction (in: from the client, out: to the client).",
		}, []string{"operation", "direction"}),
		teeHandoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "tee_handoffs_total",
			Help: "Blobs whose streamed copy was handed to layer analysis.",
		}),
		teeDetaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "tee_detaches_total",
			Help: "Tees that detached from a transfer, by reason.",
		}, []string{"reason"}),
		deferredScans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "deferred_scans_total",
			Help: "Layer scans deferred to a later read from the registry, by reason.",
		}, []string{"reason"}),
		scanDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "scan_duration_seconds",
			Help:    "Duration of scan phases (layer analysis, image merge, matching), in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 10), // 5ms … ~22min
		}, []string{"phase"}),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "findings",
			Help: "Findings stored, by severity and status.",
		}, []string{"severity", "status"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "webhook_deliveries_total",
			Help: "Webhook delivery attempts, by target id and outcome (delivered, failed, gave_up).",
		}, []string{"target", "outcome"}),
		policy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "policy_decisions_total",
			Help: "Pull policy decisions at manifest GET (allowed, denied, error).",
		}, []string{"decision"}),
	}
	r.reg.MustRegister(r.requests, r.bytes, r.teeHandoffs, r.teeDetaches, r.deferredScans,
		r.scanDuration, r.findings, r.webhooks, r.policy,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves the registry in the Prometheus exposition format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Prometheus returns the underlying registry (to register more collectors).
func (r *Registry) Prometheus() *prometheus.Registry { return r.reg }

// Request counts one registry API request of operation (e.g. "pull_manifest",
// "push_blob", "mount_blob"; the names in the OCI distribution spec's endpoint
// table, snake_cased) answered with code, and its body bytes in and out.
func (r *Registry) Request(operation string, code int, bytesIn, bytesOut int64) {
	if r == nil {
		return
	}
	r.requests.WithLabelValues(operation, strconv.Itoa(code)).Inc()
	if bytesIn > 0 {
		r.bytes.WithLabelValues(operation, "in").Add(float64(bytesIn))
	}
	if bytesOut > 0 {
		r.bytes.WithLabelValues(operation, "out").Add(float64(bytesOut))
	}
}

// TeeHandoff counts one blob handed to analysis.
func (r *Registry) TeeHandoff() {
	if r != nil {
		r.teeHandoffs.Inc()
	}
}

// TeeDetach counts one detached tee ("slow", "gap", "limit", …).
func (r *Registry) TeeDetach(reason string) {
	if r != nil {
		r.teeDetaches.WithLabelValues(reason).Inc()
	}
}

// DeferredScan counts one layer scan deferred to a registry read.
func (r *Registry) DeferredScan(reason string) {
	if r != nil {
		r.deferredScans.WithLabelValues(reason).Inc()
	}
}

// ScanDuration observes one scan phase ("layer", "image", "match", "rescan").
func (r *Registry) ScanDuration(phase string, d time.Duration) {
	if r != nil {
		r.scanDuration.WithLabelValues(phase).Observe(d.Seconds())
	}
}

// SetFindings replaces the findings gauge with counts[status][severity].
// Severity/status pairs absent from counts read 0 afterwards.
func (r *Registry) SetFindings(counts map[scan.FindingStatus]map[scan.Severity]int) {
	if r == nil {
		return
	}
	r.findings.Reset()
	for _, st := range []scan.FindingStatus{scan.FindingActive, scan.FindingSuppressed, scan.FindingClosed} {
		for _, sev := range []scan.Severity{scan.SeverityCritical, scan.SeverityHigh, scan.SeverityMedium,
			scan.SeverityLow, scan.SeverityInformational, scan.SeverityUntriaged} {
			r.findings.WithLabelValues(string(sev), string(st)).Set(float64(counts[st][sev]))
		}
	}
}

// WebhookDelivery counts one webhook attempt (implements events.Metrics).
func (r *Registry) WebhookDelivery(target, outcome string) {
	if r != nil {
		r.webhooks.WithLabelValues(target, outcome).Inc()
	}
}

// PolicyDecision counts one pull policy decision ("allowed", "denied", "error").
func (r *Registry) PolicyDecision(decision string) {
	if r != nil {
		r.policy.WithLabelValues(decision).Inc()
	}
}

// Sizer is what the Badger size gauge reads; *index.DB implements it.
type Sizer interface {
	Size() (lsm, vlog int64)
}

// WatchDBSize registers tollgate_badger_size_bytes{part="lsm"|"vlog"}, read
// from db at each scrape. Call once.
func (r *Registry) WatchDBSize(db Sizer) {
	for _, part := range []string{"lsm", "vlog"} {
		r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "badger_size_bytes",
			Help:        "Badger on-disk size in bytes (lsm: LSM tree, vlog: value log).",
			ConstLabels: prometheus.Labels{"part": part},
		}, func() float64 {
			lsm, vlog := db.Size()
			if part == "lsm" {
				return float64(lsm)
			}
			return float64(vlog)
		}))
	}
}

// WatchQueueDepth registers tollgate_scan_queue_depth, read from depth at each
// scrape (e.g. the scan queue's length). Call once.
func (r *Registry) WatchQueueDepth(depth func() int) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Name: "scan_queue_depth",
		Help: "Scan jobs waiting in the queue.",
	}, func() float64 { return float64(depth()) }))
}

// WatchAdvisoryAge registers, for each source (ecosystem or feed) that
// updated returns, tollgate_advisory_last_import_timestamp_seconds{source}
// (the Unix time of its last successful import: alert on
// time() - it) and tollgate_advisory_data_age_seconds{source} (the same as
// an age, computed at scrape time, so stale data that keeps serving shows
// its growing age without any import running). updated is called once per
// scrape with a context bounded to 5s; an error reports neither for that
// scrape (the rest of the scrape is served).
func (r *Registry) WatchAdvisoryAge(updated func(ctx context.Context) (map[string]time.Time, error)) {
	r.reg.MustRegister(&ageCollector{
		age: prometheus.NewDesc(ns+"_advisory_data_age_seconds",
			"Seconds since each advisory source was last imported (refreshed), at scrape time.", []string{"source"}, nil),
		last: prometheus.NewDesc(ns+"_advisory_last_import_timestamp_seconds",
			"Unix time of each advisory source's last successful import.", []string{"source"}, nil),
		updated: updated,
		now:     r.now,
	})
}

type ageCollector struct {
	age, last *prometheus.Desc
	updated   func(ctx context.Context) (map[string]time.Time, error)
	now       func() time.Time
}

func (c *ageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.age
	ch <- c.last
}

func (c *ageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := c.updated(ctx)
	if err != nil {
		return // a failed lookup must not fail the whole scrape
	}
	now := c.now()
	for src, at := range m {
		if at.IsZero() {
			continue // never imported: no time to report
		}
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, now.Sub(at).Seconds(), src)
		ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(at.UnixNano())/1e9, src)
	}
}
