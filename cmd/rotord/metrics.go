package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rotord/rotord/rotation"
)

// metrics are what "rotord run" serves to Prometheus. Label values are
// secret names and states, never a password.
type metrics struct {
	reg         *prometheus.Registry
	rotations   *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	inFlight    prometheus.Gauge
	reloads     *prometheus.CounterVec
	names       atomic.Pointer[[]string] // the secrets scheduled now
}

// newMetrics returns the daemon's metrics. nextDue reports a secret's next
// due time, as the scheduler holds it.
func newMetrics(nextDue func(name string) (time.Time, bool)) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotord_rotations_total",
			Help: "Rotations finished, by secret and final state (committed, rolled-back, needs-reconcile; when nothing was journaled, needs-operator for a failure no retry mends, else failed).",
		}, []string{"secret", "state"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotord_last_success_timestamp_seconds",
			Help: "When the secret's last rotation committed, in seconds since the epoch.",
		}, []string{"secret"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rotord_rotations_in_flight",
			Help: "Rotations running now.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rotord_config_reloads_total",
			Help: "Configuration reloads on SIGHUP, by result (ok or rejected).",
		}, []string{"result"}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rotord_build_info", Help: "rotord's version.", ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	m.reg.MustRegister(m.rotations, m.lastSuccess, m.inFlight, m.reloads, info,
		&dueCollector{names: &m.names, nextDue: nextDue},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// setSecrets sets the secrets whose due times are exported.
func (m *metrics) setSecrets(specs []rotation.SecretSpec) {
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		names = append(names, s.Name)
	}
	m.names.Store(&names)
}

// observe counts a finished rotation.
func (m *metrics) observe(r rotation.Result, now time.Time) {
	state := string(r.State)
	switch {
	case state != "":
	case needsOperator(r):
		state = alertNeedsOperator
	default:
		state = "failed"
	}
	m.rotations.WithLabelValues(r.Secret, state).Inc()
	if r.Err == nil && r.State == rotation.StateCommitted {
		m.lastSuccess.WithLabelValues(r.Secret).Set(float64(now.Unix()))
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var dueDesc = prometheus.NewDesc("rotord_next_due_timestamp_seconds",
	"When the secret's next scheduled rotation is due, in seconds since the epoch.", []string{"secret"}, nil)

// dueCollector exports the scheduler's due times at each scrape.
type dueCollector struct {
	names   *atomic.Pointer[[]string]
	nextDue func(string) (time.Time, bool)
}

func (c *dueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- dueDesc }

func (c *dueCollector) Collect(ch chan<- prometheus.Metric) {
	names := c.names.Load()
	if names == nil {
		return
	}
	for _, n := range *names {
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
