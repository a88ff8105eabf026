package rotation_test

import (
	"context"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
)

// TestSchedulerSweepFinishesOthersRotation: while the scheduler runs, a
// rotation another process left unfinished (a `rotord rotate` killed after
// changing both hosts, before writing the vault) is finished at the next
// sweep once its lease is free, without a restart; while a live holder
// keeps the lease, it is left alone.
func TestSchedulerSweepFinishesOthersRotation(t *testing.T) {
	ctx := context.Background()
	const newPw = "New-Pw-Sweep-77!x"
	f := newFixture(t, 2, func(c *rotation.Config) { c.Holder = "daemon/1/aaaa" })
	r := rotation.Rotation{Secret: "prod-root", SecretID: f.id, Username: "root", Kind: rotation.KindRotate,
		State: rotation.StateCommitting, Old: secret.New(oldPw), New: secret.New(newPw)}
	for _, n := range f.names {
		r.Hosts = append(r.Hosts, rotation.HostRecord{Host: rotation.Host{Name: n}, State: rotation.HostChanged})
		f.hosts.hosts[n].password = newPw
	}
	id, _ := f.journal.Begin(ctx, r)
	_ = f.journal.SetState(ctx, id, 0, rotation.StateCommitting, "")
	// The other process still holds the lease, for an hour.
	if _, err := f.journal.Acquire(ctx, "prod-root", "laptop/999/bbbb", time.Hour); err != nil {
		t.Fatal(err)
	}

	clk := newFakeClock(t0)
	swept := make(chan []rotation.Result, 10)
	s, err := rotation.NewScheduler(rotation.SchedulerConfig{
		SchedulePlan: rotation.SchedulePlan{Secrets: []rotation.ScheduledSecret{{Spec: spec}}, DefaultSchedule: "@yearly"},
		State:        f.journal, Clock: clk, History: f.journal,
		Run: func(ctx context.Context, sp rotation.SecretSpec) rotation.Result {
			return f.engine.Rotate(ctx, sp, rotation.RotateOptions{})
		},
		Sweep: func(ctx context.Context, claim func(string) (func(), bool)) {
			swept <- f.engine.RecoverUnfinished(ctx, "daemon", claim)
		},
		SweepEvery: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	defer func() { cancel(); <-done }()

	if d := clk.idle(t); d != 2*time.Minute {
		t.Fatalf("sleeps %s, want the sweep interval 2m", d)
	}
	clk.Set(t0.Add(2 * time.Minute))
	res := recvResults(t, swept)
	if len(res) != 0 {
		t.Fatalf("sweep with the lease held: %+v; want the rotation left to its holder, unreported", res)
	}
	if got, _ := f.journal.Get(ctx, id); got.State != rotation.StateCommitting {
		t.Fatalf("rotation %s, want it untouched while its holder lives", got.State)
	}

	// The other process dies; its lease expires.
	_ = f.journal.Release(ctx, "prod-root", "laptop/999/bbbb")
	clk.idle(t)
	clk.Set(t0.Add(4 * time.Minute))
	res = recvResults(t, swept)
	if len(res) != 1 || res[0].RotationID != id || res[0].State != rotation.StateCommitted || res[0].Err != nil {
		t.Fatalf("sweep: %+v; want rotation %d committed", res, id)
	}
	f.assertAll(t, newPw)
	if got, _ := f.journal.Get(ctx, id); got.State != rotation.StateCommitted {
		t.Fatalf("journal says %s, want committed", got.State)
	}
	clk.idle(t)
	clk.Set(t0.Add(6 * time.Minute))
	if res := recvResults(t, swept); len(res) != 0 {
		t.Fatalf("a later sweep found work: %+v", res)
	}
}

func recvResults(t *testing.T, c <-chan []rotation.Result) []rotation.Result {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(10 * time.Second): // a hang, not a timing assertion
		t.Fatal("no sweep")
		return nil
	}
}

// TestSchedulerSweepExcludesRunningSecret: a sweep may not touch a secret
// the scheduler is rotating (the daemon's own lease would let it in), and
// no scheduled rotation starts while a sweep has claimed the secret.
func TestSchedulerSweepExcludesRunningSecret(t *testing.T) {
	state := newMemState()
	_ = state.SetNextDue(context.Background(), "web", t0)
	_ = state.SetNextDue(context.Background(), "db", t0.Add(5*time.Minute))
	clk, rec := newFakeClock(t0), newRecorder(true)
	type claimed struct {
		web, db bool
		release func()
	}
	claims := make(chan claimed, 10)
	releaseDB := make(chan struct{})
	s, err := rotation.NewScheduler(rotation.SchedulerConfig{
		SchedulePlan: rotation.SchedulePlan{Secrets: secrets("web", "db"), DefaultSchedule: "@daily", MaxConcurrent: 2},
		State:        state, Run: rec.Run, Clock: clk, SweepEvery: 2 * time.Minute,
		Sweep: func(_ context.Context, claim func(string) (func(), bool)) {
			relWeb, web := claim("WEB") // names match regardless of case
			relDB, db := claim("db")
			if web {
				relWeb()
			}
			claims <- claimed{web: web, db: db, release: relDB}
			if db {
				<-releaseDB
				relDB()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if got := rec.wait(t); got != "web" { // web runs, held open
		t.Fatalf("started %q", got)
	}
	clk.Set(t0.Add(2 * time.Minute))
	var c claimed
	select {
	case c = <-claims:
	case <-time.After(10 * time.Second):
		t.Fatal("no sweep")
	}
	if c.web || !c.db {
		t.Fatalf("claims web=%v db=%v; want web refused (rotating), db granted", c.web, c.db)
	}
	// db falls due while the sweep holds it: not started.
	clk.Set(t0.Add(5 * time.Minute))
	rec.release <- nil // web's rotation ends
	clk.idle(t)
	if n := rec.runs("db"); n != 0 {
		t.Fatalf("db started %d times while a sweep held it", n)
	}
	close(releaseDB)
	if got := rec.wait(t); got != "db" {
		t.Fatalf("started %q, want db once the sweep released it", got)
	}
	rec.release <- nil
}
