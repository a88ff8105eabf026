package rotation_test

import (
	"context"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

// TestSchedulerAlivePings: with a watchdog (Alive every 30s) the loop pings
// at start and then wakes every 30s to ping again, even though the next
// rotation is days away; without one it sleeps until the slot.
func TestSchedulerAlivePings(t *testing.T) {
	clk, state := newFakeClock(t0), newMemState()
	pings := make(chan time.Time, 100)
	s, err := rotation.NewScheduler(rotation.SchedulerConfig{
		SchedulePlan: rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@weekly"},
		State:        state, Run: newRecorder(false).Run, Clock: clk,
		Alive: func() { pings <- clk.Now() }, AliveEvery: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	ping := func() time.Time {
		t.Helper()
		select {
		case at := <-pings:
			return at
		case <-time.After(10 * time.Second): // a hang, not a timing assertion
			t.Fatal("no watchdog ping")
			return time.Time{}
		}
	}
	if at := ping(); !at.Equal(t0) {
		t.Fatalf("first ping at %v, want at start %v", at, t0)
	}
	if d := clk.idle(t); d != 30*time.Second {
		t.Fatalf("the loop sleeps %s, want 30s (the watchdog interval)", d)
	}
	for i := 1; i <= 3; i++ {
		now := t0.Add(time.Duration(i) * 30 * time.Second)
		clk.Set(now)
		if at := ping(); !at.Equal(now) {
			t.Fatalf("ping %d at %v, want %v", i, at, now)
		}
		if d := clk.idle(t); d != 30*time.Second {
			t.Fatalf("after ping %d the loop sleeps %s, want 30s", i, d)
		}
	}
}
