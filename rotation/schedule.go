package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule computes the times a secret is due for rotation.
type Schedule interface {
	// Next returns the first activation time strictly after t.
	Next(t time.Time) time.Time
}

// cronParser accepts the standard five fields (minute hour day-of-month
// month day-of-week) and descriptors such as @weekly and @every 6h.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a cron spec: five standard fields or a descriptor
// (@yearly, @monthly, @weekly, @daily, @hourly, @every DURATION), optionally
// prefixed with CRON_TZ=Zone/Name. Specs without a time zone are read in UTC,
// whatever the machine's local zone. In a zone with daylight saving time, a
// spec at fixed hours has one slot per matching wall-clock time: a slot in
// the hour skipped in spring falls due when the clocks jump, and a slot in
// the hour repeated in autumn is due once (see wallSchedule).
func ParseSchedule(spec string) (Schedule, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return nil, errors.New("empty schedule")
	}
	if !strings.HasPrefix(s, "CRON_TZ=") && !strings.HasPrefix(s, "TZ=") {
		s = "CRON_TZ=UTC " + s
	}
	sched, err := cronParser.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("parse schedule %q: %w", spec, err)
	}
	return withWallClock(sched), nil
}

// Clock is the scheduler's source of time. Tests substitute one they move
// by hand.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has elapsed.
	After(d time.Duration) <-chan time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(min(d, maxSleep)) }

// maxSleep bounds each wait on the wall clock: the scheduler wakes up at
// least this often and compares due times with the time of day, so that a
// machine suspended or a clock stepped does not delay a rotation for long.
const maxSleep = time.Minute

// WallClock is the real clock.
var WallClock Clock = wallClock{}

// ScheduledSecret is a secret with its own cron spec ("" for the default).
type ScheduledSecret struct {
	Spec     SecretSpec
	Schedule string
}

// SchedulePlan is what the scheduler runs: the secrets and how often. It is
// replaced as a whole by Scheduler.Reload.
type SchedulePlan struct {
	Secrets         []ScheduledSecret
	DefaultSchedule string        // cron spec of secrets without their own
	Jitter          time.Duration // each due time is delayed by a random amount in [0, Jitter)
	MaxConcurrent   int           // rotations at once (0 means 1)
	// A rotation that fails for a transient reason (Transient: a host or
	// the vault unreachable) is tried again after RetryBase (1m), doubling
	// each time with jitter, at most RetryMax times (4; negative: never);
	// then the secret is parked until its next regular slot, with an alert.
	RetryBase time.Duration
	RetryMax  int
	// A slot whose rotation finds the secret's lease held by another
	// holder (a dry run, a rollback, a recovery, a rotation by hand) is
	// tried again every LeaseRetry (1m) until LeaseWindow (1h) after its
	// due time, or until the next slot if that comes first; then the slot
	// is missed: OnMissed is called and the next slot is due.
	LeaseRetry  time.Duration
	LeaseWindow time.Duration
}

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	SchedulePlan
	// State persists next-due times across restarts. Required.
	State ScheduleState
	// Run rotates one secret and returns what the rotation did. The
	// scheduler never calls it twice at once for one secret. When its
	// result holds an error after the scheduler's context was cancelled
	// (the daemon is stopping and the rotation did not commit), the due
	// time is kept, so the rotation is made once after the next start.
	Run func(ctx context.Context, spec SecretSpec) Result
	// ClaimSlot, if set, is asked before each slot's rotation whether this
	// process serves the slot (several daemons sharing one journal): false
	// with no error leaves the slot served by another, and Run is not
	// called; an error counts as the slot's failure.
	ClaimSlot func(ctx context.Context, spec SecretSpec) (mine bool, err error)
	// OnRotated, if set, is called with the result of each rotation Run
	// made, and the time Run was called, once it returns: the place to
	// measure, log and alert. A
	// rotation that did not start because the secret's lease was held
	// (the slot is retried, see LeaseRetry) is not reported.
	OnRotated func(spec SecretSpec, started time.Time, r Result)
	// OnPark, if set, is called when a secret is parked after its transient
	// retries are spent, with the last error: the place to raise an alert.
	OnPark func(spec SecretSpec, err error)
	// OnMissed, if set, is called when a slot is given up because the
	// secret's lease stayed held by another holder for the whole retry
	// window (see SchedulePlan.LeaseWindow), with the slot's due time and
	// the last *LeaseHeldError: the place to raise an alert and record it.
	OnMissed func(spec SecretSpec, due time.Time, err error)
	// History, if set, makes each slot's rotation happen once: before a
	// scheduled rotation, a rotation of the secret (kind rotate) committed
	// at or after the slot's due time means the slot was already served
	// (the daemon was killed during it and recovery committed it, or an
	// operator rotated by hand), and Run is not called.
	History HistoryReader
	// Sweep, if set, is called every SweepEvery (default 2m) while the
	// scheduler runs, to finish rotations that other processes left
	// unfinished. Before touching a secret it must call claim and leave
	// the secret alone when claim refuses (the scheduler is rotating it);
	// until release is called the scheduler starts no rotation of it.
	Sweep      func(ctx context.Context, claim func(secretName string) (release func(), ok bool))
	SweepEvery time.Duration
	// Alive, if set, is called from the scheduler's loop when Run starts
	// and then at least every AliveEvery until it returns: a watchdog's
	// ping (systemd's WATCHDOG=1), which stops when the loop is stuck.
	Alive      func()
	AliveEvery time.Duration
	// Clock defaults to WallClock.
	Clock Clock
	// Rand returns a uniform random int64 in [0, n); defaults to math/rand/v2.
	Rand func(n int64) int64
	// Log defaults to a logger that discards.
	Log *slog.Logger
}

// HistoryReader lists the journal's rotations, newest first (see
// Journal.History).
type HistoryReader interface {
	History(ctx context.Context, q HistoryQuery) ([]Rotation, error)
}

// Scheduler starts rotations when they are due. Due times are persisted in
// a ScheduleState: at start, a secret whose persisted due time has passed
// (a run missed while the daemon was down) is rotated once, however many
// slots were missed; a secret with no persisted due time gets the next slot
// from now and is not rotated at once. Its methods are safe for concurrent use.
type Scheduler struct {
	state     ScheduleState
	run       func(ctx context.Context, spec SecretSpec) Result
	claimSlot func(ctx context.Context, spec SecretSpec) (bool, error)
	onRotated func(SecretSpec, time.Time, Result)
	onPark    func(SecretSpec, error)
	clock     Clock
	rand      func(n int64) int64
	log       *slog.Logger

	onMissed   func(SecretSpec, time.Time, error)
	history    HistoryReader
	sweep      func(ctx context.Context, claim func(string) (func(), bool))
	sweepEvery time.Duration
	alive      func()
	aliveEvery time.Duration

	mu      sync.Mutex
	plan    SchedulePlan
	entries map[string]*schedEntry // by secret name
	running int
	wake    chan struct{} // buffered 1: the plan changed or a run finished
	loaded  bool          // Run has read the persisted due times

	claimed map[string]bool // lower-case secret names a sweep is recovering
}

type schedEntry struct {
	spec     SecretSpec
	schedule string // the effective spec text
	sched    Schedule
	next     time.Time // zero until loaded
	slot     time.Time // when next is a retry: the due time of the slot retried
	running  bool
	removed  bool // dropped by a reload while running
	failures int  // transient failures in a row
}

// NewScheduler returns a scheduler for cfg. It returns an error naming the
// secret when a cron spec does not parse, and when a secret is listed twice.
func NewScheduler(cfg SchedulerConfig) (*Scheduler, error) {
	if cfg.State == nil {
		return nil, errors.New("new scheduler: no schedule state")
	}
	if cfg.Run == nil {
		return nil, errors.New("new scheduler: no run function")
	}
	s := &Scheduler{
		state:     cfg.State,
		run:       cfg.Run,
		claimSlot: cfg.ClaimSlot,
		onRotated: cfg.OnRotated,
		clock:     cfg.Clock,
		rand:      cfg.Rand,
		onPark:    cfg.OnPark,
		log:       cfg.Log,
		wake:      make(chan struct{}, 1),

		onMissed:   cfg.OnMissed,
		alive:      cfg.Alive,
		aliveEvery: cfg.AliveEvery,
		history:    cfg.History,
		sweep:      cfg.Sweep,
		sweepEvery: cfg.SweepEvery,
		claimed:    map[string]bool{},
	}
	if s.sweepEvery <= 0 {
		s.sweepEvery = 2 * time.Minute
	}
	if s.clock == nil {
		s.clock = WallClock
	}
	if s.rand == nil {
		s.rand = rand.Int64N
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	entries, err := buildEntries(cfg.SchedulePlan)
	if err != nil {
		return nil, fmt.Errorf("new scheduler: %w", err)
	}
	s.plan, s.entries = cfg.SchedulePlan, entries
	return s, nil
}

func buildEntries(p SchedulePlan) (map[string]*schedEntry, error) {
	if p.Jitter < 0 {
		return nil, fmt.Errorf("negative jitter %s", p.Jitter)
	}
	entries := make(map[string]*schedEntry, len(p.Secrets))
	for _, sec := range p.Secrets {
		if _, dup := entries[sec.Spec.Name]; dup {
			return nil, fmt.Errorf("secret %q listed twice", sec.Spec.Name)
		}
		spec := sec.Schedule
		if spec == "" {
			spec = p.DefaultSchedule
		}
		sched, err := ParseSchedule(spec)
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", sec.Spec.Name, err)
		}
		entries[sec.Spec.Name] = &schedEntry{spec: sec.Spec, schedule: spec, sched: sched}
	}
	return entries, nil
}

// Reload replaces the plan. A new plan that does not parse is rejected and
// the current one kept. Secrets whose schedule is unchanged keep their due
// times; a secret with a changed schedule gets its next slot from now; a
// removed secret is no longer started (a run in flight finishes).
func (s *Scheduler) Reload(ctx context.Context, p SchedulePlan) error {
	entries, err := buildEntries(p)
	if err != nil {
		return fmt.Errorf("reload schedule: %w", err)
	}
	s.mu.Lock()
	loaded := s.loaded
	now := s.clock.Now()
	var persist, fresh []*schedEntry
	for name, e := range entries {
		old, ok := s.entries[name]
		if !ok {
			if loaded {
				fresh = append(fresh, e)
			}
			continue
		}
		// Keep the entry itself: a run in flight refers to it.
		old.spec, old.removed = e.spec, false
		if loaded && old.next.IsZero() {
			// Its due time could not be loaded before: try again now.
			old.schedule, old.sched = e.schedule, e.sched
			fresh = append(fresh, old)
		} else if old.schedule != e.schedule {
			old.schedule, old.sched = e.schedule, e.sched
			old.slot = time.Time{} // a slot being retried belongs to the old schedule
			if !old.next.IsZero() {
				old.next = s.nextAfter(old.sched, now, p.Jitter)
				persist = append(persist, old)
			}
		}
		entries[name] = old
	}
	for name, old := range s.entries {
		if _, ok := entries[name]; !ok && old.running {
			old.removed = true
			entries[name] = old
		}
	}
	s.plan, s.entries = p, entries
	s.mu.Unlock()

	// The plan is in force from here: a due time that cannot be recorded
	// is logged, not reported as a rejected reload.
	for _, e := range persist {
		if err := s.state.SetNextDue(ctx, e.spec.Name, e.next); err != nil {
			s.log.Error("schedule changed but its due time could not be recorded", "secret", e.spec.Name, "next", e.next, "err", err)
			continue
		}
		s.log.Info("schedule changed", "secret", e.spec.Name, "schedule", e.schedule, "next", e.next)
	}
	for _, e := range fresh {
		if err := s.load(ctx, e); err != nil {
			s.log.Error("secret added but its due time could not be read or recorded", "secret", e.spec.Name, "err", err)
		}
	}
	s.poke()
	return nil
}

// nextAfter returns the first slot of sched after t, plus jitter.
func (s *Scheduler) nextAfter(sched Schedule, t time.Time, jitter time.Duration) time.Time {
	next := sched.Next(t)
	if jitter > 0 {
		next = next.Add(time.Duration(s.rand(int64(jitter))))
	}
	return next
}

// load reads the persisted due time of e, or computes and persists the
// next slot from now when none was recorded.
func (s *Scheduler) load(ctx context.Context, e *schedEntry) error {
	due, ok, err := s.state.NextDue(ctx, e.spec.Name)
	if err != nil {
		return fmt.Errorf("read due time of %s: %w", e.spec.Name, err)
	}
	s.mu.Lock()
	now := s.clock.Now()
	if ok && due.After(e.sched.Next(now).Add(s.plan.Jitter)) {
		// Due later than the schedule's next slot: the schedule was
		// shortened while the daemon was down. Follow the new one.
		ok = false
	}
	if !ok {
		due = s.nextAfter(e.sched, now, s.plan.Jitter)
	}
	if e.next.IsZero() {
		e.next = due
	}
	due = e.next
	s.mu.Unlock()
	if !ok {
		if err := s.state.SetNextDue(ctx, e.spec.Name, due); err != nil {
			return fmt.Errorf("record due time of %s: %w", e.spec.Name, err)
		}
	}
	s.log.Info("secret scheduled", "secret", e.spec.Name, "schedule", e.schedule, "next", due)
	return nil
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run starts rotations as they fall due until ctx is cancelled, then waits
// for the rotations in flight to return and returns ctx's error. It returns
// early with an error if the persisted due times cannot be read. Run must
// be called once.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	initial := make([]*schedEntry, 0, len(s.entries))
	for _, e := range s.entries {
		initial = append(initial, e)
	}
	s.mu.Unlock()
	for _, e := range initial {
		if err := s.load(ctx, e); err != nil {
			return fmt.Errorf("run scheduler: %w", err)
		}
	}
	// Secrets a reload added meanwhile.
	s.mu.Lock()
	s.loaded = true
	var late []*schedEntry
	for _, e := range s.entries {
		if e.next.IsZero() && !e.removed {
			late = append(late, e)
		}
	}
	s.mu.Unlock()
	for _, e := range late {
		if err := s.load(ctx, e); err != nil {
			return fmt.Errorf("run scheduler: %w", err)
		}
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	nextSweep := s.clock.Now().Add(s.sweepEvery)
	sweeping := make(chan struct{}, 1) // full while a sweep runs
	var nextAlive time.Time
	for {
		wait := s.startDue(ctx, &wg)
		if s.alive != nil && ctx.Err() == nil {
			now := s.clock.Now()
			if !now.Before(nextAlive) {
				s.alive()
				nextAlive = now.Add(s.aliveEvery)
			}
			if d := nextAlive.Sub(now); s.aliveEvery > 0 && (wait < 0 || d < wait) {
				wait = max(d, 0)
			}
		}
		if s.sweep != nil && ctx.Err() == nil {
			now := s.clock.Now()
			if !now.Before(nextSweep) {
				select {
				case sweeping <- struct{}{}:
					nextSweep = now.Add(s.sweepEvery)
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer func() { <-sweeping; s.poke() }()
						s.sweep(ctx, s.claim)
					}()
				default: // the last one still runs; it wakes us when done
				}
			}
			if d := nextSweep.Sub(now); d > 0 && (wait < 0 || d < wait) {
				wait = d
			}
		}
		if err := sleep(ctx, s.clock, wait, s.wake); err != nil {
			return err
		}
	}
}

// sleep waits on clock for wait (for ever when wait < 0), until wake
// receives, or until ctx is done, when it returns ctx's error: the wait
// of both schedulers' loops between two due times.
func sleep(ctx context.Context, clock Clock, wait time.Duration, wake <-chan struct{}) error {
	var timer <-chan time.Time
	if wait >= 0 {
		timer = clock.After(wait)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
	case <-timer:
	}
	return nil
}

// startDue starts every due secret the concurrency cap allows, earliest
// due first, and returns how long until the next one is due (-1: none is
// waiting on time).
func (s *Scheduler) startDue(ctx context.Context, wg *sync.WaitGroup) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil {
		return -1
	}
	limit := max(s.plan.MaxConcurrent, 1)
	now := s.clock.Now()
	for s.running < limit {
		e := s.earliest(func(e *schedEntry) bool { return !e.next.After(now) })
		if e == nil {
			break
		}
		e.running = true
		s.running++
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runOne(ctx, e)
		}()
	}
	if s.running >= limit {
		return -1 // woken when a run finishes
	}
	e := s.earliest(func(*schedEntry) bool { return true })
	if e == nil {
		return -1
	}
	return max(e.next.Sub(now), 0)
}

// earliest returns the idle, loaded entry with the earliest due time among
// those ok accepts, or nil. s.mu is held.
func (s *Scheduler) earliest(ok func(*schedEntry) bool) *schedEntry {
	var best *schedEntry
	for _, e := range s.entries {
		if e.running || e.removed || e.next.IsZero() || s.claimed[strings.ToLower(e.spec.Name)] || !ok(e) {
			continue
		}
		if best == nil || e.next.Before(best.next) || (e.next.Equal(best.next) && e.spec.Name < best.spec.Name) {
			best = e
		}
	}
	return best
}

func (s *Scheduler) runOne(ctx context.Context, e *schedEntry) {
	s.mu.Lock()
	spec, due, slot := e.spec, e.next, e.slot
	if slot.IsZero() {
		slot = due
	}
	s.mu.Unlock()
	err := s.serve(ctx, spec, due, slot)
	interrupted := err != nil && ctx.Err() != nil
	var held *LeaseHeldError
	leaseHeld := errors.As(err, &held)

	s.mu.Lock()
	var next time.Time
	retry, leaseRetry, missed, parked := false, false, false, false
	if !interrupted {
		now := s.clock.Now()
		// From now, not from the due time: missed slots are not replayed.
		next = s.nextAfter(e.sched, now, s.plan.Jitter)
		e.slot = time.Time{}
		switch {
		case err == nil:
			e.failures = 0
		case leaseHeld:
			// Another holder has the lease for a while (a rollback, a dry
			// run, a recovery): the slot is not lost, only late.
			at := now.Add(s.leaseRetry())
			if at.Before(slot.Add(s.leaseWindow())) && at.Before(next) {
				leaseRetry = true
				next, e.slot = at, slot
			} else {
				missed = true
			}
		case !Transient(err):
			e.failures = 0
		case e.failures < s.retryMax():
			retry = true
			if at := now.Add(s.retryDelay(e.failures)); at.Before(next) {
				next, e.slot = at, slot
			}
			e.failures++
		default:
			parked = true
			e.failures = 0
		}
		e.next = next
	}
	e.running = false
	s.running--
	current := s.entries[spec.Name] == e && !e.removed
	s.mu.Unlock()

	switch {
	case interrupted:
		s.log.Warn("scheduled rotation interrupted; it runs again at next start", "secret", spec.Name, "err", err)
	case leaseRetry:
		s.log.Warn("secret's lease held by another holder; retrying the slot shortly", "secret", spec.Name, "due", slot, "err", err, "retry_at", next)
	case missed:
		s.log.Error("scheduled slot missed: the secret's lease stayed held by another holder", "secret", spec.Name, "due", slot, "err", err, "next", next, "alert", true)
		if s.onMissed != nil {
			s.onMissed(spec, slot, err)
		}
	case retry:
		s.log.Warn("scheduled rotation failed for a transient reason; retrying", "secret", spec.Name, "err", err, "retry_at", next)
	case parked:
		s.log.Error("scheduled rotation keeps failing; secret parked until its next slot", "secret", spec.Name, "err", err, "next", next, "alert", true)
		if s.onPark != nil {
			s.onPark(spec, err)
		}
	case err != nil:
		s.log.Error("scheduled rotation failed", "secret", spec.Name, "err", err, "next", next)
	default:
		s.log.Info("scheduled rotation done", "secret", spec.Name, "next", next)
	}
	if !interrupted && current {
		// The daemon may be stopping: the record must still be written.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if perr := s.state.SetNextDue(pctx, spec.Name, next); perr != nil {
			s.log.Error("cannot record next due time", "secret", spec.Name, "err", perr)
		}
		cancel()
	}
	s.poke()
}

// serve makes the slot's rotation, unless the journal shows it made
// already or another process sharing the journal serves it, and reports
// each rotation that started to OnRotated. It returns the rotation's
// error.
func (s *Scheduler) serve(ctx context.Context, spec SecretSpec, due, slot time.Time) error {
	if done := s.servedSince(ctx, spec.Name, slot); done != nil {
		s.log.Info("rotation already made for this slot; skipped", "secret", spec.Name, "rotation", done.ID, "due", slot)
		return nil
	}
	s.log.Info("scheduled rotation starting", "secret", spec.Name, "due", due)
	if s.claimSlot != nil {
		if mine, err := s.claimSlot(ctx, spec); err != nil || !mine {
			return err
		}
	}
	started := s.clock.Now()
	r := s.run(ctx, spec)
	var held *LeaseHeldError
	if s.onRotated != nil && !errors.As(r.Err, &held) {
		// A rotation that found the lease held did not start: the
		// slot is retried, and missed (OnMissed) in the end.
		s.onRotated(spec, started, r)
	}
	return r.Err
}

// servedSince returns the newest committed rotation (kind rotate) of the
// secret started at or after due, or nil when there is none or the journal
// cannot be read (then the slot is rotated: a rotation too many is safe, a
// slot skipped is not).
func (s *Scheduler) servedSince(ctx context.Context, secretName string, due time.Time) *Rotation {
	if s.history == nil {
		return nil
	}
	r, err := RotatedSince(ctx, s.history, secretName, due)
	if err != nil {
		s.log.Error("cannot read the journal; rotating anyway", "secret", secretName, "err", err)
		return nil
	}
	return r
}

// RotatedSince returns the newest committed rotation (kind rotate) of the
// secret started at or after due, or nil when there is none. The scheduler
// uses it to make a scheduled rotation exactly once: a rotation started for
// a slot, interrupted by a crash before the due time advanced and committed
// by recovery, must not be made again by the catch-up at the next start.
func RotatedSince(ctx context.Context, j HistoryReader, secretName string, due time.Time) (*Rotation, error) {
	const page = 50
	var before int64
	for {
		rs, err := j.History(ctx, HistoryQuery{Secret: secretName, BeforeID: before, Limit: page})
		if err != nil {
			return nil, fmt.Errorf("read history of %s: %w", secretName, err)
		}
		for i := range rs {
			r := &rs[i]
			if r.Started.Before(due) {
				return nil, nil // newest first: the rest are older
			}
			if r.Kind == KindRotate && r.State == StateCommitted {
				return r, nil
			}
		}
		if len(rs) < page {
			return nil, nil
		}
		before = rs[len(rs)-1].ID
	}
}

// Claim marks a secret as busy (a heartbeat checking it) unless the
// scheduler is rotating it or it is claimed already: until release is
// called, no scheduled rotation of it starts. ok is false, and release
// nil, when it is refused.
func (s *Scheduler) Claim(secretName string) (release func(), ok bool) {
	return s.claim(secretName)
}

// claim marks a secret as being recovered by a sweep, unless the scheduler
// is rotating it or another sweep has it. Until release is called, no
// scheduled rotation of it starts.
func (s *Scheduler) claim(secretName string) (release func(), ok bool) {
	key := strings.ToLower(secretName)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claimed[key] {
		return nil, false
	}
	for _, e := range s.entries {
		if e.running && strings.EqualFold(e.spec.Name, secretName) {
			return nil, false
		}
	}
	s.claimed[key] = true
	return sync.OnceFunc(func() {
		s.mu.Lock()
		delete(s.claimed, key)
		s.mu.Unlock()
		s.poke()
	}), true
}

func (s *Scheduler) leaseRetry() time.Duration {
	if s.plan.LeaseRetry > 0 {
		return s.plan.LeaseRetry
	}
	return time.Minute
}

func (s *Scheduler) leaseWindow() time.Duration {
	if s.plan.LeaseWindow > 0 {
		return s.plan.LeaseWindow
	}
	return time.Hour
}

func (s *Scheduler) retryMax() int {
	switch {
	case s.plan.RetryMax < 0:
		return 0
	case s.plan.RetryMax == 0:
		return 4
	}
	return s.plan.RetryMax
}

// retryDelay is the wait before transient retry number n (0-based):
// RetryBase doubled n times, capped at 6h, with ±25% jitter.
func (s *Scheduler) retryDelay(n int) time.Duration {
	base := s.plan.RetryBase
	if base <= 0 {
		base = time.Minute
	}
	d := base << min(n, 16)
	if d > 6*time.Hour || d <= 0 {
		d = 6 * time.Hour
	}
	return d*3/4 + time.Duration(s.rand(int64(d/2)+1))
}

// NextDue returns the due time the scheduler holds for a secret; ok is
// false for a secret it does not schedule or has not loaded yet.
func (s *Scheduler) NextDue(name string) (t time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, found := s.entries[name]
	if !found || e.removed || e.next.IsZero() {
		return time.Time{}, false
	}
	return e.next, true
}
