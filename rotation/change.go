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
	fencedOff  bool  // the journal refused a write with ErrFenced
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
	id, err := e.journal.Begin(work, r)
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
		if x.journalFailed() {
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
		if x.all(HostChanged) {
			return x.commit(work)
		}
		why := x.failureSummary()
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
			err = e.journal.SetNew(work, id, x.r.Generation, pw)
		}
		if err != nil {
			return x.rollback(work, why+"; no fresh password: "+err.Error())
		}
		x.r.New = pw
	}
}

func (x *run) journalFailed() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.journalErr != nil
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

// abandon ends a fenced run without touching anything more: the journal
// keeps the rotation as far as it got, both passwords included.
func (x *run) abandon() Result {
	x.e.log.Error("rotation abandoned: the lease was lost; its next holder recovers it",
		"secret", x.r.Secret, "rotation", x.r.ID, "state", string(x.r.State), "alert", true)
	return x.result(fmt.Errorf("%w: rotation %d left %s for the lease's next holder to recover", ErrFenced, x.r.ID, x.r.State))
}

// setHost records host i's state in memory and in the journal.
func (x *run) setHost(ctx context.Context, i int, st HostState, errText string) error {
	h := &x.r.Hosts[i]
	h.State = st
	if st == HostFailed || st == HostNeedsReconcile {
		x.mu.Lock()
		x.failedHost = true
		x.mu.Unlock()
	}
	h.Error = errText
	if st == HostChanging || st == HostReverting {
		h.Attempts++
	}
	if err := x.e.journal.SetHost(ctx, x.r.ID, x.r.Generation, *h); err != nil {
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
	if err := x.e.journal.SetState(ctx, x.r.ID, x.r.Generation, st, errText); err != nil {
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
		if h.State != HostChanged && !(h.State == HostFailed && (strings.HasPrefix(h.Error, rejectedPrefix) || strings.HasPrefix(h.Error, notStartedPrefix))) {
			return false
		}
	}
	return true
}

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
		if h.State == HostFailed && strings.HasPrefix(h.Error, rejectedPrefix) {
			x.rejected = append(x.rejected, h.Error)
		}
	}
}

// changeHost runs passwd on host i from the old password to the new one
// and verifies the result with a fresh login.
func (x *run) changeHost(ctx context.Context, i int, stop func() string) {
	e, h, user := x.e, x.r.Hosts[i].Host, x.r.Username
	if why := stop(); why != "" {
		_ = x.setHost(ctx, i, HostFailed, notStartedPrefix+why)
		return
	}
	sess := x.lifelines[i]
	if sess == nil {
		var err error
		if sess, err = e.login(ctx, h, user, x.r.Old); err != nil {
			_ = x.setHost(ctx, i, HostFailed, "login: "+err.Error())
			return
		}
		x.lifelines[i] = sess
	}
	if x.setHost(ctx, i, HostChanging, "") != nil || x.fenced() {
		return // not journaled, or not ours: do not touch the host
	}
	faultPoint("host-changing")
	out := x.passwd(ctx, i, x.r.Old, x.r.New)
	if x.fenced() {
		return
	}
	switch out.Kind {
	case OutcomeChanged:
		if err := e.verify(ctx, h, user, x.r.New); err != nil {
			why := "passwd reported success but the new password does not log in: " + err.Error()
			if errors.Is(err, ErrAuthFailed) {
				// Refused already: another try only feeds pam_faillock.
				x.probeOld(ctx, i, why, err)
				return
			}
			x.probe(ctx, i, why)
			return
		}
		_ = x.setHost(ctx, i, HostChanged, "")
		faultPoint("host-changed")
	case OutcomeWrongCurrent:
		_ = x.setHost(ctx, i, HostFailed, "passwd refused the current password")
	case OutcomeRejected:
		_ = x.setHost(ctx, i, HostFailed, rejectedPrefix+out.Reason)
	default:
		x.probe(ctx, i, "passwd outcome unknown: "+out.String())
	}
}

// passwd runs the passwd dialogue on host i's lifeline, replacing a dead
// lifeline once with a fresh login with from.
func (x *run) passwd(ctx context.Context, i int, from, to secret.Value) Outcome {
	e := x.e
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
		sess, err := e.login(ctx, x.r.Hosts[i].Host, x.r.Username, from)
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
func (x *run) probe(ctx context.Context, i int, why string) {
	e, h, user := x.e, x.r.Hosts[i].Host, x.r.Username
	if x.fenced() {
		return
	}
	errNew := e.verify(ctx, h, user, x.r.New)
	if errNew == nil {
		_ = x.setHost(ctx, i, HostChanged, "")
		return
	}
	x.probeOld(ctx, i, why, errNew)
}

// probeOld settles host i once the new password failed with errNew: the
// old password logs in (nothing changed) or the host needs reconcile.
func (x *run) probeOld(ctx context.Context, i int, why string, errNew error) {
	e, h, user := x.e, x.r.Hosts[i].Host, x.r.Username
	if x.fenced() {
		return
	}
	errOld := e.verify(ctx, h, user, x.r.Old)
	if errOld == nil {
		_ = x.setHost(ctx, i, HostFailed, why)
		return
	}
	_ = x.setHost(ctx, i, HostNeedsReconcile, fmt.Sprintf("%s; new password: %v; old password: %v", why, errNew, errOld))
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
func (x *run) revertHost(ctx context.Context, i int) {
	e, h, user := x.e, x.r.Hosts[i].Host, x.r.Username
	prev := x.r.Hosts[i]
	if x.fenced() {
		return
	}
	if x.setHost(ctx, i, HostReverting, "") != nil {
		x.r.Hosts[i] = prev
		return
	}
	if x.lifelines[i] == nil {
		sess, err := e.login(ctx, h, user, x.r.New)
		if err != nil {
			if errors.Is(err, ErrAuthFailed) {
				if e.verify(ctx, h, user, x.r.Old) == nil {
					_ = x.setHost(ctx, i, HostReverted, prev.Error)
					return
				}
			}
			x.forceOld(ctx, i, "revert: login with the new password: "+err.Error())
			return
		}
		x.lifelines[i] = sess
	}
	faultPoint("host-reverting")
	out := x.passwd(ctx, i, x.r.New, x.r.Old)
	switch out.Kind {
	case OutcomeChanged, OutcomeWrongCurrent:
		// WrongCurrent: the host does not hold the new password; it may
		// hold the old one already.
		if err := e.verify(ctx, h, user, x.r.Old); err == nil {
			_ = x.setHost(ctx, i, HostReverted, prev.Error)
			return
		}
		x.forceOld(ctx, i, "revert: passwd outcome "+out.Kind.String()+" but the old password does not log in")
	case OutcomeRejected:
		x.forceOld(ctx, i, "revert refused by policy: "+out.Reason)
	default:
		if e.verify(ctx, h, user, x.r.Old) == nil {
			_ = x.setHost(ctx, i, HostReverted, prev.Error)
			return
		}
		x.forceOld(ctx, i, "revert outcome unknown: "+out.String())
	}
}

// forceOld sets the old password on host i through the privileged
// reconcile account, if one is configured; otherwise, or if that fails,
// the host is marked needs-reconcile.
func (x *run) forceOld(ctx context.Context, i int, why string) {
	if x.fenced() {
		return
	}
	if err := x.e.forceSet(ctx, x.r.Hosts[i].Host, x.r.Username, x.r.Old); err != nil {
		_ = x.setHost(ctx, i, HostNeedsReconcile, why+"; "+err.Error())
		return
	}
	_ = x.setHost(ctx, i, HostReverted, why+"; reset through the reconcile account")
}

// errNoReconcileAccount: no privileged account is configured.
var errNoReconcileAccount = errors.New("no reconcile account configured")

// forceSet sets user's password on h to pw through the reconcile account
// and verifies it.
func (e *Engine) forceSet(ctx context.Context, h Host, user string, pw secret.Value) error {
	acct := e.cfg.Reconcile
	if acct == nil {
		return errNoReconcileAccount
	}
	sess, err := e.login(ctx, h, acct.User, acct.Password)
	if err != nil {
		return fmt.Errorf("reconcile account login: %w", err)
	}
	defer sess.Close()
	release, err := e.slot(ctx)
	if err != nil {
		return err
	}
	out := sess.SetPassword(ctx, user, pw)
	release()
	if out.Kind != OutcomeChanged {
		return fmt.Errorf("reconcile account passwd: %s", out)
	}
	if err := e.verify(ctx, h, user, pw); err != nil {
		return fmt.Errorf("verify after reconcile: %w", err)
	}
	return nil
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
		return x.result(fmt.Errorf("%w: %w", ErrRolledBack, cause))
	}
	why := cause.Error()
	if !vaultOK {
		why += "; the vault's password could not be confirmed"
	}
	x.setState(ctx, StateNeedsReconcile, why)
	e.audit(ctx, Event{Secret: x.r.Secret, RotationID: x.r.ID, Actor: x.actor, Action: string(x.r.Kind), Detail: "needs reconcile: " + why})
	e.log.Error("rotation needs reconcile", "secret", x.r.Secret, "rotation", x.r.ID, "reason", why, "alert", true)
	return x.result(fmt.Errorf("%w: %w", ErrNeedsReconcile, cause))
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

func (x *run) result(err error) Result {
	res := Result{Secret: x.r.Secret, RotationID: x.r.ID, Kind: x.r.Kind, State: x.r.State, Warnings: x.warnings, Err: err}
	for _, h := range x.r.Hosts {
		res.Hosts = append(res.Hosts, HostResult{Host: h.Host, State: h.State, Outcome: h.Error})
	}
	return res
}
