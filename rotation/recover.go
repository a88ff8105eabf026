package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/rotord/rotord/rotation/secret"
)

// Recover finishes or undoes every unfinished rotation in the journal, and
// tries again to reconcile every rotation that needs it. A rotation whose
// lease another live process holds is left to that process and reported
// with its LeaseHeldError.
func (e *Engine) Recover(ctx context.Context, actor string) []Result {
	var results []Result
	rs, err := e.unsettled(ctx)
	if err != nil {
		return []Result{{Err: err}}
	}
	for _, r := range rs {
		if ctx.Err() != nil {
			break
		}
		results = append(results, e.recoverOne(ctx, r, actor, true)...)
	}
	return results
}

// RecoverUnfinished finishes or undoes the rotations the journal holds
// unfinished whose lease is free: its holder released it, let it expire, or
// was a process of this machine that died. It is the running daemon's
// counterpart of Recover: a rotation a `rotord rotate` left behind when it
// was killed is finished without waiting for a restart. A rotation whose
// lease a live holder keeps is left to it and not reported: the results
// are the rotations it touched (or could not read). Rotations that need
// reconcile are not retried here (each
// retry logs in to the hosts; the next rotation of the secret or `rotord
// recover` does it).
//
// claim is called before a secret is touched; a secret it refuses is left
// alone (the caller is rotating it), and release is called when done.
func (e *Engine) RecoverUnfinished(ctx context.Context, actor string, claim func(secretName string) (release func(), ok bool)) []Result {
	unf, err := e.store.Unfinished(ctx)
	if err != nil {
		return []Result{{Err: fmt.Errorf("read unfinished rotations: %w", err)}}
	}
	var results []Result
	for _, r := range unf {
		if ctx.Err() != nil {
			break
		}
		done, ok := claim(r.Secret)
		if !ok {
			continue
		}
		for _, res := range e.recoverOne(ctx, r, actor, false) {
			if held := (*LeaseHeldError)(nil); errors.As(res.Err, &held) {
				e.log.Debug("unfinished rotation left to its lease holder", "secret", res.Secret, "rotation", res.RotationID, "holder", held.Holder)
				continue
			}
			results = append(results, res)
		}
		done()
	}
	return results
}

// unsettled returns every rotation the journal holds unfinished, then every
// one that needs reconcile, oldest first.
func (e *Engine) unsettled(ctx context.Context) ([]Rotation, error) {
	unf, err := e.store.Unfinished(ctx)
	if err != nil {
		return nil, fmt.Errorf("read unfinished rotations: %w", err)
	}
	nr, err := e.store.NeedsReconcile(ctx)
	if err != nil {
		return nil, fmt.Errorf("read rotations needing reconcile: %w", err)
	}
	return append(unf, nr...), nil
}

// settle recovers or reconciles earlier rotations of the secret before a
// new change starts, and refuses to start while one stays unresolved,
// under the secret's lease l.
func (e *Engine) settle(ctx context.Context, name, actor string, l *hold) error {
	var pending []Rotation
	rs, err := e.unsettled(ctx)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if SecretKey(r.Secret) == SecretKey(name) {
			pending = append(pending, r)
		}
	}
	for _, r := range pending {
		res := e.resume(ctx, r, actor, l)
		if res.State != StateCommitted && res.State != StateRolledBack {
			return fmt.Errorf("%w: rotation %d is %s", ErrParked, r.ID, res.State)
		}
	}
	return nil
}

// recoverOne takes r's lease and, if r is still unfinished (or, with
// reconcile, needs reconcile), resumes it.
func (e *Engine) recoverOne(ctx context.Context, r Rotation, actor string, reconcile bool) []Result {
	l, err := e.lease(ctx, r.Secret)
	if err != nil {
		return []Result{{Secret: r.Secret, RotationID: r.ID, Kind: r.Kind, State: r.State, Err: err}}
	}
	defer l.release()
	// Re-read: the lease holder before us may have finished it.
	cur, err := e.store.Get(ctx, r.ID)
	switch {
	case err != nil:
		return []Result{{Secret: r.Secret, RotationID: r.ID, Kind: r.Kind, State: r.State, Err: err}}
	case cur.State.Terminal() && !(reconcile && cur.State == StateNeedsReconcile):
		return nil
	}
	return []Result{e.resume(ctx, cur, actor, l)}
}

// resume finishes or undoes journaled rotation r; the caller holds its
// lease l, and r is adopted under l's generation first: the holder that
// left r unfinished can write no more of it. Every host is put in a known
// state: the new password everywhere (roll forward) or the old one
// everywhere (roll back), and the vault ends holding the password that
// works on every host. Its Result.Err is nil when the rotation ends
// committed or cleanly rolled back (the reason is then among the warnings).
func (e *Engine) resume(ctx context.Context, r Rotation, actor string, l *hold) Result {
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.SecretDeadline)
	defer cancel()
	if err := e.store.Adopt(work, r.ID, l.gen); err != nil {
		return Result{Secret: r.Secret, RotationID: r.ID, Kind: r.Kind, State: r.State, Err: fmt.Errorf("adopt rotation %d: %w", r.ID, err)}
	}
	r.Generation = l.gen
	spec := e.specFor(r.Secret)
	r.Secret = spec.Name // the journal keeps its key; report the configured name
	access, err := e.hosts.forSpec(work, spec)
	if err != nil {
		return Result{Secret: r.Secret, RotationID: r.ID, Kind: r.Kind, State: r.State, Err: fmt.Errorf("recover rotation %d (hosts not touched): %w", r.ID, err)}
	}
	x := e.newRun(r, spec, actor, l.lost, make([]HostSession, len(r.Hosts)), access)
	defer closeAll(x.lifelines) // reverts open them
	x.audit(ctx, "recover", "found in state "+string(r.State))
	if r.State == StateNeedsReconcile {
		return x.reconcile(work)
	}
	// Hosts whose state the journal does not pin down are probed, once a
	// dialogue cut off by the interruption can no longer change them.
	if err := x.awaitCutOffDialogues(work); err != nil {
		return x.result(fmt.Errorf("recovery interrupted before probing: %w", err))
	}
	var wg sync.WaitGroup
	for i, h := range x.r.Hosts {
		switch h.State {
		case HostChanging, HostReverting, HostNeedsReconcile:
		default:
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			x.probe(work, i, ReasonInterrupted, "recovered after an interruption")
		}()
	}
	wg.Wait()
	x.wroteVault = true // a crash may have come after the vault write
	if x.all(HostChanged) {
		e.log.Info("recovery rolls forward", "secret", r.Secret, "rotation", r.ID)
		return x.commit(work)
	}
	e.log.Info("recovery rolls back", "secret", r.Secret, "rotation", r.ID)
	res := x.rollback(work, "interrupted in state "+string(r.State)+"; recovered")
	if res.State == StateRolledBack {
		// Undoing an interrupted rotation is a successful recovery: every
		// host and the vault hold the old password again.
		res.Warnings = append(res.Warnings, res.Err.Error())
		res.Err = nil
	}
	return res
}

// reconcile brings every host of a needs-reconcile rotation to the password
// the vault holds now: a host that takes it is done; one that takes another
// candidate is changed to it with passwd; one that takes none is reset
// through the reconcile account. Hosts that cannot be reached stay
// needs-reconcile for a later run.
func (x *run) reconcile(ctx context.Context) Result {
	cur, err := x.vault.Read(ctx, x.r.SecretID, x.cfg.HostsFieldOf(x.spec))
	if err != nil {
		return x.result(fmt.Errorf("%w: read the vault: %w", ErrNeedsReconcile, err))
	}
	target := cur.Password
	var others []secret.Value
	for _, c := range []secret.Value{x.r.New, x.r.Old} {
		if !c.Equal(target) && !c.IsZero() {
			others = append(others, c)
		}
	}
	atTarget := HostReverted
	if target.Equal(x.r.New) {
		atTarget = HostChanged
	}
	var wg sync.WaitGroup
	for i := range x.r.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			note, err := x.reconcileHost(ctx, i, target, others)
			if err != nil {
				_ = x.setHost(ctx, i, HostNeedsReconcile, ReasonOf(err), err.Error())
				return
			}
			_ = x.setHost(ctx, i, atTarget, ReasonNone, note)
		}()
	}
	wg.Wait()
	if x.fenced() {
		return x.abandon()
	}
	if !x.all(atTarget) {
		why := x.failureSummary()
		if u := x.uncertain(); u != "" {
			why += "; hosts in doubt: " + u
		}
		x.log.Error("rotation still needs reconcile", "secret", x.r.Secret, "rotation", x.r.ID, "hosts", why, "alert", true)
		return x.result(fmt.Errorf("%w: %s", ErrNeedsReconcile, why))
	}
	st := StateRolledBack
	if atTarget == HostChanged {
		st = StateCommitted
	}
	x.setState(ctx, st, "reconciled: "+x.r.Error)
	x.audit(ctx, "reconcile", "every host holds the vault's password")
	x.log.Info("rotation reconciled", "secret", x.r.Secret, "rotation", x.r.ID, "state", string(st))
	return x.result(nil)
}

// reconcileHost brings host i to target, within the host's budget of
// refused logins: a password it refused before (in this rotation, as the
// journal records) is not sent again, and once the budget is spent only the
// reconcile account may reset it. note says how, when the host did not
// already hold target.
func (x *run) reconcileHost(ctx context.Context, i int, target secret.Value, others []secret.Value) (note string, err error) {
	if x.fenced() {
		return "", ErrFenced
	}
	err = x.tryVerify(ctx, i, target)
	if err == nil {
		return "", nil
	}
	if errors.Is(err, ErrUnreachable) || errors.Is(err, ErrHostKey) || errors.Is(err, ErrFenced) {
		return "", err
	}
	errs := []string{"vault's password: " + err.Error()}
	for _, c := range others {
		sess, err := x.tryLogin(ctx, i, c)
		if err != nil {
			errs = append(errs, x.candidateName(c)+": "+err.Error())
			continue
		}
		out := x.hosts.passwd(ctx, sess, c, target)
		_ = sess.Close()
		if out.Kind == OutcomeChanged {
			if note, err := x.confirm(ctx, i, target); err == nil {
				return joinNotes("set with passwd from the "+x.candidateName(c), note), nil
			}
		}
		errs = append(errs, "passwd: "+out.String())
		break
	}
	if x.fenced() {
		return "", errFencedOff
	}
	note, err = x.forceSet(ctx, i, target)
	if err != nil {
		errs = append(errs, err.Error())
		return "", errors.New(strings.Join(errs, "; "))
	}
	return joinNotes("reset through the reconcile account", note), nil
}

// candidateName names pw among the rotation's passwords, never revealing it.
func (x *run) candidateName(pw secret.Value) string {
	switch {
	case pw.Equal(x.r.New):
		return "new password"
	case pw.Equal(x.r.Old):
		return "old password"
	}
	return "another password"
}

// awaitCutOffDialogues waits, when a host's passwd dialogue was cut off moments ago, until
// Settle has passed since the rotation's last journal write: the host's
// passwd may still be hashing and writing the password it was given, and a
// probe made meanwhile would see the old password refused after the new
// one was, spending the host's budget of refused logins on a change in
// flight. A rotation interrupted longer ago (a restart after a crash, a
// recovery by hand) is probed at once.
func (x *run) awaitCutOffDialogues(ctx context.Context) error {
	inFlight := false
	for _, h := range x.r.Hosts {
		inFlight = inFlight || h.State == HostChanging || h.State == HostReverting
	}
	if !inFlight || x.r.Updated.IsZero() {
		return nil
	}
	d := x.r.Updated.Add(x.cfg.Settle).Sub(x.cfg.Now())
	if d <= 0 {
		return nil
	}
	d = min(d, x.cfg.Settle)
	x.log.Info("waiting for a cut-off passwd dialogue to settle before probing", "secret", x.r.Secret, "rotation", x.r.ID, "wait", d)
	return pause(ctx, d)
}
