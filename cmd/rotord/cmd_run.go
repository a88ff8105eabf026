package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotord/rotord/rotation"
)

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: rotate secrets on their schedules",
		Long: `Run the daemon. At start it finishes or undoes unfinished rotations
(as rotord recover does), then rotates each configured secret on its cron
schedule. A rotation missed while the daemon was down is made once at start;
a secret never seen before gets its first rotation at its next slot. While it
runs, it also finishes, every rotation.lease_ttl, rotations another process
left unfinished (a "rotord rotate" killed part way) once their lease is free.
A slot that finds the secret's lease held (a rollback, a dry run, a recovery
in progress) is retried every minute for an hour, then missed with an alert.

With store.driver postgres several instances, on several machines, may
share the journal: each registers with a heartbeat (rotord status lists
them), claims each slot in the database so that exactly one rotates it,
and recovers another's unfinished rotation once its lease expires.

With heartbeat.schedule (or a secret's heartbeat) set, it also checks that
the password Secret Server holds logs into every host of each secret on
that schedule, records each result (rotord history --heartbeats), and
alerts when a secret enters drift, unreachable or failed and when it is ok
again.

Under systemd (Type=notify) it reports READY=1 once start-up recovery is
done, RELOADING=1 around a reload and STOPPING=1, and pings the watchdog
(WatchdogSec=) from the scheduler's loop.

Signals:
  SIGHUP           reload the configuration file; an invalid one is
                   rejected (logged) and the running one kept. Schedules and
                   the secrets list follow the new file; other settings take
                   effect at the next start.
  SIGTERM, SIGINT  stop: start no new rotation, let those in flight finish,
                   then exit 0. A second signal interrupts the rotations in
                   flight, which revert every host they changed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd.Context())
		},
	}
}

func (a *app) run(ctx context.Context) error {
	if err := a.setup(); err != nil {
		return err
	}
	// ctx is cancelled by the first SIGTERM or SIGINT (see main): no new
	// rotation starts. Rotations in flight run on work, cancelled only by a
	// second signal.
	work, interrupt := context.WithCancel(context.WithoutCancel(ctx))
	defer interrupt()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)

	svc, err := a.adapters.open(work, a.cfg, a.log, nil)
	if err != nil {
		return err
	}
	defer svc.close()

	a.log.Info("rotord starting", "version", version, "config", a.cfg.Path(), "secrets", len(a.cfg.Secrets), "holder", holder())
	d := &runningDaemon{a: a, work: work, svc: svc, met: newMetrics(), alerts: a.notifier(), clock: a.clockOrWall(), sd: newSDNotifier(a.getenv, a.log)}
	// Daemons sharing the journal (PostgreSQL) register with a heartbeat
	// and claim each slot in the database, so that one of them rotates it.
	beatCtx, stopBeat := context.WithCancel(work)
	beatDone := make(chan struct{})
	go func() { a.instanceBeat(beatCtx, svc.journal, &d.inFlight); close(beatDone) }()
	defer func() { stopBeat(); <-beatDone }()
	if is, ok := svc.journal.(instanceStore); ok && a.cfg.Store.Postgres() {
		d.shared, d.sharedState = is, newSharedSchedule(svc.state)
	}
	d.recoverAtStart()
	if ctx.Err() != nil {
		d.sd.stopping()
		a.log.Info("rotord stopped")
		return nil
	}
	sched, hb, err := d.schedulers(ctx)
	if err != nil {
		return err
	}
	if a.cfg.Metrics.Listen != "" {
		addr, err := serveMetrics(work, a.cfg.Metrics.Listen, d.met.handler(), a.log)
		if err != nil {
			return err
		}
		if a.metricsAddr != nil {
			a.metricsAddr <- addr.String()
		}
	}
	return d.serve(ctx, sigs, interrupt, sched, hb)
}

// runningDaemon is what `rotord run` holds while it runs: the services, the
// metrics, the alerts and the clock the schedulers' hooks report to.
type runningDaemon struct {
	a      *app
	work   context.Context // rotations run on it; a second signal cancels it
	svc    *services
	met    *metrics
	alerts *notifier
	clock  rotation.Clock
	sd     *sdNotifier

	inFlight atomic.Int64 // rotations running, for the instance heartbeat
	// On a shared journal (PostgreSQL): the instances' store and the shared
	// due times; nil on SQLite.
	shared      instanceStore
	sharedState *sharedSchedule
}

// recoverAtStart finishes or undoes the rotations the journal holds
// unfinished, as rotord recover does.
func (d *runningDaemon) recoverAtStart() {
	for _, r := range d.svc.engine.Recover(d.work, "daemon") {
		d.a.logResult("recovered rotation", r)
		d.alerts.rotations(d.work, r)
	}
}

// schedulers builds the rotation scheduler and the heartbeat scheduler over
// the services, their hooks reporting to the metrics, the log and the
// alerts.
func (d *runningDaemon) schedulers(ctx context.Context) (*rotation.Scheduler, *rotation.HeartbeatScheduler, error) {
	a, work, met := d.a, d.work, d.met
	var state rotation.ScheduleState = d.svc.state
	sweepEvery := a.cfg.Rotation.LeaseTTL.D()
	if d.shared != nil {
		state = d.sharedState
		// Another daemon's unfinished rotation is recovered soon after its
		// lease expires.
		sweepEvery /= 4
	}
	sched, err := rotation.NewScheduler(rotation.SchedulerConfig{
		SchedulePlan: a.cfg.SchedulePlan(),
		State:        state,
		History:      d.svc.journal,
		ClaimSlot:    d.claimSlot(),
		Run:          d.rotate,
		OnRotated:    d.rotated,
		OnPark: func(spec rotation.SecretSpec, err error) {
			met.park(spec.Name)
			d.alerts.parked(work, spec.Name, err)
		},
		OnMissed: func(spec rotation.SecretSpec, due time.Time, err error) {
			met.missed(spec.Name, d.clock.Now())
			a.slotMissed(work, d.svc.journal, spec.Name, due, err)
		},
		// Rotations another process left unfinished (a `rotord rotate`
		// killed with its terminal) are finished once their lease is free,
		// checked every lease lifetime (a quarter of it on a shared journal).
		Sweep:      d.sweep,
		SweepEvery: sweepEvery,
		// systemd's watchdog (WatchdogSec=) is fed from the scheduler's
		// loop, so a stuck scheduler gets the daemon restarted.
		Alive:      alive(d.sd),
		AliveEvery: d.sd.watchdogEvery(),
		Clock:      d.clock,
		Log:        a.log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("start scheduler: %w", err)
	}
	met.followSchedule(sched.NextDue)
	met.setSecrets(a.cfg.Specs())
	a.refreshMetrics(work, met, d.svc.journal, false)
	hb, err := rotation.NewHeartbeatScheduler(rotation.HeartbeatSchedulerConfig{
		HeartbeatPlan: a.cfg.HeartbeatPlan(),
		Check:         d.svc.engine.ScheduledHeartbeat,
		Claim:         sched.Claim,
		OnResult: func(spec rotation.SecretSpec, before rotation.HeartbeatState, r rotation.HeartbeatResult) {
			met.heartbeatResult(r)
			a.heartbeatResult(ctx, before, r)
		},
		Clock: d.clock,
		Log:   a.log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("start heartbeats: %w", err)
	}
	return sched, hb, nil
}

// claimSlot is the scheduler's ClaimSlot on a shared journal (each slot
// is claimed in the database, so that one daemon serves it); nil on
// SQLite.
func (d *runningDaemon) claimSlot() func(context.Context, rotation.SecretSpec) (bool, error) {
	if d.shared == nil {
		return nil
	}
	return func(sctx context.Context, spec rotation.SecretSpec) (bool, error) {
		return d.a.claimSlot(sctx, d.shared, d.sharedState, spec.Name, d.clock.Now, d.recoverSecret)
	}
}

// rotate is the scheduler's Run: one scheduled rotation, counted in
// flight while it runs.
func (d *runningDaemon) rotate(_ context.Context, spec rotation.SecretSpec) rotation.Result {
	d.met.inFlight.Inc()
	d.inFlight.Add(1)
	r := d.svc.engine.Rotate(d.work, spec, rotation.RotateOptions{Actor: "scheduler"})
	d.inFlight.Add(-1)
	d.met.inFlight.Dec()
	return r
}

// rotated is the scheduler's OnRotated: a scheduled rotation that
// started, measured, logged and alerted on.
func (d *runningDaemon) rotated(_ rotation.SecretSpec, started time.Time, r rotation.Result) {
	d.met.observe(r, started, d.clock.Now())
	d.a.refreshMetrics(d.work, d.met, d.svc.journal, true)
	d.a.logResult("rotation finished", r)
	d.alerts.rotations(d.work, r)
	d.alerts.operatorNeeded(d.work, r)
}

// recoverSecret finishes or undoes the unfinished rotation of one secret
// before its slot is claimed on a shared journal.
func (d *runningDaemon) recoverSecret(_ context.Context, name string) {
	only := func(n string) (func(), bool) {
		return func() {}, rotation.SecretKey(n) == rotation.SecretKey(name)
	}
	d.reportRecovered(d.svc.engine.RecoverUnfinished(d.work, "daemon", only))
}

// sweep is the scheduler's Sweep: it finishes the rotations left
// unfinished whose lease claim grants.
func (d *runningDaemon) sweep(_ context.Context, claim func(string) (func(), bool)) {
	d.reportRecovered(d.svc.engine.RecoverUnfinished(d.work, "daemon", claim))
	d.a.refreshMetrics(d.work, d.met, d.svc.journal, false)
}

// reportRecovered logs and alerts on the rotations a recovery touched.
func (d *runningDaemon) reportRecovered(rs []rotation.Result) {
	for _, r := range rs {
		d.a.logResult("recovered rotation", r)
		d.alerts.rotations(d.work, r)
	}
}

// serve runs the schedulers until they stop, handling signals: SIGHUP
// reloads, the first SIGTERM or SIGINT stops starting rotations (ctx), the
// second interrupts those in flight.
func (d *runningDaemon) serve(ctx context.Context, sigs <-chan os.Signal, interrupt func(), sched *rotation.Scheduler, hb *rotation.HeartbeatScheduler) error {
	a, sd := d.a, d.sd
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	hbDone := make(chan struct{})
	go func() { _ = hb.Run(ctx); close(hbDone) }()
	// Start-up recovery is over: systemd may consider the service started.
	sd.ready()
	stopping := false
	for {
		select {
		case err := <-done:
			if !stopping {
				sd.stopping()
			}
			if ctx.Err() != nil {
				<-hbDone
			}
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				a.log.Info("rotord stopped")
				return nil
			}
			return err
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				sd.reloading()
				ok := a.reload(ctx, sched)
				sd.ready()
				if ok {
					if err := hb.Reload(a.cfg.HeartbeatPlan()); err != nil {
						a.log.Error("heartbeat schedules not reloaded", "err", err)
					}
					d.met.reloads.WithLabelValues("ok").Inc()
					d.met.setSecrets(a.cfg.Specs())
					a.refreshMetrics(d.work, d.met, d.svc.journal, false)
				} else {
					d.met.reloads.WithLabelValues("rejected").Inc()
				}
			case !stopping:
				stopping = true
				sd.stopping()
				a.log.Info("stopping: no new rotation starts; waiting for those in flight", "signal", sig.String())
			default:
				a.log.Warn("second signal: interrupting rotations in flight; they revert", "signal", sig.String())
				interrupt()
			}
		}
	}
}

// heartbeatResult logs a scheduled heartbeat's result and alerts when the
// secret's state changed: on entering drift, unreachable or failed (from
// any other state, or at the first check), and on recovering to ok. A
// state that persists alerts once. The journal's audit trail holds every
// result (the engine records it).
func (a *app) heartbeatResult(ctx context.Context, before rotation.HeartbeatState, r rotation.HeartbeatResult) {
	state := r.State()
	attrs := []any{"secret", r.Secret, "state", string(state), "before", string(before), "hosts", len(r.Hosts)}
	switch {
	case state == rotation.HeartbeatOK:
		a.log.Info("heartbeat", attrs...)
	case state == before:
		a.log.Warn("heartbeat", append(attrs, "err", r.Err)...)
	default:
		a.log.Error("heartbeat", append(attrs, "err", r.Err, "alert", true)...)
	}
	if state == before {
		return
	}
	switch {
	case state != rotation.HeartbeatOK:
		a.notifier().heartbeats(ctx, r)
	case before != "":
		a.notifier().heartbeatRecovered(ctx, r.Secret, before)
	}
}

// alive is the scheduler's watchdog ping: nil when systemd runs no
// watchdog on the service.
func alive(sd *sdNotifier) func() {
	if sd.watchdogEvery() <= 0 {
		return nil
	}
	return sd.alive
}

// reload re-reads the configuration file on SIGHUP. An invalid file is
// rejected and the running configuration kept; it reports whether the new
// file was taken.
func (a *app) reload(ctx context.Context, sched *rotation.Scheduler) bool {
	err := a.tryReload(ctx, sched)
	if err != nil {
		a.log.Error("configuration reload rejected; keeping the running one", "config", a.cfg.Path(), "err", err)
	} else {
		a.log.Info("configuration reloaded", "config", a.cfg.Path(), "secrets", len(a.cfg.Secrets))
	}
	if a.reloaded != nil {
		a.reloaded <- err
	}
	return err == nil
}

func (a *app) tryReload(ctx context.Context, sched *rotation.Scheduler) error {
	cfg, err := LoadConfig(a.cfg.Path(), a.getenv)
	if err != nil {
		return err
	}
	if err := sched.Reload(ctx, cfg.SchedulePlan()); err != nil {
		return err
	}
	a.cfg = cfg
	return nil
}

// logResult logs what a rotation did; it holds no password.
func (a *app) logResult(msg string, r rotation.Result) {
	attrs := []any{"secret", r.Secret, "rotation", r.RotationID, "kind", string(r.Kind), "state", string(r.State), "hosts", len(r.Hosts)}
	if r.Err != nil {
		a.log.Error(msg, append(attrs, "err", r.Err)...)
		return
	}
	a.log.Info(msg, attrs...)
}

// clockOrWall is the daemon's clock: a.clock in tests, else the wall clock.
func (a *app) clockOrWall() rotation.Clock {
	if a.clock != nil {
		return a.clock
	}
	return rotation.WallClock
}

// slotMissed records in the journal's audit trail, and alerts, that a
// scheduled slot was given up because the secret's lease stayed held.
func (a *app) slotMissed(ctx context.Context, j historyReader, secretName string, due time.Time, cause error) {
	detail := fmt.Sprintf("slot due %s missed: %v", due.UTC().Format(time.RFC3339), cause)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := j.Audit(actx, rotation.Event{Time: a.clockOrWall().Now(), Secret: secretName, Actor: "scheduler", Action: "missed", Detail: detail}); err != nil {
		a.log.Warn("missed slot not recorded in the journal", "secret", secretName, "err", err)
	}
	a.notifier().missed(ctx, secretName, due, cause)
}

// refreshMetrics brings the metrics' journal-derived series up to date
// (see metrics.refresh; only needs-reconcile when reconcileOnly). A journal
// that cannot be read leaves them as they were, with a warning.
func (a *app) refreshMetrics(ctx context.Context, met *metrics, j historyReader, reconcileOnly bool) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var err error
	if reconcileOnly {
		err = met.refreshReconcile(rctx, j)
	} else {
		err = met.refresh(rctx, j)
	}
	if err != nil {
		a.log.Warn("metrics not refreshed from the journal", "err", err)
	}
}
