package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Rollback restores, on every host and in the vault, the password that was
// current before rotation toID of the secret (0: its last committed
// rotation of kind rotate). It runs as a journaled rotation of kind
// rollback, with the same all-or-nothing protocol as Rotate.
func (e *Engine) Rollback(ctx context.Context, spec SecretSpec, toID int64, actor string) Result {
	res := Result{Secret: spec.Name, Kind: KindRollback}
	l, err := e.lease(ctx, spec.Name)
	if err != nil {
		res.Err = err
		return res
	}
	defer l.release()
	if err := e.settle(ctx, spec.Name, actor, l); err != nil {
		res.Err = err
		return res
	}
	target, err := e.rollbackTarget(ctx, spec.Name, toID)
	if err != nil {
		res.Err = err
		return res
	}
	startCtx, cancel := context.WithTimeout(ctx, e.cfg.SecretDeadline)
	defer cancel()
	s, err := e.readSecret(startCtx, spec)
	if err != nil {
		res.Err = err
		return res
	}
	if s.Password.Equal(target.Old) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the secret already holds the password from before rotation %d; nothing to do", target.ID))
		return res
	}
	lifelines, hostRes, err := e.preflight(startCtx, s)
	defer closeAll(lifelines)
	if err != nil {
		res.Hosts = hostRes
		res.Err = err
		e.audit(ctx, Event{Secret: spec.Name, Actor: actor, Action: "rollback", Detail: "pre-flight failed: " + err.Error()})
		return res
	}
	return e.change(ctx, startCtx, l.lost, changeReq{
		kind: KindRollback, secret: s, spec: spec, newPw: target.Old,
		lifelines: lifelines, actor: actor, rollbackOf: target.ID, gen: l.gen,
	})
}

// rollbackTarget finds the rotation whose old password a rollback restores.
func (e *Engine) rollbackTarget(ctx context.Context, name string, toID int64) (Rotation, error) {
	if toID != 0 {
		r, err := e.store.Get(ctx, toID)
		if err != nil {
			return Rotation{}, fmt.Errorf("rotation %d: %w", toID, err)
		}
		if !strings.EqualFold(r.Secret, name) {
			return Rotation{}, fmt.Errorf("rotation %d belongs to secret %q, not %q", toID, r.Secret, name)
		}
		if r.State != StateCommitted {
			return Rotation{}, fmt.Errorf("rotation %d is %s, not committed: nothing of it to roll back", toID, r.State)
		}
		return r, nil
	}
	before := int64(0)
	for {
		r, err := e.store.LastCommitted(ctx, name, before)
		if errors.Is(err, ErrNotFound) {
			return Rotation{}, fmt.Errorf("secret %q has no committed rotation to roll back", name)
		}
		if err != nil {
			return Rotation{}, fmt.Errorf("find last rotation of %q: %w", name, err)
		}
		if r.Kind == KindRotate {
			return r, nil
		}
		before = r.ID
	}
}

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
			errs[i] = e.verify(ctx, h, s.Username, s.Password)
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
