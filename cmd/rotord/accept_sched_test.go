package main

import (
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

// requireSlot fails unless due is the slot of the cron spec that a daemon
// running between from and to records: the first slot after an instant in
// [from, to] (the lab's jitter is off). The expectation is computed from
// the schedule and the clock, so it holds on any day of the week; @weekly's
// next slot is anything from a second to seven days away.
func requireSlot(t *testing.T, what, spec string, from, to, due time.Time) {
	t.Helper()
	sched, err := rotation.ParseSchedule(spec)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := sched.Next(from), sched.Next(to)
	if due.Before(lo) || due.After(hi) {
		t.Fatalf("%s is %v; want %s's next slot after the daemon's start, %v", what, due.UTC(), spec, lo.UTC())
	}
}

// TestRequireSlotAnyWeekday: the expectation the acceptance tests use holds
// whatever the weekday the daemon runs on, where "a week ahead" held only
// on Sundays.
func TestRequireSlotAnyWeekday(t *testing.T) {
	monday := time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	for day := range 7 {
		now := monday.AddDate(0, 0, day)
		sched, _ := rotation.ParseSchedule("@weekly")
		due := sched.Next(now) // what the daemon records
		requireSlot(t, now.Weekday().String(), "@weekly", now, now.Add(time.Minute), due)
		if due.Weekday() != time.Sunday || due.Sub(now) > 7*24*time.Hour || !due.After(now) {
			t.Fatalf("%s: next @weekly slot %v", now.Weekday(), due)
		}
	}
}
