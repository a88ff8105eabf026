package rotation

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/rotord/rotord/rotation/secret"
)

// HeartbeatResult reports, per host, whether the vault's password logs in.
type HeartbeatResult struct {
	Secret string
	Hosts  []HostResult // State is empty; Outcome is "ok" or the login error
	// Err is set when the secret could not be read, or any host failed.
	// Hosts that refused the password make it satisfy ErrDrift; hosts that
	// could not be reached (or gave no answer in time) ErrUnreachable; hosts
	// whose key is not trusted ErrHostKey. When hosts failed in several
	// ways, Err joins one error per way (errors.Join), each naming its hosts.
	Err error
}

// Heartbeat logs into every host of the secret with the password the vault
// holds and reports hosts where it no longer works (drift: the password was
// refused) apart from hosts it could not check (unreachable, or an
// untrusted host key). It changes nothing but the audit trail.
func (e *Engine) Heartbeat(ctx context.Context, spec SecretSpec) HeartbeatResult {
	return e.heartbeat(ctx, spec, nil)
}

// heartbeat is Heartbeat; with memo, a host is not offered a password it
// refused before, and each host's refusal is remembered.
func (e *Engine) heartbeat(ctx context.Context, spec SecretSpec, memo *refusedMemo) HeartbeatResult {
	res := HeartbeatResult{Secret: spec.Name}
	s, err := e.readSecret(ctx, spec)
	if err != nil {
		res.Err = err
		return res
	}
	access, err := e.hosts.forSpec(ctx, spec)
	if err != nil {
		res.Err = err
		return res
	}
	res.Hosts = make([]HostResult, len(s.Hosts))
	errs := make([]error, len(s.Hosts))
	done := make(chan struct{})
	for i, h := range s.Hosts {
		go func() {
			defer func() { done <- struct{}{} }()
			if memo != nil && memo.refused(spec.Name, h, s.Password) {
				errs[i] = ErrRefusedBefore
				return
			}
			errs[i] = access.verify(ctx, h, s.Username, s.Password)
			if memo != nil {
				memo.set(spec.Name, h, s.Password, errors.Is(errs[i], ErrAuthFailed))
			}
		}()
	}
	for range s.Hosts {
		<-done
	}
	var drift, unreachable, untrusted, other []string
	var otherErrs []error
	for i, h := range s.Hosts {
		res.Hosts[i] = HostResult{Host: h, Outcome: "ok"}
		err := errs[i]
		if err == nil {
			continue
		}
		res.Hosts[i].Outcome = err.Error()
		switch {
		case errors.Is(err, ErrAuthFailed):
			drift = append(drift, h.String())
		case errors.Is(err, ErrHostKey):
			untrusted = append(untrusted, h.String())
		case errors.Is(err, ErrUnreachable), errors.Is(err, ErrLoginUnknown):
			unreachable = append(unreachable, h.String())
		default:
			other = append(other, h.String())
			otherErrs = append(otherErrs, fmt.Errorf("%s: %w", h, err))
		}
	}
	var found []error
	if len(drift) > 0 {
		found = append(found, fmt.Errorf("%w: the password Secret Server holds is refused by %s", ErrDrift, strings.Join(drift, ", ")))
		e.log.Warn("heartbeat found drift", "secret", spec.Name, "hosts", strings.Join(drift, ","), "alert", true)
	}
	if len(unreachable) > 0 {
		found = append(found, fmt.Errorf("%w: could not check the password on %s", ErrUnreachable, strings.Join(unreachable, ", ")))
		e.log.Warn("heartbeat could not reach hosts", "secret", spec.Name, "hosts", strings.Join(unreachable, ","), "alert", true)
	}
	if len(untrusted) > 0 {
		found = append(found, fmt.Errorf("%w: no password sent to %s", ErrHostKey, strings.Join(untrusted, ", ")))
		e.log.Warn("heartbeat found untrusted host keys", "secret", spec.Name, "hosts", strings.Join(untrusted, ","), "alert", true)
	}
	if len(other) > 0 {
		found = append(found, errors.Join(otherErrs...))
		e.log.Warn("heartbeat could not check hosts", "secret", spec.Name, "hosts", strings.Join(other, ","), "alert", true)
	}
	detail := "ok"
	if len(found) > 0 {
		res.Err = errors.Join(found...)
		if len(found) == 1 {
			res.Err = found[0]
		}
		detail = res.Err.Error()
	}
	e.audit(ctx, Event{Secret: spec.Name, Actor: "heartbeat", Action: "heartbeat", Detail: detail})
	return res
}

// ErrDrift: a host refuses the password the vault holds.
var ErrDrift = errors.New("password drift")

// HeartbeatState is what a heartbeat found for a secret as a whole.
type HeartbeatState string

// Heartbeat states. Drift outranks unreachable, which outranks failed: a
// secret with one host refusing the password and another down is in drift.
const (
	HeartbeatOK          HeartbeatState = "ok"          // every host takes the password Secret Server holds
	HeartbeatDrift       HeartbeatState = "drift"       // a host refuses the password Secret Server holds
	HeartbeatUnreachable HeartbeatState = "unreachable" // a host, or Secret Server, could not be reached
	HeartbeatFailed      HeartbeatState = "failed"      // could not check for another reason (an untrusted host key, a bad hosts field...)
)

// State classifies the result.
func (r HeartbeatResult) State() HeartbeatState {
	switch {
	case r.Err == nil:
		return HeartbeatOK
	case errors.Is(r.Err, ErrDrift):
		return HeartbeatDrift
	case errors.Is(r.Err, ErrUnreachable), errors.Is(r.Err, ErrVaultUnavailable):
		return HeartbeatUnreachable
	default:
		return HeartbeatFailed
	}
}

// ErrRefusedBefore: a heartbeat did not log in because the host refused
// this very password (the one Secret Server still holds) at an earlier
// heartbeat of this process; trying it again would only bring the
// account closer to a pam_faillock lockout. It satisfies ErrAuthFailed.
var ErrRefusedBefore = fmt.Errorf("%w: refused at an earlier heartbeat; not tried again until Secret Server's password changes", ErrAuthFailed)

// refusedMemo remembers, for this process, which password each host of
// each secret refused, as a keyed hash (the key is random per process and
// never leaves it), so that a scheduled heartbeat does not offer a host a
// password it refused. Safe for concurrent use.
type refusedMemo struct {
	once sync.Once
	key  []byte
	mu   sync.Mutex
	seen map[string][]byte // secret key + host → HMAC of the refused password
}

func (m *refusedMemo) mac(pw secret.Value) []byte {
	m.once.Do(func() {
		m.key = make([]byte, 32)
		_, _ = rand.Read(m.key)
		m.seen = map[string][]byte{}
	})
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte(pw.Reveal()))
	return h.Sum(nil)
}

func (m *refusedMemo) refused(secretName string, h Host, pw secret.Value) bool {
	mac := m.mac(pw)
	m.mu.Lock()
	defer m.mu.Unlock()
	return hmac.Equal(m.seen[SecretKey(secretName)+"\x00"+h.String()], mac)
}

func (m *refusedMemo) set(secretName string, h Host, pw secret.Value, refused bool) {
	mac := m.mac(pw)
	m.mu.Lock()
	defer m.mu.Unlock()
	k := SecretKey(secretName) + "\x00" + h.String()
	if refused {
		m.seen[k] = mac
	} else {
		delete(m.seen, k)
	}
}

// ScheduledHeartbeat is Heartbeat as the daemon runs it: under the
// secret's lease, so that it never checks a secret while a rotation (by
// this process or another) may be changing its hosts — it returns a
// *LeaseHeldError in Err and checks nothing then — and without offering a
// host a password that host already refused at an earlier heartbeat of
// this engine (ErrRefusedBefore): one login per host per run at most, and
// none while the drift lasts.
func (e *Engine) ScheduledHeartbeat(ctx context.Context, spec SecretSpec) HeartbeatResult {
	l, err := e.lease(ctx, spec.Name)
	if err != nil {
		return HeartbeatResult{Secret: spec.Name, Err: err}
	}
	defer l.release()
	return e.heartbeat(ctx, spec, &e.refused)
}

// HeartbeatPlan is what a HeartbeatScheduler runs: the secrets and their
// heartbeat schedules. It is replaced as a whole by Reload.
type HeartbeatPlan struct {
	// Secrets with their own schedule ("" for DefaultSchedule; "off" for
	// none).
	Secrets         []ScheduledSecret
	DefaultSchedule string // "" or "off": no heartbeat for secrets without their own
}

// HeartbeatSchedulerConfig configures a HeartbeatScheduler.
type HeartbeatSchedulerConfig struct {
	HeartbeatPlan
	// Check runs one heartbeat (Engine.ScheduledHeartbeat). Required.
	Check func(ctx context.Context, spec SecretSpec) HeartbeatResult
	// Claim, if set, is asked before each check; while it refuses (the
	// rotation scheduler is rotating the secret) the check waits for the
	// secret's next heartbeat slot. Scheduler.Claim fits.
	Claim func(secretName string) (release func(), ok bool)
	// OnResult is called after each check that ran (not one skipped for a
	// held lease) with the state before it ("" for none yet this run) and
	// the result. Required.
	OnResult func(spec SecretSpec, before HeartbeatState, r HeartbeatResult)
	Clock    Clock // defaults to WallClock
	Log      *slog.Logger
}

// HeartbeatScheduler checks secrets on their heartbeat schedules, one
// check at a time. Its methods are safe for concurrent use.
type HeartbeatScheduler struct {
	cfg  HeartbeatSchedulerConfig
	wake chan struct{}

	mu      sync.Mutex
	entries map[string]*hbEntry // by secret key
}

type hbEntry struct {
	spec  SecretSpec
	sched Schedule
	next  time.Time
	state HeartbeatState
}

// Enabled reports whether the plan checks any secret.
func (p HeartbeatPlan) Enabled() bool {
	for _, s := range p.Secrets {
		if hbSpec(s.Schedule, p.DefaultSchedule) != "" {
			return true
		}
	}
	return false
}

func hbSpec(own, def string) string {
	s := strings.TrimSpace(own)
	if s == "" {
		s = strings.TrimSpace(def)
	}
	if strings.EqualFold(s, "off") {
		return ""
	}
	return s
}

// NewHeartbeatScheduler returns a scheduler for cfg, or an error naming
// the secret whose schedule does not parse.
func NewHeartbeatScheduler(cfg HeartbeatSchedulerConfig) (*HeartbeatScheduler, error) {
	if cfg.Check == nil || cfg.OnResult == nil {
		return nil, errors.New("new heartbeat scheduler: no check or result function")
	}
	if cfg.Clock == nil {
		cfg.Clock = WallClock
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &HeartbeatScheduler{cfg: cfg, wake: make(chan struct{}, 1), entries: map[string]*hbEntry{}}
	if err := h.Reload(cfg.HeartbeatPlan); err != nil {
		return nil, err
	}
	<-h.wake // nothing runs yet to be woken
	return h, nil
}

// Reload replaces the plan. A secret that stays keeps its last state (so
// a reload raises no alert) and its next slot when its schedule is
// unchanged.
func (h *HeartbeatScheduler) Reload(p HeartbeatPlan) error {
	now := h.cfg.Clock.Now()
	entries := map[string]*hbEntry{}
	for _, s := range p.Secrets {
		spec := hbSpec(s.Schedule, p.DefaultSchedule)
		if spec == "" {
			continue
		}
		sched, err := ParseSchedule(spec)
		if err != nil {
			return fmt.Errorf("secret %q: heartbeat schedule: %w", s.Spec.Name, err)
		}
		entries[SecretKey(s.Spec.Name)] = &hbEntry{spec: s.Spec, sched: sched, next: sched.Next(now)}
	}
	h.mu.Lock()
	for k, e := range entries {
		if old, ok := h.entries[k]; ok {
			e.state = old.state
		}
	}
	h.entries = entries
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run checks secrets as they fall due until ctx is cancelled, then
// returns ctx's error. A check in progress is given ctx: it stops when
// the daemon stops.
func (h *HeartbeatScheduler) Run(ctx context.Context) error {
	for {
		now := h.cfg.Clock.Now()
		var due *hbEntry
		var wait time.Duration = -1
		h.mu.Lock()
		for _, e := range h.entries {
			if !e.next.After(now) {
				if due == nil || e.next.Before(due.next) {
					due = e
				}
			} else if d := e.next.Sub(now); wait < 0 || d < wait {
				wait = d
			}
		}
		var spec SecretSpec
		if due != nil {
			spec = due.spec
			due.next = due.sched.Next(now)
		}
		h.mu.Unlock()
		if due != nil {
			h.check(ctx, spec)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		if err := sleep(ctx, h.cfg.Clock, wait, h.wake); err != nil {
			return err
		}
	}
}

func (h *HeartbeatScheduler) check(ctx context.Context, spec SecretSpec) {
	if h.cfg.Claim != nil {
		release, ok := h.cfg.Claim(spec.Name)
		if !ok {
			h.cfg.Log.Debug("heartbeat skipped: the secret is being rotated", "secret", spec.Name)
			return
		}
		defer release()
	}
	r := h.cfg.Check(ctx, spec)
	if held := (*LeaseHeldError)(nil); errors.As(r.Err, &held) {
		h.cfg.Log.Debug("heartbeat skipped: the secret's lease is held", "secret", spec.Name, "holder", held.Holder)
		return
	}
	if ctx.Err() != nil && r.Err != nil {
		return // cut off by the stop: it says nothing about the secret
	}
	h.mu.Lock()
	var before HeartbeatState
	if e, ok := h.entries[SecretKey(spec.Name)]; ok {
		before = e.state
		e.state = r.State()
	}
	h.mu.Unlock()
	h.cfg.OnResult(spec, before, r)
}
