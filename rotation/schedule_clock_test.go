package rotation_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

// committedHistory is a journal history holding committed rotations of one
// secret, started at the given instants.
type committedHistory struct {
	mu      sync.Mutex
	secret  string
	started []time.Time // oldest first
}

func (h *committedHistory) History(_ context.Context, q rotation.HistoryQuery) ([]rotation.Rotation, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []rotation.Rotation
	for i := len(h.started) - 1; i >= 0; i-- {
		id := int64(i + 1)
		if q.Secret != h.secret || (q.BeforeID != 0 && id >= q.BeforeID) || len(out) >= q.Limit {
			continue
		}
		out = append(out, rotation.Rotation{ID: id, Secret: h.secret, Kind: rotation.KindRotate, State: rotation.StateCommitted, Started: h.started[i]})
	}
	return out, nil
}

func (h *committedHistory) add(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.started = append(h.started, t)
}

// nextSundayUTC is @weekly's next slot after t, computed by hand (not by the
// cron library under test): the next Sunday 00:00 UTC strictly after t.
func nextSundayUTC(t time.Time) time.Time {
	t = t.UTC()
	midnight := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	days := (7 - int(t.Weekday())) % 7
	if days == 0 {
		days = 7
	}
	return midnight.AddDate(0, 0, days)
}

// clockCase is one start of the scheduler at an instant: what the journal
// and the schedule state hold, what it must do at once, which due time it
// must record, and what it must do when the clock reaches that time.
type clockCase struct {
	name   string
	spec   string
	now    time.Time
	due    time.Time // persisted due time; zero: none (first start)
	served time.Time // a committed rotation started then; zero: none
	run    bool      // rotated at start
	next   time.Time // due time recorded after start
	after  time.Time // due time recorded after the rotation at next
}

func clockCases() []clockCase {
	var cs []clockCase
	// Every weekday, at several times of day, for @weekly (Sunday 00:00
	// UTC): a first start, a catch-up after three missed slots, a slot
	// already served by a rotation that recovery committed, and a due time
	// just ahead or just behind.
	monday := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for day := range 7 {
		for _, hour := range []time.Duration{0, time.Second, 10 * time.Hour, 24*time.Hour - time.Second} {
			now := monday.AddDate(0, 0, day).Add(hour)
			slot := nextSundayUTC(now)
			wd := now.Weekday().String()
			cs = append(cs,
				clockCase{name: fmt.Sprintf("%s%s/FirstStart", wd, hour), spec: "@weekly", now: now,
					next: slot, after: slot.AddDate(0, 0, 7)},
				clockCase{name: fmt.Sprintf("%s%s/CatchUp", wd, hour), spec: "@weekly", now: now, due: now.AddDate(0, 0, -21),
					run: true, next: slot, after: slot.AddDate(0, 0, 7)},
				clockCase{name: fmt.Sprintf("%s%s/AlreadyServed", wd, hour), spec: "@weekly", now: now, due: now.Add(-2 * time.Hour),
					served: now.Add(-time.Hour), next: slot, after: slot.AddDate(0, 0, 7)},
				clockCase{name: fmt.Sprintf("%s%s/ServedBeforeSlot", wd, hour), spec: "@weekly", now: now, due: now.Add(-time.Hour),
					served: now.Add(-2 * time.Hour), run: true, next: slot, after: slot.AddDate(0, 0, 7)},
				clockCase{name: fmt.Sprintf("%s%s/JustBeforeDue", wd, hour), spec: "@weekly", now: now, due: now.Add(time.Second),
					next: now.Add(time.Second), after: nextSundayUTC(now.Add(time.Second))},
				clockCase{name: fmt.Sprintf("%s%s/JustAfterDue", wd, hour), spec: "@weekly", now: now, due: now.Add(-time.Second),
					run: true, next: slot, after: slot.AddDate(0, 0, 7)},
			)
		}
	}
	utc := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	cs = append(cs,
		// The slot itself, one second either side.
		clockCase{name: "WeeklySlotMinus1s", spec: "@weekly", now: utc(2026, 11, 28, 23, 59, 59),
			due: utc(2026, 11, 29, 0, 0, 0), next: utc(2026, 11, 29, 0, 0, 0), after: utc(2026, 12, 6, 0, 0, 0)},
		clockCase{name: "WeeklySlotPlus1s", spec: "@weekly", now: utc(2026, 11, 29, 0, 0, 1),
			due: utc(2026, 11, 29, 0, 0, 0), run: true, next: utc(2026, 12, 6, 0, 0, 0), after: utc(2026, 12, 13, 0, 0, 0)},
		clockCase{name: "WeeklySlotPlus1sServed", spec: "@weekly", now: utc(2026, 11, 29, 0, 0, 1),
			due: utc(2026, 11, 29, 0, 0, 0), served: utc(2026, 11, 29, 0, 0, 0), next: utc(2026, 12, 6, 0, 0, 0), after: utc(2026, 12, 13, 0, 0, 0)},
		// Month and year ends.
		clockCase{name: "MonthlyAtMonthEnd", spec: "@monthly", now: utc(2027, 1, 31, 23, 59, 59),
			next: utc(2027, 2, 1, 0, 0, 0), after: utc(2027, 3, 1, 0, 0, 0)},
		clockCase{name: "Day31SkipsShortMonths", spec: "0 3 31 * *", now: utc(2027, 1, 31, 3, 0, 1),
			due: utc(2027, 1, 31, 3, 0, 0), run: true, next: utc(2027, 3, 31, 3, 0, 0), after: utc(2027, 5, 31, 3, 0, 0)},
		clockCase{name: "YearEnd", spec: "@yearly", now: utc(2026, 12, 31, 23, 59, 59),
			next: utc(2027, 1, 1, 0, 0, 0), after: utc(2028, 1, 1, 0, 0, 0)},
		// 29 February: every four years; a leap year's extra day.
		clockCase{name: "LeapDayFromAYearBefore", spec: "0 12 29 2 *", now: utc(2027, 3, 1, 0, 0, 0),
			next: utc(2028, 2, 29, 12, 0, 0), after: utc(2032, 2, 29, 12, 0, 0)},
		clockCase{name: "LeapDayJustBefore", spec: "0 12 29 2 *", now: utc(2028, 2, 29, 11, 59, 59),
			due: utc(2028, 2, 29, 12, 0, 0), next: utc(2028, 2, 29, 12, 0, 0), after: utc(2032, 2, 29, 12, 0, 0)},
		clockCase{name: "DailyOverLeapDay", spec: "@daily", now: utc(2028, 2, 28, 23, 59, 59),
			next: utc(2028, 2, 29, 0, 0, 0), after: utc(2028, 3, 1, 0, 0, 0)},
		clockCase{name: "LeapDayCatchUpAfterFourYears", spec: "0 12 29 2 *", now: utc(2032, 3, 1, 0, 0, 0),
			due: utc(2028, 2, 29, 12, 0, 0), run: true, next: utc(2036, 2, 29, 12, 0, 0), after: utc(2040, 2, 29, 12, 0, 0)},
		// Europe/Berlin springs forward on 28 March 2027 at 02:00 CET
		// (01:00 UTC) to 03:00 CEST: 02:30 does not exist that night. The
		// slot falls due when the clocks jump, and 02:30 CEST the next day.
		clockCase{name: "BerlinSpringForward", spec: "CRON_TZ=Europe/Berlin 30 2 * * *", now: utc(2027, 3, 27, 12, 0, 0),
			next: utc(2027, 3, 28, 1, 0, 0), after: utc(2027, 3, 29, 0, 30, 0)},
		clockCase{name: "BerlinSpringForwardJustBefore", spec: "CRON_TZ=Europe/Berlin 30 2 * * *", now: utc(2027, 3, 28, 0, 59, 59),
			due: utc(2027, 3, 28, 1, 0, 0), next: utc(2027, 3, 28, 1, 0, 0), after: utc(2027, 3, 29, 0, 30, 0)},
		clockCase{name: "BerlinSpringForwardCatchUp", spec: "CRON_TZ=Europe/Berlin 30 2 * * *", now: utc(2027, 3, 28, 6, 0, 0),
			due: utc(2027, 3, 27, 1, 30, 0), run: true, next: utc(2027, 3, 29, 0, 30, 0), after: utc(2027, 3, 30, 0, 30, 0)},
		// An hourly spec keeps every real hour across the jump.
		clockCase{name: "BerlinSpringForwardHourly", spec: "CRON_TZ=Europe/Berlin 30 * * * *", now: utc(2027, 3, 28, 0, 30, 0),
			due: utc(2027, 3, 28, 0, 30, 0), run: true, next: utc(2027, 3, 28, 1, 30, 0), after: utc(2027, 3, 28, 2, 30, 0)},
		// Europe/Berlin falls back on 25 October 2026 at 03:00 CEST (01:00
		// UTC) to 02:00 CET: 02:30 happens twice. One slot, the first.
		clockCase{name: "BerlinFallBack", spec: "CRON_TZ=Europe/Berlin 30 2 * * *", now: utc(2026, 10, 24, 12, 0, 0),
			next: utc(2026, 10, 25, 0, 30, 0), after: utc(2026, 10, 26, 1, 30, 0)},
		clockCase{name: "BerlinFallBackBetweenTheTwo", spec: "CRON_TZ=Europe/Berlin 30 2 * * *", now: utc(2026, 10, 25, 0, 45, 0),
			next: utc(2026, 10, 26, 1, 30, 0), after: utc(2026, 10, 27, 1, 30, 0)},
		clockCase{name: "BerlinFallBackCatchUp", spec: "CRON_TZ=Europe/Berlin 30 2 * * *", now: utc(2026, 10, 25, 1, 45, 0),
			due: utc(2026, 10, 25, 0, 30, 0), run: true, next: utc(2026, 10, 26, 1, 30, 0), after: utc(2026, 10, 27, 1, 30, 0)},
		clockCase{name: "BerlinFallBackServed", spec: "CRON_TZ=Europe/Berlin 30 2 * * *", now: utc(2026, 10, 25, 1, 45, 0),
			due: utc(2026, 10, 25, 0, 30, 0), served: utc(2026, 10, 25, 0, 30, 2), next: utc(2026, 10, 26, 1, 30, 0), after: utc(2026, 10, 27, 1, 30, 0)},
		clockCase{name: "BerlinFallBackHourly", spec: "CRON_TZ=Europe/Berlin 0 * * * *", now: utc(2026, 10, 25, 0, 0, 5),
			due: utc(2026, 10, 25, 0, 0, 0), run: true, next: utc(2026, 10, 25, 1, 0, 0), after: utc(2026, 10, 25, 2, 0, 0)},
		// A weekly slot in Berlin, the Sunday of each change.
		clockCase{name: "BerlinWeeklyAcrossFallBack", spec: "CRON_TZ=Europe/Berlin 30 2 * * 0", now: utc(2026, 10, 20, 0, 0, 0),
			next: utc(2026, 10, 25, 0, 30, 0), after: utc(2026, 11, 1, 1, 30, 0)},
		clockCase{name: "BerlinWeeklyAcrossSpringForward", spec: "CRON_TZ=Europe/Berlin 30 2 * * 0", now: utc(2027, 3, 22, 0, 0, 0),
			next: utc(2027, 3, 28, 1, 0, 0), after: utc(2027, 4, 4, 0, 30, 0)},
	)
	return cs
}

// TestSchedulerClockWeekAndYear runs the scheduler's catch-up, exactly-once
// and next-due logic on a fake clock at instants spread over a week and a
// year: every weekday and time of day, a second before and after a slot,
// month and year ends, 29 February, and both daylight saving changes in
// Europe/Berlin. The expected instants are written out by hand.
func TestSchedulerClockWeekAndYear(t *testing.T) {
	for _, tc := range clockCases() {
		t.Run(tc.name, func(t *testing.T) {
			state := newMemState()
			if !tc.due.IsZero() {
				_ = state.SetNextDue(context.Background(), "web", tc.due)
			}
			hist := &committedHistory{secret: "web"}
			if !tc.served.IsZero() {
				hist.add(tc.served)
			}
			// The wall clock reads in the machine's zone: so does this one.
			clk, rec := newFakeClock(tc.now.In(time.Local)), newRecorder(false)
			s, err := rotation.NewScheduler(rotation.SchedulerConfig{
				SchedulePlan: rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: tc.spec},
				State:        state, Run: rec.Run, Clock: clk, History: hist,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() { cancel(); <-done }()

			if tc.run {
				rec.wait(t)
			}
			// Idle: everything due started and finished, a timer armed.
			if d := clk.idle(t); d != tc.next.Sub(tc.now) {
				t.Fatalf("sleeps %s, want %s (until %s)", d, tc.next.Sub(tc.now), tc.next)
			}
			waitState(t, clk, state, "web", tc.next)
			if got, want := rec.runs("web"), map[bool]int{false: 0, true: 1}[tc.run]; got != want {
				t.Fatalf("rotated %d times at start (%s), want %d", got, tc.now.UTC(), want)
			}
			if got, ok := s.NextDue("web"); !ok || !got.Equal(tc.next) {
				t.Fatalf("NextDue %v, want %v", got, tc.next)
			}

			// The clock reaches the due time: one rotation, then the slot
			// after. The journal gets the rotation, as the engine's would.
			clk.Set(tc.next.In(time.Local))
			rec.wait(t)
			hist.add(tc.next)
			waitState(t, clk, state, "web", tc.after)
			if got, want := rec.runs("web"), map[bool]int{false: 1, true: 2}[tc.run]; got != want {
				t.Fatalf("rotated %d times in all, want %d", got, want)
			}
		})
	}
}

// TestSchedulerClockAnyTimeZone runs the week-and-year table in processes
// whose local time zone and locale are far from UTC: the scheduler must
// not read the machine's zone.
func TestSchedulerClockAnyTimeZone(t *testing.T) {
	for _, tz := range []string{"Pacific/Chatham", "America/St_Johns", "Europe/Berlin", "Asia/Kathmandu"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSchedulerClockWeekAndYear$", "-test.count=1", "-test.v", "-test.timeout=2m")
		cmd.Env = append(os.Environ(), "TZ="+tz, "LC_ALL=tr_TR.UTF-8", "LANG=tr_TR.UTF-8")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestSchedulerClockWeekAndYear ") {
			t.Errorf("TZ=%s: %v\n%s", tz, err, out)
		}
	}
}
