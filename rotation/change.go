package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/rotord/rotord/rotation/secret"
)

// changeReq is one journaled change to make: a rotation or a rollback.
type changeReq struct {
	kind       Kind
	secret     Secret                                      // as read before the change
	spec       SecretSpec                                  // the settings in force
	newPw      secret.Value                                // the password to set
	fresh      func(context.Context) (secret.Value, error) // a fresh password after a policy rejection; nil: none
	lifelines  []HostSession                               // pre-flight sessions, aligned with secret.Hosts
	actor      string
	rollbackOf int64
	gen        int64 // the generation of the secret's lease held
}

// run is a journaled change in progress. Host records are updated by one
// goroutine per host, each touching only its own index.
type run struct {
	e         *Engine
	r         Rotation
	spec      SecretSpec
	actor     string
	lifelines []HostSession
	lost      <-chan struct{} // closed when the lease is lost

	mu         sync.Mutex
	journalErr error // a journal write failed: start no more host work
	fencedOff  bool  // the journal refused a write with ErrFenced: touch no host and not the vault
	failedHost bool  // a host failed in this fan-out: start no more (all or nothing)
	rejected   []string
	wroteVault bool     // a vault write was attempted: the vault may hold the new password
	warnings   []string // policy rejections met on the way, for the result
}

// change journals the change, fans it out over the hosts and commits it to
// the vault, or reverts every changed host. startCtx bounds the starting
// of new host work (cancelled on shutdown or past the deadline); work
// already started, reverts and the commit run on to completion.
func (e *Engine) change(ctx, startCtx context.Context, lost <-chan struct{}, req changeReq) Result {
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.SecretDeadline)
	defer cancel()
	s := req.secret
	r := Rotation{
		Secret: req.spec.Name, SecretID: s.ID, Username: s.Username,
		Kind: req.kind, State: StatePending, Old: s.Password, New: req.newPw,
		RollbackOf: req.rollbackOf, Generation: req.gen, Started: e.cfg.Now(),
	}
	for _, h := range s.Hosts {
		r.Hosts = append(r.Hosts, HostRecord{Host: h, State: HostPending})
	}
	id, err := e.store.Begin(work, r)
	if err != nil {
		return Result{Secret: r.Secret, Kind: r.Kind, Err: fmt.Errorf("journal rotation (nothing changed): %w", err)}
	}
	r.ID = id
	faultPoint("journaled")
	e.audit(ctx, Event{Secret: r.Secret, RotationID: id, Actor: req.actor, Action: string(r.Kind), Detail: "started"})
	x := &run{e: e, r: r, spec: req.spec, actor: req.actor, lifelines: req.lifelines, lost: lost}
	defer closeAll(x.lifelines)

	// interrupted reports why no work at all may start, if it may not.
	interrupted := func() string {
		select {
		case <-lost:
			return "lease lost"
		default:
		}
		if startCtx.Err() != nil {
			return "interrupted: " + startCtx.Err().Error()
		}
		if x.journalError() != nil {
			return "journal write failed"
		}
		return ""
	}
	// stop reports why no new host may start, if it may not.
	stop := func() string {
		if why := interrupted(); why != "" {
			return why
		}
		if x.hostFailed() {
			return "another host failed"
		}
		return ""
	}

	x.setState(work, StateHostsChanging, "")
	for attempt := 0; ; attempt++ {
		x.rejected = nil
		x.failedHost = false
		x.fanOut(work, stop)
		if x.fenced() {
			return x.abandon()
		}
		if x.all(HostChanged) && x.journalError() == nil {
			return x.commit(work)
		}
		why := x.failureSummary()
		if err := x.journalError(); err != nil {
			why = strings.TrimSuffix("journal write failed: "+err.Error()+"; "+why, "; ")
		}
		if len(x.rejected) == 0 || req.fresh == nil || attempt >= e.cfg.PolicyRetries || interrupted() != "" || !x.onlyRejectedOrChanged() {
			return x.rollback(work, why)
		}
		// Every failure was a policy rejection: put the changed hosts back,
		// journal a fresh password, and go again.
		e.log.Info("password rejected by host policy; trying a fresh one", "secret", r.Secret, "rotation", id, "reason", x.rejected[0])
		x.warnings = append(x.warnings, fmt.Sprintf("attempt %d: %s", attempt+1, x.rejected[0]))
		if !x.revertAll(work) {
			return x.rollback(work, why)
		}
		pw, err := req.fresh(work)
		if err == nil {
			err = e.store.SetNew(work, id, x.r.Generation, pw)
		}
		if err != nil {
			return x.rollback(work, why+"; no fresh password: "+err.Error())
		}
		x.r.New = pw
	}
}

func (x *run) journalError() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.journalErr
}

func (x *run) hostFailed() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.failedHost
}

func (x *run) noteJournalErr(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.journalErr == nil {
		x.journalErr = err
	}
	if errors.Is(err, ErrFenced) {
		x.fencedOff = true
	}
}

// fenced reports whether this run lost the secret's lease: the renewer gave
// it up, or the journal refused a write with ErrFenced. A fenced run
// touches neither the hosts nor the vault again (an operation already
// under way finishes); the lease's next holder recovers the rotation from
// the journal. Call it before every host operation and vault write.
func (x *run) fenced() bool {
	select {
	case <-x.lost:
		return true
	default:
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.fencedOff
}

// abandon is the result of a rotation given up because the journal
// fenced it off. It names the hosts in doubt; the new holder settles them.
func (x *run) abandon() Result {
	x.e.log.Error("rotation stopped: lease lost", "secret", x.r.Secret, "rotation", x.r.ID, "hosts", x.uncertain(), "alert", true)
	err := fmt.Errorf("%w: stopped touching hosts and the vault; the new holder recovers it", ErrFenced)
	if u := x.uncertain(); u != "" {
		err = fmt.Errorf("%w; hosts in doubt: %s", err, u)
	}
	return x.result(err)
}

// uncertain names each host that may hold a password the vault does not,
// with the candidates it may hold ("web02: old or new"), never the
// passwords themselves; "" if there is none.
func (x *run) uncertain() string {
	var parts []string
	for _, h := range x.r.Hosts {
		switch h.State {
		case HostChanging, HostReverting, HostNeedsReconcile:
			parts = append(parts, h.Host.String()+": "+x.mayHold(h))
		case HostChanged:
			if x.r.State != StateCommitted {
				parts = append(parts, h.Host.String()+": new")
			}
		}
	}
	return strings.Join(parts, "; ")
}

// mayHold says which candidates a host in doubt may hold.
func (x *run) mayHold(h HostRecord) string {
	switch {
	case h.Refused.Old && h.Refused.New:
		return "old or new (both refused a login)"
	case h.Refused.Old:
		return "new, or old (refused a login)"
	case h.Refused.New:
		return "old, or new (refused a login)"
	}
	return "old or new"
}

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
	if err := x.e.store.SetRefused(ctx, x.r.ID, x.r.Generation, h.Host, h.Refused); err != nil {
		x.e.log.Error("journal write failed", "secret", x.r.Secret, "rotation", x.r.ID, "host", h.Host.String(), "err", err)
		x.noteJournalErr(err)
	}
}

// tryLogin logs into host i as the rotated user with pw, unless the host
// refused pw before in this rotation (errRefusedBefore), its budget of
// refused logins is spent (errBudgetSpent) or the journal fenced this
// process off. A refusal, or a login whose outcome is unknown, is recorded.
func (x *run) tryLogin(ctx context.Context, i int, pw secret.Value) (HostSession, error) {
	switch {
	case x.fenced():
		return nil, errFencedOff
	case x.refusedBefore(i, pw):
		return nil, errRefusedBefore
	case x.r.Hosts[i].Refused.Spent():
		return nil, errBudgetSpent
	}
	sess, err := x.e.login(ctx, x.r.Hosts[i].Host, x.r.Username, pw)
	if err != nil && (errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrLoginUnknown)) {
		x.noteRefused(ctx, i, pw, true)
	}
	return sess, err
}

// tryVerify proves pw logs into host i with a fresh connection, within the
// rules of tryLogin.
func (x *run) tryVerify(ctx context.Context, i int, pw secret.Value) error {
	s, err := x.tryLogin(ctx, i, pw)
	if err != nil {
		return err
	}
	return s.Close()
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
	if err := x.e.store.SetHost(ctx, x.r.ID, x.r.Generation, *h); err != nil {
		x.e.log.Error("journal write failed", "secret", x.r.Secret, "rotation", x.r.ID, "host", h.Host.String(), "err", err)
		x.noteJournalErr(err)
		return err
	}
	x.e.log.Debug("host state", "secret", x.r.Secret, "rotation", x.r.ID, "host", h.Host.String(), "state", string(st))
	return nil
}

func (x *run) setState(ctx context.Context, st State, errText string) {
	x.r.State = st
	x.r.Error = errText
	if err := x.e.store.SetState(ctx, x.r.ID, x.r.Generation, st, errText); err != nil {
		x.e.log.Error("journal write failed", "secret", x.r.Secret, "rotation", x.r.ID, "state", string(st), "err", err)
		x.noteJournalErr(err)
	}
}

func (x *run) all(st HostState) bool {
	for _, h := range x.r.Hosts {
		if h.State != st {
			return false
		}
	}
	return true
}

func (x *run) onlyRejectedOrChanged() bool {
	for _, h := range x.r.Hosts {
		if h.State != HostChanged && !(h.State == HostFailed && (h.Reason == ReasonRejected || h.Reason == ReasonNotStarted)) {
			return false
		}
	}
	return true
}

// The words that open a host's Error for two reasons; display only: the
// decisions go by HostRecord.Reason.
const (
	rejectedPrefix   = "rejected by policy: "
	notStartedPrefix = "not started: "
)

// failureSummary names each host that did not end changed, and why.
func (x *run) failureSummary() string {
	var parts []string
	for _, h := range x.r.Hosts {
		if h.State != HostChanged {
			parts = append(parts, fmt.Sprintf("%s: %s (%s)", h.Host, h.State, h.Error))
		}
	}
	return strings.Join(parts, "; ")
}

// fanOut changes every host that does not hold the new password yet. The
// first host goes alone (a canary: a policy that refuses the password is
// met once, not on every host), the rest concurrently within the engine's
// SSH slots. Once a host fails no new host is started: they would only be
// reverted.
func (x *run) fanOut(ctx context.Context, stop func() string) {
	var todo []int
	for i, h := range x.r.Hosts {
		if h.State != HostChanged {
			todo = append(todo, i)
		}
	}
	total := len(x.r.Hosts)
	var mu sync.Mutex
	done, failed := total-len(todo), 0
	finish := func(i int) {
		mu.Lock()
		defer mu.Unlock()
		done++
		if x.r.Hosts[i].State != HostChanged {
			failed++
		}
		if x.e.cfg.Progress != nil {
			x.e.cfg.Progress(x.r.Secret, done, total, failed)
		}
	}
	if len(todo) == 0 {
		return
	}
	x.changeHost(ctx, todo[0], stop)
	finish(todo[0])
	// A host counts as started once changeHost has checked stop: start no
	// more than the SSH slots can serve, or every host would pass stop at
	// once and then queue for a slot, to be changed (and reverted) after a
	// failure, an interruption or the deadline.
	inFlight := make(chan struct{}, x.e.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, i := range todo[1:] {
		inFlight <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-inFlight; wg.Done() }()
			x.changeHost(ctx, i, stop)
			finish(i)
		}()
	}
	wg.Wait()
	for _, h := range x.r.Hosts {
		if h.State == HostFailed && h.Reason == ReasonRejected {
			x.rejected = append(x.rejected, h.Error)
		}
	}
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
		// passwd may still be writing what it was given (a step that
		// timed out, a connection that broke): let it land before probing.
		if err := x.pause(ctx, x.e.cfg.Settle); err != nil {
			_ = x.setHost(ctx, i, HostNeedsReconcile, ReasonUnknown, "passwd outcome unknown: "+out.String()+"; not probed: "+err.Error())
			return
		}
		x.probe(ctx, i, ReasonUnknown, "passwd outcome unknown: "+out.String())
	}
}

// passwd runs the passwd dialogue on host i's lifeline, replacing a dead
// lifeline once with a fresh login with from.
func (x *run) passwd(ctx context.Context, i int, from, to secret.Value) Outcome {
	e := x.e
	if x.fenced() {
		return Outcome{Kind: OutcomeUnexpected, Err: errFencedOff}
	}
	release, err := e.slot(ctx)
	if err != nil {
		return Outcome{Kind: OutcomeUnexpected, Err: err}
	}
	out := x.lifelines[i].ChangePassword(ctx, from, to)
	release()
	if out.Kind == OutcomeUnexpected && errors.Is(out.Err, ErrUnreachable) && out.Transcript == "" {
		// The lifeline died before passwd said anything: nothing changed.
		_ = x.lifelines[i].Close()
		x.lifelines[i] = nil
		sess, err := x.tryLogin(ctx, i, from)
		if err != nil {
			return Outcome{Kind: OutcomeUnexpected, Err: err}
		}
		x.lifelines[i] = sess
		if release, err = e.slot(ctx); err != nil {
			return Outcome{Kind: OutcomeUnexpected, Err: err}
		}
		out = sess.ChangePassword(ctx, from, to)
		release()
	}
	return out
}

// probe settles a host whose passwd outcome is unknown by logging in with
// the new password, then the old one: at most two failed logins, so that
// pam_faillock does not lock the account.
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

// errNoReconcileAccount: no privileged account is configured.
var errNoReconcileAccount = errors.New("no reconcile account configured (set ssh.reconcile, then run `rotord recover`, to reset the host)")

// forceSet sets the rotated user's password on host i to pw through the
// reconcile account and confirms it (see confirm).
func (x *run) forceSet(ctx context.Context, i int, pw secret.Value) (note string, err error) {
	e, h, user := x.e, x.r.Hosts[i].Host, x.r.Username
	acct := e.cfg.Reconcile
	if acct == nil {
		return "", errNoReconcileAccount
	}
	sess, err := e.login(ctx, h, acct.User, acct.Password)
	if err != nil {
		return "", fmt.Errorf("reconcile account login: %w", err)
	}
	defer sess.Close()
	release, err := e.slot(ctx)
	if err != nil {
		return "", err
	}
	out := sess.SetPassword(ctx, user, pw)
	release()
	if out.Kind != OutcomeChanged {
		return "", fmt.Errorf("reconcile account passwd: %s", out)
	}
	note, err = x.confirm(ctx, i, pw)
	if err != nil {
		return "", fmt.Errorf("verify after reconcile: %w", err)
	}
	return note, nil
}

// phase returns the context of a commit or a rollback: a deadline of its
// own, not what the fan-out (or the commit before a rollback) left of
// theirs. A commit or a revert cut short by an expired context leaves hosts
// holding a password the vault does not.
func (x *run) phase(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), x.e.cfg.SecretDeadline)
}

// commit re-reads the secret, refuses to overwrite someone else's change,
// writes the new password to the vault and marks the rotation committed.
// Any failure reverts the hosts.
func (x *run) commit(ctx context.Context) Result {
	e := x.e
	ctx, cancel := x.phase(ctx)
	defer cancel()
	if x.fenced() {
		return x.abandon()
	}
	x.setState(ctx, StateCommitting, "")
	if x.fenced() {
		return x.abandon()
	}
	if err := x.journalError(); err != nil {
		// The journal cannot record a commit: put the hosts back.
		return x.rollback(ctx, "journal write failed: "+err.Error())
	}
	cur, err := e.vault.Read(ctx, x.r.SecretID, e.hostsField(x.spec))
	if err != nil {
		return x.rollback(ctx, "re-read before the vault write failed: "+err.Error())
	}
	if !cur.Password.Equal(x.r.New) {
		if why := x.changedSince(cur); why != "" {
			return x.rollbackErr(ctx, fmt.Errorf("%w: %s; not overwritten", ErrSecretChanged, why))
		}
		faultPoint("before-vault-write")
		if x.fenced() {
			return x.abandon()
		}
		x.wroteVault = true
		werr := e.vault.Write(ctx, cur, x.r.New, e.cfg.Comment)
		faultPoint("after-vault-write")
		if errors.Is(werr, ErrSecretChanged) {
			// Edited between attempts of the write: leave the edit alone.
			return x.rollbackErr(ctx, fmt.Errorf("vault write: %w", werr))
		}
		if werr != nil {
			// The write may have landed before the error: look.
			if again, rerr := e.vault.Read(ctx, x.r.SecretID, e.hostsField(x.spec)); rerr != nil || !again.Password.Equal(x.r.New) {
				return x.rollback(ctx, "vault write failed: "+werr.Error())
			}
		}
	}
	x.setState(ctx, StateCommitted, "")
	e.audit(ctx, Event{Secret: x.r.Secret, RotationID: x.r.ID, Actor: x.actor, Action: string(x.r.Kind), Detail: "committed"})
	e.log.Info("rotation committed", "secret", x.r.Secret, "rotation", x.r.ID, "kind", string(x.r.Kind), "hosts", len(x.r.Hosts))
	return x.result(nil)
}

// changedSince says how cur differs from the secret as the rotation read
// it, or "" if it does not.
func (x *run) changedSince(cur Secret) string {
	if !cur.Password.Equal(x.r.Old) {
		return "its password was changed by someone else"
	}
	if cur.Username != x.r.Username {
		return "its username was changed"
	}
	hosts := x.e.withHostPorts(cur.Hosts, x.spec.Port)
	if len(hosts) != len(x.r.Hosts) {
		return "its host list was changed"
	}
	seen := map[string]bool{}
	for _, h := range x.r.Hosts {
		seen[x.e.withHostPorts([]Host{h.Host}, x.spec.Port)[0].String()] = true
	}
	for _, h := range hosts {
		if !seen[h.String()] {
			return "its host list was changed"
		}
	}
	return ""
}

func (x *run) rollback(ctx context.Context, why string) Result {
	return x.rollbackErr(ctx, errors.New(why))
}

// rollbackErr reverts every changed host and makes sure the vault still
// holds the old password. The rotation ends rolled-back, or
// needs-reconcile if some host or the vault is in doubt.
func (x *run) rollbackErr(ctx context.Context, cause error) Result {
	e := x.e
	ctx, cancel := x.phase(ctx)
	defer cancel()
	if x.fenced() {
		return x.abandon()
	}
	x.setState(ctx, StateRollingBack, cause.Error())
	hostsOK := x.revertAll(ctx)
	if x.fenced() {
		return x.abandon()
	}
	vaultOK := true
	if x.wroteVault {
		vaultOK = x.restoreVault(ctx)
	}
	if hostsOK && vaultOK {
		x.setState(ctx, StateRolledBack, cause.Error())
		e.audit(ctx, Event{Secret: x.r.Secret, RotationID: x.r.ID, Actor: x.actor, Action: string(x.r.Kind), Detail: "rolled back: " + cause.Error()})
		e.log.Warn("rotation rolled back", "secret", x.r.Secret, "rotation", x.r.ID, "reason", cause.Error())
		if err := x.journalError(); err != nil {
			// Every host and the vault hold the old password, but the
			// journal may still say otherwise: the next recovery checks.
			cause = fmt.Errorf("%w; not journaled (%w): the journal may still list as changed %s; the next recovery checks them",
				cause, err, x.touched())
		}
		return x.result(fmt.Errorf("%w: %w", ErrRolledBack, cause))
	}
	var extra string
	if !vaultOK {
		extra += "; the vault's password could not be confirmed"
	}
	if u := x.uncertain(); u != "" {
		extra += "; hosts in doubt: " + u
	}
	why := cause.Error() + extra
	x.setState(ctx, StateNeedsReconcile, why)
	e.audit(ctx, Event{Secret: x.r.Secret, RotationID: x.r.ID, Actor: x.actor, Action: string(x.r.Kind), Detail: "needs reconcile: " + why})
	e.log.Error("rotation needs reconcile", "secret", x.r.Secret, "rotation", x.r.ID, "reason", why, "alert", true)
	return x.result(fmt.Errorf("%w: %w%s", ErrNeedsReconcile, cause, extra))
}

// restoreVault makes sure the vault holds the old password after a write
// that may have landed. It reports whether that is confirmed.
func (x *run) restoreVault(ctx context.Context) bool {
	e := x.e
	cur, err := e.vault.Read(ctx, x.r.SecretID, e.hostsField(x.spec))
	if err != nil {
		return false
	}
	if !cur.Password.Equal(x.r.New) {
		return true // the write did not land (or someone else wrote since)
	}
	return e.vault.Write(ctx, cur, x.r.Old, e.cfg.Comment) == nil
}

// touched names the hosts whose password this rotation changed or may have
// changed at some point (every host but those never started or certainly
// unchanged), with the candidate each holds now.
func (x *run) touched() string {
	var parts []string
	for _, h := range x.r.Hosts {
		switch h.State {
		case HostPending, HostFailed:
			continue
		case HostReverted:
			parts = append(parts, h.Host.String()+" (holds the old password again)")
		case HostChanged:
			parts = append(parts, h.Host.String()+" (holds the new password)")
		default:
			parts = append(parts, h.Host.String()+" ("+x.mayHold(h)+")")
		}
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ", ")
}

func (x *run) result(err error) Result {
	res := Result{Secret: x.r.Secret, RotationID: x.r.ID, Kind: x.r.Kind, State: x.r.State, Warnings: x.warnings, Err: err}
	for _, h := range x.r.Hosts {
		res.Hosts = append(res.Hosts, HostResult{Host: h.Host, State: h.State, Outcome: h.Error})
	}
	return res
}
