package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

// Final states rotord_rotations_total counts, each with a series per
// secret from start.
var rotationStates = []string{
	string(rotation.StateCommitted), string(rotation.StateRolledBack), string(rotation.StateNeedsReconcile),
	alertNeedsOperator, "failed",
}

// heartbeatOK is the heartbeat state of a secret whose password Secret
// Server holds logs in on every host.
const heartbeatOK = "ok"

// Heartbeat states rotord_heartbeat_state has a series for, per secret.
var heartbeatStates = []string{heartbeatOK, alertDrift, alertUnreachable}

// rotationBuckets are the rotation duration histogram's bounds, in seconds:
// a rotation takes seconds on a few hosts, minutes on many or when hosts
// time out and are retried.
var rotationBuckets = []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800}

// metrics are what "rotord run" serves to Prometheus. Every configured
// secret has all its series from start (and a secret removed by a reload
// loses them), so that an alert sees a secret before its first rotation.
// Label values are secret names and states, never a password. Its methods
// are safe for concurrent use.
type metrics struct {
	reg            *prometheus.Registry
	rotations      *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	lastSuccess    *prometheus.GaugeVec
	lastAttempt    *prometheus.GaugeVec
	needsReconcile *prometheus.GaugeVec
	parked         *prometheus.GaugeVec
	heartbeats     *prometheus.GaugeVec
	inFlight       prometheus.Gauge
	reloads        *prometheus.CounterVec

	mu      sync.Mutex
	names   []string          // the configured secrets, as spelled there
	byKey   map[string]string // SecretKey → configured name
	success map[string]time.Time
	attempt map[string]time.Time
}

// newMetrics returns the daemon's metrics; followSchedule adds the due
// times once there is a scheduler.
func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotord_rotations_total",
			Help: "Rotations finished, by secret and final state (committed, rolled-back, needs-reconcile; when nothing was journaled, needs-operator for a failure no retry mends, else failed).",
		}, []string{"secret", "state"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rotord_rotation_duration_seconds",
			Help:    "How long the daemon's scheduled rotations took, whatever their outcome, by secret.",
			Buckets: rotationBuckets,
		}, []string{"secret"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotord_last_success_timestamp_seconds",
			Help: "When the secret's last rotation committed, in seconds since the epoch; 0 if none is known.",
		}, []string{"secret"}),
		lastAttempt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotord_last_attempt_timestamp_seconds",
			Help: "When the secret's last rotation attempt (or missed slot) ended, whatever its outcome, in seconds since the epoch; 0 if none is known.",
		}, []string{"secret"}),
		needsReconcile: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotord_needs_reconcile",
			Help: "1 while the journal holds a rotation of the secret in needs-reconcile (a host holds neither known password), else 0.",
		}, []string{"secret"}),
		parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotord_parked",
			Help: "1 while the secret is parked (its transient retries spent, or its rotations refused until a reconcile), else 0.",
		}, []string{"secret"}),
		heartbeats: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotord_heartbeat_state",
			Help: "The secret's last heartbeat: 1 for its state (ok, drift, unreachable), 0 for the others; all 0 before the first.",
		}, []string{"secret", "state"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rotord_rotations_in_flight",
			Help: "Rotations running now.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotord_config_reloads_total",
			Help: "Configuration reloads on SIGHUP, by result (ok or rejected).",
		}, []string{"result"}),
		byKey:   map[string]string{},
		success: map[string]time.Time{},
		attempt: map[string]time.Time{},
	}
	for _, r := range []string{"ok", "rejected"} {
		m.reloads.WithLabelValues(r)
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rotord_build_info", Help: "rotord's version.", ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	m.reg.MustRegister(m.rotations, m.duration, m.lastSuccess, m.lastAttempt, m.needsReconcile, m.parked,
		m.heartbeats, m.inFlight, m.reloads, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// followSchedule exports each secret's next due time as nextDue (the
// scheduler's) reports it.
func (m *metrics) followSchedule(nextDue func(name string) (time.Time, bool)) {
	m.reg.MustRegister(&dueCollector{m: m, nextDue: nextDue})
}

// setSecrets sets the configured secrets: each new one gets every series
// (counters at 0, timestamps at 0 until known, no heartbeat state set), and
// each one no longer configured loses all of its series.
func (m *metrics) setSecrets(specs []rotation.SecretSpec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(specs))
	byKey := make(map[string]string, len(specs))
	for _, s := range specs {
		names = append(names, s.Name)
		byKey[rotation.SecretKey(s.Name)] = s.Name
	}
	for key, old := range m.byKey {
		if byKey[key] == old {
			continue
		}
		for _, v := range []interface {
			DeletePartialMatch(prometheus.Labels) int
		}{m.rotations, m.duration, m.lastSuccess, m.lastAttempt, m.needsReconcile, m.parked, m.heartbeats} {
			v.DeletePartialMatch(prometheus.Labels{"secret": old})
		}
		delete(m.success, old)
		delete(m.attempt, old)
	}
	for key, name := range byKey {
		if m.byKey[key] == name {
			continue
		}
		for _, st := range rotationStates {
			m.rotations.WithLabelValues(name, st)
		}
		m.duration.WithLabelValues(name)
		m.lastSuccess.WithLabelValues(name).Set(0)
		m.lastAttempt.WithLabelValues(name).Set(0)
		m.needsReconcile.WithLabelValues(name).Set(0)
		m.parked.WithLabelValues(name).Set(0)
		for _, st := range heartbeatStates {
			m.heartbeats.WithLabelValues(name, st).Set(0)
		}
	}
	m.names, m.byKey = names, byKey
}

// configured returns the configured spelling of a secret's name, and
// whether it is configured. m.mu must be held.
func (m *metrics) configured(secretName string) (string, bool) {
	name, ok := m.byKey[rotation.SecretKey(secretName)]
	return name, ok
}

// observe counts a scheduled rotation that started at started and
// finished at now.
func (m *metrics) observe(r rotation.Result, started, now time.Time) {
	state := string(r.State)
	switch {
	case state != "":
	case needsOperator(r):
		state = alertNeedsOperator
	default:
		state = "failed"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	name, ok := m.configured(r.Secret)
	if !ok {
		return // removed by a reload while it ran
	}
	m.rotations.WithLabelValues(name, state).Inc()
	m.duration.WithLabelValues(name).Observe(now.Sub(started).Seconds())
	m.setTime(m.attempt, m.lastAttempt, name, now)
	if r.Err == nil && r.State == rotation.StateCommitted {
		m.setTime(m.success, m.lastSuccess, name, now)
	}
	// The scheduler parks a secret again (park) after this result if its
	// retries are spent; any other result ends the parking.
	m.parked.WithLabelValues(name).Set(boolValue(errors.Is(r.Err, rotation.ErrParked)))
	if r.State == rotation.StateNeedsReconcile {
		m.needsReconcile.WithLabelValues(name).Set(1)
	}
}

// park records that the scheduler parked a secret after its transient
// retries were spent.
func (m *metrics) park(secretName string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if name, ok := m.configured(secretName); ok {
		m.parked.WithLabelValues(name).Set(1)
	}
}

// missed records a scheduled slot given up at now (the secret's lease
// stayed held): an attempt that did not succeed.
func (m *metrics) missed(secretName string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if name, ok := m.configured(secretName); ok {
		m.setTime(m.attempt, m.lastAttempt, name, now)
	}
}

// heartbeat records the state of a secret's latest heartbeat: heartbeatOK,
// alertDrift or alertUnreachable. Any other state (a host key not trusted,
// the secret unreadable) means the heartbeat could not check the secret,
// and is recorded as unreachable.
func (m *metrics) heartbeat(secretName, state string) {
	if state != heartbeatOK && state != alertDrift {
		state = alertUnreachable
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	name, ok := m.configured(secretName)
	if !ok {
		return
	}
	for _, st := range heartbeatStates {
		m.heartbeats.WithLabelValues(name, st).Set(boolValue(st == state))
	}
}

// heartbeatResult records a heartbeat's result (see heartbeat): ok when
// every host took the password, drift when any host refused it (even if
// others could not be checked), else unreachable.
func (m *metrics) heartbeatResult(r rotation.HeartbeatResult) {
	m.heartbeat(r.Secret, string(r.State()))
}

// reconcileLister is what the metrics read of a journal besides its
// history, where it offers it: the rotations in needs-reconcile.
type reconcileLister interface {
	NeedsReconcile(ctx context.Context) ([]rotation.Rotation, error)
}

// The daemon's journal lists them: without it the gauge would stay 0.
var _ reconcileLister = (*store.DB)(nil)

// historyPages bounds how far back refresh looks for a secret's last
// committed rotation: beyond it, the secret has failed for thousands of
// rotations and its last success is left unknown (0).
const historyPages = 5

// refresh sets, from the journal, each configured secret's last success
// and last attempt (its newest committed, and newest finished, rotation of
// kind rotate, unless the daemon saw a later one) and its needs-reconcile
// gauge. The daemon calls it at start, after a reload, and after each
// sweep, so rotations made by hand ("rotord rotate", "rotord recover")
// show too.
func (m *metrics) refresh(ctx context.Context, j historyReader) error {
	m.mu.Lock()
	names := slices.Clone(m.names)
	m.mu.Unlock()
	var errs []error
	for _, name := range names {
		success, attempt, err := lastRotations(ctx, j, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.mu.Lock()
		if n, ok := m.configured(name); ok && n == name {
			m.setTime(m.success, m.lastSuccess, name, success)
			m.setTime(m.attempt, m.lastAttempt, name, attempt)
		}
		m.mu.Unlock()
	}
	if err := m.refreshReconcile(ctx, j); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// refreshReconcile sets each configured secret's needs-reconcile gauge
// from the journal.
func (m *metrics) refreshReconcile(ctx context.Context, j historyReader) error {
	nl, ok := j.(reconcileLister)
	if !ok {
		return nil
	}
	rs, err := nl.NeedsReconcile(ctx)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	open := map[string]bool{}
	for _, r := range rs {
		open[rotation.SecretKey(r.Secret)] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, name := range m.byKey {
		m.needsReconcile.WithLabelValues(name).Set(boolValue(open[key]))
	}
	return nil
}

// lastRotations returns when the newest committed, and the newest
// finished, rotation of kind rotate of a secret were last updated; zero
// when the journal has none.
func lastRotations(ctx context.Context, j historyReader, name string) (success, attempt time.Time, err error) {
	var before int64
	for range historyPages {
		rs, err := j.History(ctx, rotation.HistoryQuery{Secret: rotation.SecretKey(name), BeforeID: before, Limit: 1000})
		if err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("metrics: %w", err)
		}
		for _, r := range rs {
			if r.Kind != rotation.KindRotate || !r.State.Terminal() {
				continue
			}
			if attempt.IsZero() {
				attempt = r.Updated
			}
			if r.State == rotation.StateCommitted {
				return r.Updated, attempt, nil
			}
		}
		if len(rs) == 0 {
			break
		}
		before = rs[len(rs)-1].ID
	}
	return time.Time{}, attempt, nil
}

// setTime sets a secret's timestamp gauge to t unless it holds a later
// time already. m.mu must be held.
func (m *metrics) setTime(held map[string]time.Time, g *prometheus.GaugeVec, name string, t time.Time) {
	if t.IsZero() || !t.After(held[name]) {
		return
	}
	held[name] = t
	g.WithLabelValues(name).Set(float64(t.Unix()))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var dueDesc = prometheus.NewDesc("rotord_next_due_timestamp_seconds",
	"When the secret's next scheduled rotation is due, in seconds since the epoch.", []string{"secret"}, nil)

// dueCollector exports the scheduler's due times at each scrape.
type dueCollector struct {
	m       *metrics
	nextDue func(string) (time.Time, bool)
}

func (c *dueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- dueDesc }

func (c *dueCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	names := slices.Clone(c.m.names)
	c.m.mu.Unlock()
	for _, n := range names {
		if t, ok := c.nextDue(n); ok {
			ch <- prometheus.MustNewConstMetric(dueDesc, prometheus.GaugeValue, float64(t.Unix()), n)
		}
	}
}

// serveMetrics serves h at /metrics on addr until ctx is done. It returns
// once the listener is open, with the address it listens on (addr with
// port 0 gets a free port), or the error opening it.
func serveMetrics(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (net.Addr, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "addr", addr, "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return ln.Addr(), nil
}
