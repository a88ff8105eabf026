package rotation_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // CRON_TZ tests must not depend on the machine's zoneinfo

	"github.com/rotord/rotord/rotation"
)

// fakeClock is a Clock moved by hand. Each After call is reported on calls,
// so a test can wait until the scheduler is idle.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	calls   chan time.Duration
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, calls: make(chan time.Duration, 1000)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
	} else {
		c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	}
	c.mu.Unlock()
	c.calls <- d
	return ch
}

// Set moves the clock to t and fires the timers due by then.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			w.ch <- t
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// idle waits until the scheduler arms a timer of a positive duration: it
// has started everything due and sleeps until the next slot.
func (c *fakeClock) idle(t *testing.T) time.Duration {
	t.Helper()
	deadline := time.After(10 * time.Second) // a hang, not a timing assertion
	for {
		select {
		case d := <-c.calls:
			if d > 0 {
				return d
			}
		case <-deadline:
			t.Fatal("scheduler never went idle")
		}
	}
}

// memState is an in-memory ScheduleState.
type memState struct {
	mu  sync.Mutex
	due map[string]time.Time
	ids map[string]int
}

func newMemState() *memState {
	return &memState{due: map[string]time.Time{}, ids: map[string]int{}}
}

func (m *memState) NextDue(_ context.Context, name string) (time.Time, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.due[name]
	return t, ok, nil
}

func (m *memState) SetNextDue(_ context.Context, name string, t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.due[name] = t
	return nil
}

func (m *memState) SecretID(_ context.Context, name string) (int, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.ids[name]
	return id, ok, nil
}

func (m *memState) SetSecretID(_ context.Context, name string, id int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids[name] = id
	return nil
}

func (m *memState) get(name string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.due[name]
	return t, ok
}

// recorder is a Run function that reports each call and blocks until
// released (when gated), tracking how many runs overlap.
type recorder struct {
	gated   bool
	started chan string
	release chan error

	mu       sync.Mutex
	count    map[string]int
	inFlight map[string]int
	maxAll   int
	all      int
	overlap  bool
}

func newRecorder(gated bool) *recorder {
	return &recorder{
		gated:    gated,
		started:  make(chan string, 100),
		release:  make(chan error),
		count:    map[string]int{},
		inFlight: map[string]int{},
	}
}

func (r *recorder) Run(ctx context.Context, spec rotation.SecretSpec) rotation.Result {
	r.mu.Lock()
	r.count[spec.Name]++
	r.inFlight[spec.Name]++
	if r.inFlight[spec.Name] > 1 {
		r.overlap = true
	}
	r.all++
	r.maxAll = max(r.maxAll, r.all)
	r.mu.Unlock()
	r.started <- spec.Name
	var err error
	if r.gated {
		err = <-r.release
	}
	r.mu.Lock()
	r.inFlight[spec.Name]--
	r.all--
	r.mu.Unlock()
	return rotation.Result{Secret: spec.Name, Err: err}
}

func (r *recorder) runs(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[name]
}

func (r *recorder) wait(t *testing.T) string {
	t.Helper()
	select {
	case name := <-r.started:
		return name
	case <-time.After(10 * time.Second): // a hang, not a timing assertion
		t.Fatal("no rotation started")
		return ""
	}
}

// Sunday 22 November 2026, 10:00 UTC.
var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func secrets(names ...string) []rotation.ScheduledSecret {
	var out []rotation.ScheduledSecret
	for _, n := range names {
		out = append(out, rotation.ScheduledSecret{Spec: rotation.SecretSpec{Name: n}})
	}
	return out
}

type harness struct {
	clk   *fakeClock
	state *memState
	rec   *recorder
	sched *rotation.Scheduler
	stop  context.CancelFunc
	done  chan error
}

func start(t *testing.T, clk *fakeClock, state *memState, rec *recorder, plan rotation.SchedulePlan) *harness {
	t.Helper()
	s, err := rotation.NewScheduler(rotation.SchedulerConfig{
		SchedulePlan: plan, State: state, Run: rec.Run, Clock: clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{clk: clk, state: state, rec: rec, sched: s, stop: cancel, done: make(chan error, 1)}
	go func() { h.done <- s.Run(ctx) }()
	t.Cleanup(func() { h.shutdown(t) })
	return h
}

func (h *harness) shutdown(t *testing.T) {
	t.Helper()
	if h.stop == nil {
		return
	}
	h.stop()
	h.stop = nil
	if err := <-h.done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
}

func TestSchedulerFirstStartDoesNotRun(t *testing.T) {
	clk, state, rec := newFakeClock(t0), newMemState(), newRecorder(false)
	h := start(t, clk, state, rec, rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@weekly"})

	// @weekly is Sunday 00:00 UTC: the next one is 29 November.
	want := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	if d := clk.idle(t); d != want.Sub(t0) {
		t.Fatalf("sleeps %s, want %s", d, want.Sub(t0))
	}
	if got, ok := state.get("web"); !ok || !got.Equal(want) {
		t.Fatalf("persisted due %v %v, want %v", got, ok, want)
	}
	if n := rec.runs("web"); n != 0 {
		t.Fatalf("rotated %d times on first start, want 0", n)
	}

	clk.Set(want)
	if got := rec.wait(t); got != "web" {
		t.Fatalf("rotated %q", got)
	}
	clk.idle(t)
	next := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	if got, _ := state.get("web"); !got.Equal(next) {
		t.Fatalf("next due after run %v, want %v", got, next)
	}
	h.shutdown(t)
	if n := rec.runs("web"); n != 1 {
		t.Fatalf("rotated %d times, want 1", n)
	}
}

func TestSchedulerCatchUpOnceAfterRestart(t *testing.T) {
	state := newMemState()
	plan := rotation.SchedulePlan{Secrets: secrets("web", "db"), DefaultSchedule: "0 3 * * *"}

	// First life of the daemon: due times recorded, then it stops.
	clk := newFakeClock(t0)
	rec := newRecorder(false)
	h := start(t, clk, state, rec, plan)
	clk.idle(t)
	h.shutdown(t)
	due, _ := state.get("web")
	if want := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC); !due.Equal(want) {
		t.Fatalf("due %v, want %v", due, want)
	}

	// Down for three days and a bit: three slots missed per secret.
	later := time.Date(2026, 11, 26, 7, 30, 0, 0, time.UTC)
	clk2, rec2 := newFakeClock(later), newRecorder(false)
	h2 := start(t, clk2, state, rec2, plan)
	got := map[string]bool{rec2.wait(t): true, rec2.wait(t): true}
	if !got["web"] || !got["db"] {
		t.Fatalf("caught up %v, want web and db", got)
	}
	// Both runs over, the scheduler sleeps until tomorrow 03:00.
	want := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	for _, n := range []string{"web", "db"} {
		waitState(t, clk2, state, n, want)
	}
	h2.shutdown(t)
	if rec2.runs("web") != 1 || rec2.runs("db") != 1 {
		t.Fatalf("runs web=%d db=%d, want one each", rec2.runs("web"), rec2.runs("db"))
	}
}

// waitState waits (on the scheduler's idle signal) until name's persisted
// due time is want.
func waitState(t *testing.T, clk *fakeClock, state *memState, name string, want time.Time) {
	t.Helper()
	for range 10 {
		if got, _ := state.get(name); got.Equal(want) {
			return
		}
		clk.idle(t)
	}
	got, _ := state.get(name)
	t.Fatalf("%s due %v, want %v", name, got, want)
}

func TestSchedulerRestartBeforeDueDoesNotRun(t *testing.T) {
	state := newMemState()
	due := t0.Add(90 * time.Minute)
	_ = state.SetNextDue(context.Background(), "web", due)
	clk, rec := newFakeClock(t0), newRecorder(false)
	h := start(t, clk, state, rec, rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@daily"})
	if d := clk.idle(t); d != 90*time.Minute {
		t.Fatalf("sleeps %s, want the persisted 1h30m", d)
	}
	h.shutdown(t)
	if n := rec.runs("web"); n != 0 {
		t.Fatalf("rotated %d times before due, want 0", n)
	}
	if got, _ := state.get("web"); !got.Equal(due) {
		t.Fatalf("due moved to %v, want %v", got, due)
	}
}

func TestSchedulerScheduleShortenedWhileDown(t *testing.T) {
	state := newMemState()
	_ = state.SetNextDue(context.Background(), "web", t0.Add(6*24*time.Hour)) // from @weekly
	clk, rec := newFakeClock(t0), newRecorder(false)
	h := start(t, clk, state, rec, rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@daily"})
	clk.idle(t)
	h.shutdown(t)
	want := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	if got, _ := state.get("web"); !got.Equal(want) {
		t.Fatalf("due %v, want the new schedule's next slot %v", got, want)
	}
	if n := rec.runs("web"); n != 0 {
		t.Fatalf("rotated %d times, want 0", n)
	}
}

func TestSchedulerNoOverlap(t *testing.T) {
	state := newMemState()
	_ = state.SetNextDue(context.Background(), "web", t0)
	clk, rec := newFakeClock(t0), newRecorder(true)
	h := start(t, clk, state, rec, rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@every 1m"})
	rec.wait(t)

	// Ten slots pass while the rotation is still running.
	clk.Set(t0.Add(10 * time.Minute))
	select {
	case <-rec.started:
		t.Fatal("second rotation started while the first runs")
	default:
	}
	rec.release <- nil
	// From the end of the run, not once per slot missed.
	waitState(t, clk, state, "web", t0.Add(11*time.Minute))
	h.shutdown(t)
	if rec.overlap {
		t.Fatal("runs of one secret overlapped")
	}
	if n := rec.runs("web"); n != 1 {
		t.Fatalf("rotated %d times, want 1", n)
	}
}

func TestSchedulerConcurrencyCap(t *testing.T) {
	state := newMemState()
	names := []string{"a", "b", "c", "d", "e"}
	for _, n := range names {
		_ = state.SetNextDue(context.Background(), n, t0.Add(-time.Hour))
	}
	clk, rec := newFakeClock(t0), newRecorder(true)
	h := start(t, clk, state, rec, rotation.SchedulePlan{
		Secrets: secrets(names...), DefaultSchedule: "@daily", MaxConcurrent: 2,
	})
	seen := map[string]bool{}
	for range 2 {
		seen[rec.wait(t)] = true
	}
	select {
	case n := <-rec.started:
		t.Fatalf("%s started beyond the cap of 2", n)
	default:
	}
	for len(seen) < len(names) {
		rec.release <- nil
		seen[rec.wait(t)] = true
	}
	rec.release <- nil
	rec.release <- nil
	for _, n := range names {
		waitState(t, clk, state, n, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	}
	h.shutdown(t)
	if rec.maxAll != 2 {
		t.Fatalf("at most %d at once, want 2", rec.maxAll)
	}
}

func TestSchedulerJitterWithinWindow(t *testing.T) {
	const jitter = 10 * time.Minute
	var ss []rotation.ScheduledSecret
	for i := range 64 {
		ss = append(ss, rotation.ScheduledSecret{Spec: rotation.SecretSpec{Name: string(rune('A' + i))}})
	}
	state, clk := newMemState(), newFakeClock(t0)
	h := start(t, clk, state, newRecorder(false), rotation.SchedulePlan{
		Secrets: ss, DefaultSchedule: "0 3 * * *", Jitter: jitter,
	})
	clk.idle(t)
	h.shutdown(t)
	slot := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	distinct := map[time.Time]bool{}
	for _, s := range ss {
		due, ok := state.get(s.Spec.Name)
		if !ok || due.Before(slot) || !due.Before(slot.Add(jitter)) {
			t.Fatalf("%s due %v, want in [%v, %v)", s.Spec.Name, due, slot, slot.Add(jitter))
		}
		distinct[due] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("64 secrets share %d due time(s): no jitter applied", len(distinct))
	}
}

func TestSchedulerInterruptedRunKeepsDue(t *testing.T) {
	state := newMemState()
	due := t0.Add(-time.Minute)
	_ = state.SetNextDue(context.Background(), "web", due)
	clk := newFakeClock(t0)
	rec := newRecorder(true)
	h := start(t, clk, state, rec, rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@daily"})
	rec.wait(t)
	h.stop()
	// Run must not return while the rotation is in flight.
	select {
	case err := <-h.done:
		t.Fatalf("Run returned %v with a rotation in flight", err)
	default:
	}
	rec.release <- context.Canceled // the rotation reverted: not done
	if err := <-h.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	h.stop = nil
	if got, _ := state.get("web"); !got.Equal(due) {
		t.Fatalf("due %v after an interrupted run, want it kept at %v", got, due)
	}
}

func TestSchedulerFinishedRunDuringStopAdvances(t *testing.T) {
	state := newMemState()
	_ = state.SetNextDue(context.Background(), "web", t0.Add(-time.Minute))
	clk, rec := newFakeClock(t0), newRecorder(true)
	h := start(t, clk, state, rec, rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@daily"})
	rec.wait(t)
	h.stop()
	rec.release <- nil // the rotation in flight committed
	<-h.done
	h.stop = nil
	if got, _ := state.get("web"); !got.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("due %v after a committed run, want the next slot", got)
	}
}

func TestSchedulerReload(t *testing.T) {
	state := newMemState()
	clk, rec := newFakeClock(t0), newRecorder(false)
	h := start(t, clk, state, rec, rotation.SchedulePlan{Secrets: secrets("web", "db"), DefaultSchedule: "@weekly"})
	clk.idle(t)
	webDue, _ := state.get("web")
	ctx := context.Background()

	t.Run("InvalidKeepsOld", func(t *testing.T) {
		bad := rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "61 * * * *"}
		if err := h.sched.Reload(ctx, bad); err == nil {
			t.Fatal("Reload accepted a bad cron spec")
		}
		if _, ok := h.sched.NextDue("db"); !ok {
			t.Fatal("old plan lost after a rejected reload")
		}
	})
	t.Run("OK", func(t *testing.T) {
		plan := rotation.SchedulePlan{DefaultSchedule: "@weekly", Secrets: []rotation.ScheduledSecret{
			{Spec: rotation.SecretSpec{Name: "web"}},
			{Spec: rotation.SecretSpec{Name: "db"}, Schedule: "0 3 * * *"},
			{Spec: rotation.SecretSpec{Name: "mail"}},
		}}
		if err := h.sched.Reload(ctx, plan); err != nil {
			t.Fatal(err)
		}
		if got, _ := h.sched.NextDue("web"); !got.Equal(webDue) {
			t.Errorf("unchanged web due %v, want kept %v", got, webDue)
		}
		dbWant := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
		if got, _ := state.get("db"); !got.Equal(dbWant) {
			t.Errorf("changed db due %v, want %v", got, dbWant)
		}
		if got, _ := state.get("mail"); !got.Equal(webDue) {
			t.Errorf("added mail due %v, want %v", got, webDue)
		}
		clk.Set(dbWant)
		if got := rec.wait(t); got != "db" {
			t.Errorf("rotated %q, want db", got)
		}
	})
	t.Run("Removed", func(t *testing.T) {
		if err := h.sched.Reload(ctx, rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@weekly"}); err != nil {
			t.Fatal(err)
		}
		if _, ok := h.sched.NextDue("db"); ok {
			t.Fatal("removed secret still scheduled")
		}
		clk.Set(webDue.Add(-time.Second)) // past db's next daily slot
		clk.idle(t)
		if n := rec.runs("db"); n != 1 {
			t.Fatalf("removed secret rotated %d times, want the 1 before removal", n)
		}
	})
}

func TestParseSchedule(t *testing.T) {
	from := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // a Sunday
	tests := []struct {
		spec string
		want time.Time
	}{
		{"0 3 * * *", time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)},
		{"30 2 * * 1-5", time.Date(2026, 11, 23, 2, 30, 0, 0, time.UTC)},
		{"@weekly", time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)},
		{"@daily", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)},
		{"@every 5s", from.Add(5 * time.Second)},
		// 03:00 in Berlin is 02:00 UTC in winter (CET, UTC+1).
		{"CRON_TZ=Europe/Berlin 0 3 * * *", time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)},
		{"CRON_TZ=America/New_York @daily", time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)},
	}
	// A local zone must not leak into specs without CRON_TZ.
	saved := time.Local
	time.Local = time.FixedZone("X", 7*3600)
	t.Cleanup(func() { time.Local = saved })
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := rotation.ParseSchedule(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(from); !got.Equal(tt.want) {
				t.Fatalf("Next = %v, want %v", got.UTC(), tt.want)
			}
		})
	}
	for _, bad := range []string{"", "61 * * * *", "* * * *", "@fortnightly", "CRON_TZ=Mars/Olympus 0 3 * * *", "0 0 3 * * *"} {
		t.Run("Err/"+bad, func(t *testing.T) {
			if _, err := rotation.ParseSchedule(bad); err == nil {
				t.Fatalf("ParseSchedule(%q) accepted", bad)
			}
		})
	}
}

func TestNewSchedulerRejectsBadPlan(t *testing.T) {
	run := func(context.Context, rotation.SecretSpec) rotation.Result { return rotation.Result{} }
	for name, plan := range map[string]rotation.SchedulePlan{
		"BadDefault": {Secrets: secrets("web"), DefaultSchedule: "nope"},
		"BadOwn":     {Secrets: []rotation.ScheduledSecret{{Spec: rotation.SecretSpec{Name: "web"}, Schedule: "0 25 * * *"}}, DefaultSchedule: "@daily"},
		"Duplicate":  {Secrets: secrets("web", "web"), DefaultSchedule: "@daily"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := rotation.NewScheduler(rotation.SchedulerConfig{SchedulePlan: plan, State: newMemState(), Run: run})
			if err == nil {
				t.Fatal("NewScheduler accepted a bad plan")
			}
		})
	}
}

type failingState struct{ *memState }

func (failingState) NextDue(context.Context, string) (time.Time, bool, error) {
	return time.Time{}, false, errors.New("database is locked")
}

func TestSchedulerRunStateError(t *testing.T) {
	s, err := rotation.NewScheduler(rotation.SchedulerConfig{
		SchedulePlan: rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@daily"},
		State:        failingState{newMemState()},
		Run:          newRecorder(false).Run,
		Clock:        newFakeClock(t0),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Fatalf("Run = %v, want the state's error", err)
	}
}

func TestSchedulerRetriesTransientFailuresThenParks(t *testing.T) {
	state := newMemState()
	_ = state.SetNextDue(context.Background(), "web", t0)
	clk, rec := newFakeClock(t0), newRecorder(true)
	parked := make(chan string, 10)
	s, err := rotation.NewScheduler(rotation.SchedulerConfig{
		SchedulePlan: rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@daily", RetryBase: time.Minute, RetryMax: 2},
		State:        state, Run: rec.Run, Clock: clk,
		Rand:   func(n int64) int64 { return n / 2 }, // no jitter: exactly the base delay
		OnPark: func(spec rotation.SecretSpec, err error) { parked <- spec.Name },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	transient := fmt.Errorf("pre-flight: %w", rotation.ErrUnreachable)
	rec.wait(t)
	rec.release <- transient
	waitState(t, clk, state, "web", t0.Add(time.Minute)) // retry 1 after 1m
	clk.Set(t0.Add(time.Minute))
	rec.wait(t)
	rec.release <- transient
	waitState(t, clk, state, "web", t0.Add(3*time.Minute)) // retry 2 after 2m more
	clk.Set(t0.Add(3 * time.Minute))
	rec.wait(t)
	rec.release <- transient
	// Retries spent: parked until the next regular slot.
	waitState(t, clk, state, "web", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	if n := rec.runs("web"); n != 3 {
		t.Fatalf("ran %d times, want 3", n)
	}
	if len(parked) != 1 || <-parked != "web" {
		t.Fatal("the park was not reported exactly once")
	}
}

func TestSchedulerDoesNotRetryPermanentFailures(t *testing.T) {
	state := newMemState()
	_ = state.SetNextDue(context.Background(), "web", t0)
	clk, rec := newFakeClock(t0), newRecorder(true)
	h := start(t, clk, state, rec, rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@daily", RetryBase: time.Minute})
	rec.wait(t)
	rec.release <- fmt.Errorf("pre-flight: %w", rotation.ErrHostKey)
	waitState(t, clk, state, "web", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	h.shutdown(t)
}

// flakyState fails SetNextDue while failing is set.
type flakyState struct {
	*memState
	mu      sync.Mutex
	failing bool
}

func (f *flakyState) SetNextDue(ctx context.Context, name string, t time.Time) error {
	f.mu.Lock()
	failing := f.failing
	f.mu.Unlock()
	if failing {
		return errors.New("disk full")
	}
	return f.memState.SetNextDue(ctx, name, t)
}

// A reload whose new secret's due time cannot be recorded still applies the
// plan — the secret is scheduled in memory — and is not reported as a
// rejected reload.
func TestSchedulerReloadRecordFailure(t *testing.T) {
	state := &flakyState{memState: newMemState()}
	clk := newFakeClock(t0)
	s, err := rotation.NewScheduler(rotation.SchedulerConfig{
		SchedulePlan: rotation.SchedulePlan{Secrets: secrets("web"), DefaultSchedule: "@daily"},
		State:        state, Run: newRecorder(false).Run, Clock: clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	midnight := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	waitState(t, clk, state.memState, "web", midnight)

	state.mu.Lock()
	state.failing = true
	state.mu.Unlock()
	if err := s.Reload(ctx, rotation.SchedulePlan{Secrets: secrets("web", "db"), DefaultSchedule: "@daily"}); err != nil {
		t.Fatalf("reload reported %v although the plan applies", err)
	}
	if due, ok := s.NextDue("db"); !ok || !due.Equal(midnight) {
		t.Fatalf("db due %v %v, want scheduled at %v", due, ok, midnight)
	}
	if _, ok := state.get("db"); ok {
		t.Fatal("a due time was recorded although the state refused it")
	}
}
