package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/rotord/rotord/rotation/secret"
)

// This file follows one rotation through the protocol of the design, in
// its order: the steps before any change (lease, settle, read, pre-flight:
// open), the new password (generate), the journal (change), the fan-out
// over the hosts (fanOut; each host's steps are in hosts.go), the vault
// write (commit) and the revert (rollbackErr).

// Rotate rotates one secret now: a new password on every host of the
// secret and then in the vault, or no change at all.
func (e *Engine) Rotate(ctx context.Context, spec SecretSpec, opts RotateOptions) Result {
	res := Result{Secret: spec.Name, Kind: KindRotate}
	op := e.open(ctx, spec, &res, opening{
		kind: KindRotate, actor: opts.Actor, dryRun: opts.DryRun,
		check: func(s Secret) (string, bool) {
			if !s.AutoChangeEnabled {
				return "", true
			}
			e.log.Warn("vault auto-change enabled", "secret", spec.Name)
			return "Secret Server auto-change is enabled on this secret; two rotators on one account fight", true
		},
	})
	if op == nil {
		return res
	}
	defer op.close()
	gen := func(ctx context.Context) (secret.Value, error) { return e.generate(ctx, spec, op.secret) }
	newPw, err := gen(op.start)
	if err != nil {
		res.Err = err
		return res
	}
	out := e.change(ctx, op, changeReq{kind: KindRotate, spec: spec, newPw: newPw, fresh: gen, actor: opts.Actor})
	out.Warnings = append(res.Warnings, out.Warnings...)
	return out
}

// opening is what a kind of change (Rotate, Rollback) adds to the steps
// before it that every change shares.
type opening struct {
	kind   Kind
	actor  string
	dryRun bool // pre-flight only: no settling, no change, an audit entry
	// before runs under the lease, once earlier rotations are settled and
	// before the secret is read; an error stops there. nil: nothing.
	before func(ctx context.Context) error
	// check looks at the secret as read, before the pre-flight: warning
	// (if not "") goes to the result, and proceed false stops there.
	// nil: proceed.
	check func(s Secret) (warning string, proceed bool)
}

// opened is a secret ready for its change: its lease held, the secret
// read, and a lifeline open on each of its hosts.
type opened struct {
	lease     *hold
	start     context.Context // bounds the starting of host work: SecretDeadline from the read
	secret    Secret
	lifelines []HostSession // aligned with secret.Hosts
	hosts     *hostAccess   // the secret's path to its hosts, chosen once
	close     func()        // closes the lifelines and releases the lease
}

// open runs the protocol's steps before a change: take the secret's lease
// (1), finish or undo its earlier rotations (settle), read the secret (2)
// and log into every host with its current password (3, the pre-flight).
// It returns nil when the change must not go on, with res saying why;
// a failed read or pre-flight, and every dry run, leave an audit entry.
func (e *Engine) open(ctx context.Context, spec SecretSpec, res *Result, o opening) *opened {
	l, err := e.lease(ctx, spec.Name)
	if err != nil {
		res.Err = err
		return nil
	}
	if !o.dryRun {
		if err := e.settle(ctx, spec.Name, o.actor, l); err != nil {
			l.release()
			res.Err = err
			return nil
		}
	}
	if o.before != nil {
		if err := o.before(ctx); err != nil {
			l.release()
			res.Err = err
			return nil
		}
	}
	start, cancel := context.WithTimeout(ctx, e.cfg.SecretDeadline)
	done := func() { cancel(); l.release() }
	s, err := e.readSecret(start, spec)
	if err != nil {
		done()
		res.Err = err
		e.audit(ctx, Event{Secret: spec.Name, Actor: o.actor, Action: string(o.kind), Detail: "failed: " + err.Error()})
		return nil
	}
	if o.check != nil {
		warning, proceed := o.check(s)
		if warning != "" {
			res.Warnings = append(res.Warnings, warning)
		}
		if !proceed {
			done()
			return nil
		}
	}
	access, err := e.hosts.forSpec(start, spec)
	if err != nil {
		done()
		res.Err = fmt.Errorf("%w (nothing changed): %w", ErrPreflight, err)
		e.audit(ctx, Event{Secret: spec.Name, Actor: o.actor, Action: string(o.kind), Detail: "pre-flight failed: " + err.Error()})
		return nil
	}
	lifelines, hosts, err := access.preflight(start, s)
	res.Hosts = hosts
	if err != nil || o.dryRun {
		closeAll(lifelines)
		done()
		action, detail := string(o.kind), "pre-flight failed: "
		if o.dryRun {
			action = "dry-run"
			if err == nil {
				detail = "pre-flight ok"
			}
		}
		if err != nil {
			detail += err.Error()
		}
		e.audit(ctx, Event{Secret: spec.Name, Actor: o.actor, Action: action, Detail: detail})
		res.Err = err
		return nil
	}
	return &opened{lease: l, start: start, secret: s, lifelines: lifelines, hosts: access, close: func() { closeAll(lifelines); done() }}
}

// readSecret resolves the spec's name (through the id cache) and reads the
// secret, its hosts as the rotation reaches them (Config.HostsOf).
func (e *Engine) readSecret(ctx context.Context, spec SecretSpec) (Secret, error) {
	id, cached, err := e.store.SecretID(ctx, spec.Name)
	if err != nil {
		e.log.Warn("secret id cache unreadable", "secret", spec.Name, "err", err)
		cached = false
	}
	if cached {
		s, err := e.vault.Read(ctx, id, e.cfg.HostsFieldOf(spec))
		if err == nil && strings.EqualFold(s.Name, spec.Name) {
			s.Hosts = e.cfg.HostsOf(spec, s.Hosts)
			return s, nil
		}
		if err != nil && !errors.Is(err, ErrAccessDenied) && !errors.Is(err, ErrSecretNotFound) {
			return Secret{}, fmt.Errorf("read secret %q: %w", spec.Name, err)
		}
		// Renamed, deleted or no longer ours: resolve again.
	}
	id, err = e.vault.Resolve(ctx, spec.Name)
	if err != nil {
		return Secret{}, err // not wrapped again: the vault names the secret it resolved
	}
	if err := e.store.SetSecretID(ctx, spec.Name, id); err != nil {
		e.log.Warn("secret id not cached", "secret", spec.Name, "err", err)
	}
	s, err := e.vault.Read(ctx, id, e.cfg.HostsFieldOf(spec))
	if err != nil {
		return Secret{}, fmt.Errorf("read secret %q: %w", spec.Name, err)
	}
	s.Hosts = e.cfg.HostsOf(spec, s.Hosts)
	return s, nil
}

// generate returns a new password for the secret under the spec's policy
// (protocol step 4): the vault's generator, or the local one (generate.go).
func (e *Engine) generate(ctx context.Context, spec SecretSpec, s Secret) (secret.Value, error) {
	length := spec.Length
	if length == 0 {
		length = e.cfg.Length
	}
	gen := spec.Generator
	if gen == "" {
		gen = e.cfg.Generator
	}
	if gen == GeneratorAuto {
		gen = GeneratorServer
		if length > ServerMaxLength {
			gen = GeneratorLocal
		}
	}
	for i := 0; i < 5; i++ {
		var pw secret.Value
		var err error
		if gen == GeneratorServer {
			pw, err = e.vault.Generate(ctx, s)
			if err != nil {
				return secret.Value{}, fmt.Errorf("generate password: %w", err)
			}
			if checkPassword(pw) != nil {
				// The vault's character set has characters passwd would
				// mangle: fall back to the local generator, same length.
				e.log.Warn("vault generated an unusable password; generating locally", "secret", s.Name)
				pw, err = GeneratePassword(max(pw.Len(), MinLength))
			}
		} else {
			pw, err = GeneratePassword(length)
		}
		if err != nil {
			return secret.Value{}, fmt.Errorf("generate password: %w", err)
		}
		if !pw.Equal(s.Password) {
			return pw, nil
		}
	}
	return secret.Value{}, errors.New("generate password: the generator keeps returning the current password")
}

// changeReq is one journaled change to make: a rotation or a rollback.
type changeReq struct {
	kind       Kind
	spec       SecretSpec                                  // the settings in force
	newPw      secret.Value                                // the password to set
	fresh      func(context.Context) (secret.Value, error) // a fresh password after a policy rejection; nil: none
	actor      string
	rollbackOf int64
}

// run is a journaled rotation in progress: it owns its hosts' access (the
// host steps in hosts.go) and its journal writes, and reaches the engine's
// adapters only through its own fields. Host records are updated by one
// goroutine per host, each touching only its own index.
type run struct {
	r         Rotation
	spec      SecretSpec
	actor     string
	lost      <-chan struct{} // closed when the lease is lost
	lifelines []HostSession   // aligned with r.Hosts; nil where none is open

	cfg   *Config // the engine's settings, read only
	store Store
	vault Vault
	hosts *hostAccess
	log   *slog.Logger

	mu         sync.Mutex
	journalErr error // a journal write failed: start no more host work
	fencedOff  bool  // the journal refused a write with ErrFenced: touch no host and not the vault
	failedHost bool  // a host failed in this fan-out: start no more (all or nothing)
	rejected   []string
	wroteVault bool     // a vault write was attempted: the vault may hold the new password
	warnings   []string // policy rejections met on the way, for the result
}

// newRun returns the run of journaled rotation r under the lease whose
// loss closes lost, reaching its hosts through access.
func (e *Engine) newRun(r Rotation, spec SecretSpec, actor string, lost <-chan struct{}, lifelines []HostSession, access *hostAccess) *run {
	return &run{
		r: r, spec: spec, actor: actor, lost: lost, lifelines: lifelines,
		cfg: &e.cfg, store: e.store, vault: e.vault, hosts: access, log: e.log,
	}
}

// change journals the change (protocol step 5), fans it out over the hosts
// (6) and commits it to the vault (7), or reverts every changed host (8).
// op.start bounds the starting of new host work (cancelled on shutdown or
// past the deadline); work already started, reverts and the commit run on
// to completion.
func (e *Engine) change(ctx context.Context, op *opened, req changeReq) Result {
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.SecretDeadline)
	defer cancel()
	s := op.secret
	r := Rotation{
		Secret: req.spec.Name, SecretID: s.ID, Username: s.Username,
		Kind: req.kind, State: StatePending, Old: s.Password, New: req.newPw,
		RollbackOf: req.rollbackOf, Generation: op.lease.gen, Started: e.cfg.Now(),
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
	x := e.newRun(r, req.spec, req.actor, op.lease.lost, op.lifelines, op.hosts)
	x.audit(ctx, string(r.Kind), "started")

	// interrupted reports why no work at all may start, if it may not.
	interrupted := func() string {
		select {
		case <-x.lost:
			return "lease lost"
		default:
		}
		if op.start.Err() != nil {
			return "interrupted: " + op.start.Err().Error()
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
		x.log.Info("password rejected by host policy; trying a fresh one", "secret", r.Secret, "rotation", id, "reason", x.rejected[0])
		x.warnings = append(x.warnings, fmt.Sprintf("attempt %d: %s", attempt+1, x.rejected[0]))
		if !x.revertAll(work) {
			return x.rollback(work, why)
		}
		pw, err := req.fresh(work)
		if err == nil {
			err = x.setNew(work, pw)
		}
		if err != nil {
			return x.rollback(work, why+"; no fresh password: "+err.Error())
		}
	}
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
		if x.cfg.Progress != nil {
			x.cfg.Progress(x.r.Secret, done, total, failed)
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
	inFlight := make(chan struct{}, x.cfg.Concurrency)
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

func (x *run) all(st HostState) bool {
	for _, h := range x.r.Hosts {
		if h.State != st {
			return false
		}
	}
	return true
}

// onlyRejectedOrChanged reports whether every host is changed, or failed
// by a policy rejection or before it was started: a fresh password may
// then succeed. It decides by the hosts' reason codes only.
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

// phase returns the context of a commit or a rollback: a deadline of its
// own, not what the fan-out (or the commit before a rollback) left of
// theirs. A commit or a revert cut short by an expired context leaves hosts
// holding a password the vault does not.
func (x *run) phase(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), x.cfg.SecretDeadline)
}

// commit re-reads the secret, refuses to overwrite someone else's change,
// writes the new password to the vault and marks the rotation committed.
// Any failure reverts the hosts.
func (x *run) commit(ctx context.Context) Result {
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
	cur, err := x.vault.Read(ctx, x.r.SecretID, x.cfg.HostsFieldOf(x.spec))
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
		werr := x.vault.Write(ctx, cur, x.r.New, x.cfg.Comment)
		faultPoint("after-vault-write")
		if errors.Is(werr, ErrSecretChanged) {
			// Edited between attempts of the write: leave the edit alone.
			return x.rollbackErr(ctx, fmt.Errorf("vault write: %w", werr))
		}
		if werr != nil {
			// The write may have landed before the error: look.
			if again, rerr := x.vault.Read(ctx, x.r.SecretID, x.cfg.HostsFieldOf(x.spec)); rerr != nil || !again.Password.Equal(x.r.New) {
				return x.rollback(ctx, "vault write failed: "+werr.Error())
			}
		}
	}
	x.setState(ctx, StateCommitted, "")
	x.audit(ctx, string(x.r.Kind), "committed")
	x.log.Info("rotation committed", "secret", x.r.Secret, "rotation", x.r.ID, "kind", string(x.r.Kind), "hosts", len(x.r.Hosts))
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
	hosts := x.cfg.HostsOf(x.spec, cur.Hosts)
	if len(hosts) != len(x.r.Hosts) {
		return "its host list was changed"
	}
	seen := map[string]bool{}
	for _, h := range x.r.Hosts {
		seen[x.cfg.HostsOf(x.spec, []Host{h.Host})[0].String()] = true
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
		x.audit(ctx, string(x.r.Kind), "rolled back: "+cause.Error())
		x.log.Warn("rotation rolled back", "secret", x.r.Secret, "rotation", x.r.ID, "reason", cause.Error())
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
	x.audit(ctx, string(x.r.Kind), "needs reconcile: "+why)
	x.log.Error("rotation needs reconcile", "secret", x.r.Secret, "rotation", x.r.ID, "reason", why, "alert", true)
	return x.result(fmt.Errorf("%w: %w%s", ErrNeedsReconcile, cause, extra))
}

// restoreVault makes sure the vault holds the old password after a write
// that may have landed. It reports whether that is confirmed.
func (x *run) restoreVault(ctx context.Context) bool {
	cur, err := x.vault.Read(ctx, x.r.SecretID, x.cfg.HostsFieldOf(x.spec))
	if err != nil {
		return false
	}
	if !cur.Password.Equal(x.r.New) {
		return true // the write did not land (or someone else wrote since)
	}
	return x.vault.Write(ctx, cur, x.r.Old, x.cfg.Comment) == nil
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

// The run's bookkeeping: what stops it, what it journals, what it reports.

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
	x.log.Error("rotation stopped: lease lost", "secret", x.r.Secret, "rotation", x.r.ID, "hosts", x.uncertain(), "alert", true)
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

func (x *run) setState(ctx context.Context, st State, errText string) {
	x.r.State = st
	x.r.Error = errText
	if err := x.store.SetState(ctx, x.r.ID, x.r.Generation, st, errText); err != nil {
		x.log.Error("journal write failed", "secret", x.r.Secret, "rotation", x.r.ID, "state", string(st), "err", err)
		x.noteJournalErr(err)
	}
}

// setNew journals a fresh new password after a policy rejection.
func (x *run) setNew(ctx context.Context, pw secret.Value) error {
	if err := x.store.SetNew(ctx, x.r.ID, x.r.Generation, pw); err != nil {
		return err
	}
	x.r.New = pw
	return nil
}

// audit records an event of this rotation in the audit trail.
func (x *run) audit(ctx context.Context, action, detail string) {
	writeAudit(ctx, x.store, x.log, Event{Time: x.cfg.Now(), Secret: x.r.Secret, RotationID: x.r.ID, Actor: x.actor, Action: action, Detail: detail})
}
