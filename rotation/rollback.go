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
	var target Rotation
	op := e.open(ctx, spec, &res, opening{
		kind: KindRollback, actor: actor,
		before: func(ctx context.Context) (err error) {
			target, err = e.rollbackTarget(ctx, spec.Name, toID)
			return err
		},
		check: func(s Secret) (string, bool) {
			if s.Password.Equal(target.Old) {
				return fmt.Sprintf("the secret already holds the password from before rotation %d; nothing to do", target.ID), false
			}
			return "", true
		},
	})
	if op == nil {
		return res
	}
	defer op.close()
	return e.change(ctx, op, changeReq{kind: KindRollback, spec: spec, newPw: target.Old, actor: actor, rollbackOf: target.ID})
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
