package rotation_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

// heldBy is the error Rotate returns while another holder has the lease.
func heldBy(holder string) error {
	return &rotation.LeaseHeldError{Secret: "web", Holder: holder, Expires: t0.Add(time.Hour)}
}

// TestSchedulerLeaseHeldRetriesSlot: the slot fires while a rollback (or a
// dry run, a recovery) holds the secret's lease. The slot is retried
// shortly, not moved to the next slot, and the secret is rotated once the
// lease is free.
func TestSchedulerLeaseHeldRetriesSlot(t *testing.T) {
	state := newMemState()
	_ = state.SetNextDue(context.Background(), "web", t0)
	clk, rec := newFakeClock(t0), newRecorder(true)
	h := start(t, clk, state, rec, rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@daily"})

	rec.wait(t)
	rec.release <- heldBy("host/4242/rollback")
	waitState(t, clk, state, "web", t0.Add(time.Minute)) // retried in a minute
	clk.Set(t0.Add(time.Minute))
	rec.wait(t)
	rec.release <- heldBy("host/4242/rollback")
	waitState(t, clk, state, "web", t0.Add(2*time.Minute))
	clk.Set(t0.Add(2 * time.Minute))
	rec.wait(t)
	rec.release <- nil // the lease is free: rotated
	waitState(t, clk, state, "web", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	h.shutdown(t)
	if n := rec.runs("web"); n != 3 {
		t.Fatalf("ran %d times, want 3 (two lease conflicts, then the rotation)", n)
	}
}

// TestSchedulerLeaseHeldPastWindowMissed: the lease stays held for longer
// than the retry window. The slot is given up with an alert naming it and
// the holder's error, and the next slot is due; until then it was retried.
func TestSchedulerLeaseHeldPastWindowMissed(t *testing.T) {
	state := newMemState()
	_ = state.SetNextDue(context.Background(), "web", t0)
	clk, rec := newFakeClock(t0), newRecorder(true)
	type miss struct {
		name string
		due  time.Time
		err  error
	}
	missed := make(chan miss, 10)
	s, err := rotation.NewScheduler(rotation.SchedulerConfig{
		SchedulePlan: rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@daily",
			LeaseRetry: 10 * time.Minute, LeaseWindow: 30 * time.Minute},
		State: state, Run: rec.Run, Clock: clk,
		OnMissed: func(spec rotation.SecretSpec, due time.Time, err error) { missed <- miss{spec.Name, due, err} },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	for i, at := range []time.Duration{0, 10 * time.Minute, 20 * time.Minute} {
		clk.Set(t0.Add(at))
		rec.wait(t)
		rec.release <- heldBy("host/4242/dry-run")
		if i < 2 {
			waitState(t, clk, state, "web", t0.Add(at+10*time.Minute))
			if len(missed) != 0 {
				t.Fatalf("alert after %d conflicts, inside the window", i+1)
			}
		}
	}
	// A retry at 30m would be past the window: missed, next slot due.
	waitState(t, clk, state, "web", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	var m miss
	select {
	case m = <-missed:
	default:
		t.Fatal("slot given up without an alert")
	}
	var held *rotation.LeaseHeldError
	if m.name != "web" || !m.due.Equal(t0) || !errors.As(m.err, &held) || held.Holder != "host/4242/dry-run" {
		t.Fatalf("missed alert %+v; want web's slot due %v with the holder's error", m, t0)
	}
	if len(missed) != 0 || rec.runs("web") != 3 {
		t.Fatalf("%d more alerts, %d runs; want one alert after 3 runs", len(missed), rec.runs("web"))
	}
}
