package rotation

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/rotord/rotord/rotation/secret"
)

// This file is the one home of host operations: how a secret's hosts are
// named (HostsOf), how the engine reaches a host (hostAccess: slots,
// logins with retries, the pre-flight, passwd), and each host step of a
// rotation in progress (the run's changeHost, probe, revertHost and
// forceSet), within the host's budget of refused logins.

// HostsFieldOf returns the slug of the field spec's hosts are read from:
// the spec's own, else the configured default ("" leaves it to the vault).
func (c Config) HostsFieldOf(spec SecretSpec) string {
	if spec.HostsField != "" {
		return spec.HostsField
	}
	return c.HostsField
}

// HostsOf returns the hosts listed in a secret as a rotation of spec
// reaches them: the default port (spec's, else Port) filled in where a
// host has none, every name in its canonical spelling (canonicalHost), and
// the duplicates that makes dropped: "web01", "WEB01:22" and "web01." are
// one host when the default port is 22, and changing it twice would fail
// the rotation on every run.
func (c Config) HostsOf(spec SecretSpec, listed []Host) []Host {
	port := spec.Port
	if port == 0 {
		port = c.Port
	}
	out := make([]Host, 0, len(listed))
	seen := make(map[string]bool, len(listed))
	for _, h := range listed {
		h = canonicalHost(h, port)
		if k := h.String(); !seen[k] {
			seen[k] = true
			out = append(out, h)
		}
	}
	return out
}

// canonicalHost returns the one spelling of h's endpoint: an IP literal
// in its canonical text form (IPv6 compressed and in lower case), a DNS
// name in lower case without a trailing dot, and port when h has none.
func canonicalHost(h Host, port int) Host {
	name := strings.TrimSuffix(strings.TrimSpace(h.Name), ".")
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")); err == nil {
		name = a.String()
	} else {
		name = strings.ToLower(name)
	}
	h.Name = name
	if h.Port == 0 {
		h.Port = port
	}
	return h
}

// hostAccess is how the engine reaches hosts: through the HostChanger,
// within the SSH operation slots every rotation shares, retrying a login
// that never reached the host, and through the reconcile account when a
// password must be set without the current one.
type hostAccess struct {
	changer      HostChanger // the secret's path (forSpec), else base
	base         HostChanger // Deps.Hosts: the reconcile account logs in through it
	pathFor      func(context.Context, SecretSpec) (HostChanger, error)
	reconcileFor func(context.Context) (HostChanger, Account, error) // Deps.Reconcile
	slots        chan struct{}                                       // one per SSH operation at once
	retries      int                                                 // attempts per login on transient network errors
	retryBase    time.Duration                                       // first backoff between them
	reconcile    *Account                                            // nil: none configured
}

func newHostAccess(cfg Config, d Deps) *hostAccess {
	return &hostAccess{
		changer: d.Hosts, base: d.Hosts, pathFor: d.HostsFor, reconcileFor: d.Reconcile, slots: make(chan struct{}, cfg.Concurrency),
		retries: cfg.HostRetries, retryBase: cfg.RetryBase, reconcile: cfg.Reconcile,
	}
}

// forSpec returns the access of one run on spec's hosts: the same slots
// and retries, through the HostChanger of spec's path (Deps.HostsFor),
// chosen once so that every step of the run goes the same way.
func (a *hostAccess) forSpec(ctx context.Context, spec SecretSpec) (*hostAccess, error) {
	if a.pathFor == nil {
		return a, nil
	}
	c, err := a.pathFor(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("path to the hosts of %q: %w", spec.Name, err)
	}
	if c == nil {
		return a, nil
	}
	b := *a
	b.changer = c
	return &b, nil
}

// slot takes one of the shared SSH operation slots.
func (a *hostAccess) slot(ctx context.Context) (func(), error) {
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// backoff waits before retry number attempt (0-based): exponential from
// retryBase with ±50% jitter, capped at 30s.
func (a *hostAccess) backoff(ctx context.Context, attempt int) error {
	if a.retryBase == 0 {
		return ctx.Err()
	}
	d := a.retryBase << attempt
	if d > 30*time.Second || d <= 0 {
		d = 30 * time.Second
	}
	d = d/2 + time.Duration(mrand.Int64N(int64(d)))
	return pause(ctx, d)
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// login logs into h and checks the session, retrying transient network
// errors with backoff.
func (a *hostAccess) login(ctx context.Context, h Host, user string, pw secret.Value) (HostSession, error) {
	var s HostSession
	err := a.retry(ctx, func() error {
		var err error
		s, err = a.changer.Login(ctx, h, user, pw)
		if err == nil {
			if err = s.Check(ctx); err != nil {
				_ = s.Close()
				s = nil
			}
		}
		return err
	})
	return s, err
}

// verify proves pw authenticates user on h afresh: the changer's own
// Verify where it has one (HostVerifier), else a login, closed at once.
func (a *hostAccess) verify(ctx context.Context, h Host, user string, pw secret.Value) error {
	if v, ok := a.changer.(HostVerifier); ok {
		return a.retry(ctx, func() error { return v.Verify(ctx, h, user, pw) })
	}
	s, err := a.login(ctx, h, user, pw)
	if err != nil {
		return err
	}
	return s.Close()
}

// retry runs op, which sends a password to a host, within an SSH slot,
// and again with backoff while it fails before the password was sent
// (ErrUnreachable). It never retries a refused password, nor one whose
// answer never came: that would feed pam_faillock.
func (a *hostAccess) retry(ctx context.Context, op func() error) error {
	var err error
	for attempt := 0; attempt < a.retries; attempt++ {
		if attempt > 0 {
			if werr := a.backoff(ctx, attempt-1); werr != nil {
				return err
			}
		}
		var release func()
		release, err = a.slot(ctx)
		if err != nil {
			return err
		}
		err = op()
		release()
		if err == nil || !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrLoginUnknown) {
			return err
		}
	}
	return err
}

// preflight logs into every host with the current password, concurrently,
// and keeps the sessions open as lifelines (aligned with s.Hosts). Any
// failure closes them all.
func (a *hostAccess) preflight(ctx context.Context, s Secret) ([]HostSession, []HostResult, error) {
	sessions := make([]HostSession, len(s.Hosts))
	errs := make([]error, len(s.Hosts))
	var wg sync.WaitGroup
	for i, h := range s.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sessions[i], errs[i] = a.login(ctx, h, s.Username, s.Password)
		}()
	}
	wg.Wait()
	results := make([]HostResult, len(s.Hosts))
	var failed []error
	for i, h := range s.Hosts {
		results[i] = HostResult{Host: h, State: HostPending, Outcome: "pre-flight ok"}
		if errs[i] != nil {
			results[i] = HostResult{Host: h, State: HostFailed, Outcome: "pre-flight: " + errs[i].Error()}
			failed = append(failed, fmt.Errorf("%s: %w", h, errs[i]))
		}
	}
	if len(failed) > 0 {
		closeAll(sessions)
		return nil, results, fmt.Errorf("%w: %w", ErrPreflight, errors.Join(failed...))
	}
	return sessions, results, nil
}

// passwd runs the passwd dialogue on sess, from one password to another,
// within an SSH slot.
func (a *hostAccess) passwd(ctx context.Context, sess HostSession, from, to secret.Value) Outcome {
	release, err := a.slot(ctx)
	if err != nil {
		return Outcome{Kind: OutcomeUnexpected, Err: err}
	}
	defer release()
	return sess.ChangePassword(ctx, from, to)
}

// errNoReconcileAccount: no privileged account is configured.
var errNoReconcileAccount = errors.New("no reconcile account configured (set ssh.reconcile, then run `rotord recover`, to reset the host)")

// forceSet sets user's password on h to pw through the reconcile account,
// without the current password.
func (a *hostAccess) forceSet(ctx context.Context, h Host, user string, pw secret.Value) error {
	acct := a.reconcile
	direct := *a
	direct.changer = a.base
	if a.reconcileFor != nil {
		c, ra, err := a.reconcileFor(ctx)
		if err != nil {
			return fmt.Errorf("reconcile account: %w", err)
		}
		direct.changer, acct = c, &ra
	}
	if acct == nil {
		return errNoReconcileAccount
	}
	sess, err := direct.login(ctx, h, acct.User, acct.Password)
	if err != nil {
		return fmt.Errorf("reconcile account login: %w", err)
	}
	defer sess.Close()
	release, err := a.slot(ctx)
	if err != nil {
		return err
	}
	out := sess.SetPassword(ctx, user, pw)
	release()
	if out.Kind != OutcomeChanged {
		return fmt.Errorf("reconcile account passwd: %s", out)
	}
	return nil
}

func closeAll(sessions []HostSession) {
	for i, s := range sessions {
		if s != nil {
			_ = s.Close()
			sessions[i] = nil
		}
	}
}

// The host steps of a rotation in progress follow. Each keeps the host's
// budget of refused logins: a password the host refused is not sent to it
// again, and no login is tried once the budget is spent.

// errRefusedBefore: the host refused this password earlier in the
// rotation (or an earlier run of it, as the journal records); it is not
// sent to the host again.
var errRefusedBefore = fmt.Errorf("%w earlier in this rotation; not sent again", ErrAuthFailed)

// errBudgetSpent: the host's refused logins reached RefusalBudget; no
// further password is sent to it in this rotation (pam_faillock would lock
// the account).
var errBudgetSpent = fmt.Errorf("no login tried: the host refused %d logins in this rotation, the most allowed", RefusalBudget)

// errFencedOff stops host work once the journal fenced this process off.
var errFencedOff = fmt.Errorf("%w: host not touched", ErrFenced)

// refusedBefore reports whether host i refused pw earlier in the rotation.
func (x *run) refusedBefore(i int, pw secret.Value) bool {
	ref := x.r.Hosts[i].Refused
	return (ref.Old && pw.Equal(x.r.Old)) || (ref.New && pw.Equal(x.r.New))
}

// noteRefused records that host i refused pw: in memory, then durably. A
// refused login (or one whose outcome is unknown) counts against the
// host's budget; passwd refusing pw as the current password does not
// (pam_faillock counts logins, not passwd's own check) but marks pw as
// refused all the same. A journal failure does not stop the caller; the
// mark holds in memory.
func (x *run) noteRefused(ctx context.Context, i int, pw secret.Value, login bool) {
	h := &x.r.Hosts[i]
	if login {
		h.Refused.Count++
	}
	if pw.Equal(x.r.Old) {
		h.Refused.Old = true
	}
	if pw.Equal(x.r.New) {
		h.Refused.New = true
	}
	x.saveRefused(ctx, i)
}

// noteTook records that host i took pw by a confirmed passwd change: a
// refusal of pw earlier no longer describes the host. The count of
// refused logins stays; the budget is per rotation.
func (x *run) noteTook(ctx context.Context, i int, pw secret.Value) {
	h := &x.r.Hosts[i]
	was := h.Refused
	if pw.Equal(x.r.Old) {
		h.Refused.Old = false
	}
	if pw.Equal(x.r.New) {
		h.Refused.New = false
	}
	if h.Refused == was {
		return
	}
	x.saveRefused(ctx, i)
}

// saveRefused journals what host i refused. A journal failure stops new
// host work (noteJournalErr); the record holds in memory for this run.
func (x *run) saveRefused(ctx context.Context, i int) {
	h := &x.r.Hosts[i]
	if err := x.store.SetRefused(ctx, x.r.ID, x.r.Generation, h.Host, h.Refused); err != nil {
		x.log.Error("journal write failed", "secret", x.r.Secret, "rotation", x.r.ID, "host", h.Host.String(), "err", err)
		x.noteJournalErr(err)
	}
}

// setHost records host i's state in memory and in the journal.
func (x *run) setHost(ctx context.Context, i int, st HostState, reason FailReason, errText string) error {
	h := &x.r.Hosts[i]
	h.State = st
	if st == HostFailed || st == HostNeedsReconcile {
		x.mu.Lock()
		x.failedHost = true
		x.mu.Unlock()
	}
	h.Reason, h.Error = reason, errText
	if st == HostChanging || st == HostReverting {
		h.Attempts++
	}
	if err := x.store.SetHost(ctx, x.r.ID, x.r.Generation, *h); err != nil {
		x.log.Error("journal write failed", "secret", x.r.Secret, "rotation", x.r.ID, "host", h.Host.String(), "err", err)
		x.noteJournalErr(err)
		return err
	}
	x.log.Debug("host state", "secret", x.r.Secret, "rotation", x.r.ID, "host", h.Host.String(), "state", string(st))
	return nil
}

// tryLogin logs into host i as the rotated user with pw, unless the host
// refused pw before in this rotation (errRefusedBefore), its budget of
// refused logins is spent (errBudgetSpent) or the journal fenced this
// process off. A refusal, or a login whose outcome is unknown, is recorded.
func (x *run) tryLogin(ctx context.Context, i int, pw secret.Value) (HostSession, error) {
	var sess HostSession
	err := x.gated(ctx, i, pw, func() (err error) {
		sess, err = x.hosts.login(ctx, x.r.Hosts[i].Host, x.r.Username, pw)
		return err
	})
	return sess, err
}

// tryVerify proves pw authenticates the rotated user on host i afresh,
// within the rules of tryLogin.
func (x *run) tryVerify(ctx context.Context, i int, pw secret.Value) error {
	return x.gated(ctx, i, pw, func() error { return x.hosts.verify(ctx, x.r.Hosts[i].Host, x.r.Username, pw) })
}

// gated sends pw to host i through send, unless the host refused it
// before, its budget is spent or the run is fenced off; a refusal, or an
// answer that never came, is recorded.
func (x *run) gated(ctx context.Context, i int, pw secret.Value, send func() error) error {
	switch {
	case x.fenced():
		return errFencedOff
	case x.refusedBefore(i, pw):
		return errRefusedBefore
	case x.r.Hosts[i].Refused.Spent():
		return errBudgetSpent
	}
	err := send()
	if err != nil && (errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrLoginUnknown)) {
		x.noteRefused(ctx, i, pw, true)
	}
	return err
}

// confirm proves host i holds pw after passwd reported setting it: a
// fresh login, unless the host's budget of refused logins is spent, in
// which case passwd's word is taken (note says so) rather than risk a
// lockout.
func (x *run) confirm(ctx context.Context, i int, pw secret.Value) (note string, err error) {
	x.noteTook(ctx, i, pw)
	if x.r.Hosts[i].Refused.Spent() {
		return "not confirmed by a login: the host's budget of refused logins is spent", nil
	}
	return "", x.tryVerify(ctx, i, pw)
}

// changeHost runs passwd on host i from the old password to the new one
// and verifies the result with a fresh login.
func (x *run) changeHost(ctx context.Context, i int, stop func() string) {
	if why := stop(); why != "" {
		_ = x.setHost(ctx, i, HostFailed, ReasonNotStarted, notStartedPrefix+why)
		return
	}
	sess := x.lifelines[i]
	if sess == nil {
		var err error
		if sess, err = x.tryLogin(ctx, i, x.r.Old); err != nil {
			_ = x.setHost(ctx, i, HostFailed, ReasonOf(err), "login: "+err.Error())
			return
		}
		x.lifelines[i] = sess
	}
	if x.setHost(ctx, i, HostChanging, ReasonNone, "") != nil {
		// Not journaled: do not touch the host, which holds the old password.
		h := &x.r.Hosts[i]
		h.State, h.Reason, h.Error = HostFailed, ReasonNotStarted, notStartedPrefix+"journal write failed"
		return
	}
	if x.fenced() {
		return // not ours any more: do not touch the host
	}
	faultPoint("host-changing")
	out := x.passwd(ctx, i, x.r.Old, x.r.New)
	if x.fenced() {
		return // the host stays changing: the new holder probes it
	}
	switch out.Kind {
	case OutcomeChanged:
		if err := x.tryVerify(ctx, i, x.r.New); err != nil {
			why := "passwd reported success but the new password does not log in: " + err.Error()
			if errors.Is(err, ErrAuthFailed) {
				// Refused already: another try only feeds pam_faillock.
				x.probeOld(ctx, i, ReasonUnverified, why, err)
				return
			}
			x.probe(ctx, i, ReasonUnverified, why)
			return
		}
		_ = x.setHost(ctx, i, HostChanged, ReasonNone, "")
		faultPoint("host-changed")
	case OutcomeWrongCurrent:
		x.noteRefused(ctx, i, x.r.Old, false)
		_ = x.setHost(ctx, i, HostFailed, ReasonWrongCurrent, "passwd refused the current password")
	case OutcomeRejected:
		_ = x.setHost(ctx, i, HostFailed, ReasonRejected, rejectedPrefix+out.Reason)
	default:
		if errors.Is(out.Err, ErrBeforePasswd) {
			// su or sudo failed before passwd ran: nothing changed, and
			// the lifeline proved the old password. No probe.
			_ = x.setHost(ctx, i, HostFailed, ReasonEscalation, "passwd not run: "+out.Err.Error())
			return
		}
		// passwd may still be writing what it was given (a step that
		// timed out, a connection that broke): let it land before probing.
		if err := pause(ctx, x.cfg.Settle); err != nil {
			_ = x.setHost(ctx, i, HostNeedsReconcile, ReasonUnknown, "passwd outcome unknown: "+out.String()+"; not probed: "+err.Error())
			return
		}
		x.probe(ctx, i, ReasonUnknown, "passwd outcome unknown: "+out.String())
	}
}

// passwd runs the passwd dialogue on host i's lifeline, replacing a dead
// lifeline once with a fresh login with from.
func (x *run) passwd(ctx context.Context, i int, from, to secret.Value) Outcome {
	if x.fenced() {
		return Outcome{Kind: OutcomeUnexpected, Err: errFencedOff}
	}
	out := x.hosts.passwd(ctx, x.lifelines[i], from, to)
	if out.Kind == OutcomeUnexpected && errors.Is(out.Err, ErrUnreachable) && out.Transcript == "" {
		// The lifeline died before passwd said anything: nothing changed.
		_ = x.lifelines[i].Close()
		x.lifelines[i] = nil
		sess, err := x.tryLogin(ctx, i, from)
		if err != nil {
			return Outcome{Kind: OutcomeUnexpected, Err: err}
		}
		x.lifelines[i] = sess
		out = x.hosts.passwd(ctx, sess, from, to)
	}
	return out
}

// probe settles a host whose passwd outcome is unknown by logging in with
// the new password, then the old one: at most two failed logins, so that
// pam_faillock does not lock the account. reason and why say why the host
// is in doubt, for the journal.
//
// A password the host refused before (as the journal records) is not tried
// again, and no login is tried once the host's budget of refused logins is
// spent: the host then stays in doubt (needs-reconcile).
func (x *run) probe(ctx context.Context, i int, reason FailReason, why string) {
	if x.fenced() {
		return
	}
	errNew := x.tryVerify(ctx, i, x.r.New)
	if errNew == nil {
		_ = x.setHost(ctx, i, HostChanged, ReasonNone, "")
		return
	}
	x.probeOld(ctx, i, reason, why, errNew)
}

// probeOld settles host i once the new password failed with errNew: the
// old password logs in (nothing changed) or the host needs reconcile.
func (x *run) probeOld(ctx context.Context, i int, reason FailReason, why string, errNew error) {
	errOld := x.tryVerify(ctx, i, x.r.Old)
	if x.fenced() {
		return
	}
	if errOld == nil {
		_ = x.setHost(ctx, i, HostFailed, reason, why)
		return
	}
	_ = x.setHost(ctx, i, HostNeedsReconcile, reason, fmt.Sprintf("%s; new password: %v; old password: %v", why, errNew, errOld))
}

// revertAll puts every host that may hold the new password back to the old
// one, concurrently. It reports whether every host now holds the old one.
func (x *run) revertAll(ctx context.Context) bool {
	var wg sync.WaitGroup
	for i, h := range x.r.Hosts {
		switch h.State {
		case HostChanged, HostChanging, HostReverting, HostNeedsReconcile:
		default:
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			x.revertHost(ctx, i)
		}()
	}
	wg.Wait()
	for _, h := range x.r.Hosts {
		if h.State == HostNeedsReconcile || h.State == HostChanged || h.State == HostReverting || h.State == HostChanging {
			return false
		}
	}
	return true
}

// revertHost puts host i back to the old password: passwd through the
// lifeline (or a fresh login with the new password), then the reconcile
// account if the host's policy refuses the old password.
//
// A journal write that fails does not stop a revert: both passwords have
// been durable since the rotation began, and recovery probes whatever the
// journal says. Only a fenced journal (another holder) stops it. A password
// the host refused is not sent again in a login, and no login is tried past
// the host's budget of refused logins. The lifeline's passwd may still be
// given the new password as the current one even if a login refused it:
// passwd checks it in its own PAM password stack, where pam_faillock does
// not count, and root's passwd asks for none.
func (x *run) revertHost(ctx context.Context, i int) {
	prev := x.r.Hosts[i]
	if x.fenced() {
		return
	}
	if x.setHost(ctx, i, HostReverting, prev.Reason, "") != nil && x.fenced() {
		x.r.Hosts[i] = prev
		return
	}
	if x.lifelines[i] == nil {
		sess, err := x.tryLogin(ctx, i, x.r.New)
		if err != nil {
			if errors.Is(err, ErrAuthFailed) {
				x.revertedIfOld(ctx, i, prev, "revert: login with the new password: "+err.Error())
				return
			}
			x.forceOld(ctx, i, "revert: login with the new password: "+err.Error())
			return
		}
		x.lifelines[i] = sess
	}
	faultPoint("host-reverting")
	out := x.passwd(ctx, i, x.r.New, x.r.Old)
	if x.fenced() {
		return
	}
	switch out.Kind {
	case OutcomeChanged:
		note, err := x.confirm(ctx, i, x.r.Old)
		if err == nil {
			_ = x.setHost(ctx, i, HostReverted, prev.Reason, joinNotes(prev.Error, note))
			return
		}
		x.forceOld(ctx, i, "revert: passwd reported success but the old password does not log in: "+err.Error())
	case OutcomeWrongCurrent:
		// The host does not hold the new password; it may hold the old one already.
		x.noteRefused(ctx, i, x.r.New, false)
		x.revertedIfOld(ctx, i, prev, "revert: passwd refused the new password as the current one")
	case OutcomeRejected:
		x.forceOld(ctx, i, "revert refused by policy: "+out.Reason)
	default:
		if errors.Is(out.Err, ErrBeforePasswd) {
			// su or sudo failed before passwd ran: the host still holds
			// the new password. No probe: the reconcile account, if any.
			x.forceOld(ctx, i, "revert: passwd not run: "+out.Err.Error())
			return
		}
		x.revertedIfOld(ctx, i, prev, "revert outcome unknown: "+out.String())
	}
}

// revertedIfOld marks host i reverted if the old password logs in (a login
// within the rules of tryLogin), else resets it through the reconcile
// account.
func (x *run) revertedIfOld(ctx context.Context, i int, prev HostRecord, why string) {
	err := x.tryVerify(ctx, i, x.r.Old)
	if err == nil {
		_ = x.setHost(ctx, i, HostReverted, prev.Reason, prev.Error)
		return
	}
	if x.fenced() {
		return
	}
	x.forceOld(ctx, i, why+"; old password: "+err.Error())
}

func joinNotes(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// forceOld sets the old password on host i through the privileged
// reconcile account, if one is configured; otherwise, or if that fails,
// the host is marked needs-reconcile.
func (x *run) forceOld(ctx context.Context, i int, why string) {
	if x.fenced() {
		return
	}
	note, err := x.forceSet(ctx, i, x.r.Old)
	if err != nil {
		_ = x.setHost(ctx, i, HostNeedsReconcile, ReasonRevert, why+"; "+err.Error())
		return
	}
	_ = x.setHost(ctx, i, HostReverted, ReasonRevert, joinNotes(why+"; reset through the reconcile account", note))
}

// forceSet sets the rotated user's password on host i to pw through the
// reconcile account and confirms it (see confirm).
func (x *run) forceSet(ctx context.Context, i int, pw secret.Value) (note string, err error) {
	if err := x.hosts.forceSet(ctx, x.r.Hosts[i].Host, x.r.Username, pw); err != nil {
		return "", err
	}
	note, err = x.confirm(ctx, i, pw)
	if err != nil {
		return "", fmt.Errorf("verify after reconcile: %w", err)
	}
	return note, nil
}
