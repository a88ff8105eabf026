package rotation

import (
	"context"
	"fmt"
)

// RecoverUnfinished finishes or undoes the rotations the journal holds
// unfinished whose lease is free: its holder released it, let it expire, or
// was a process of this machine that died. It is the running daemon's
// counterpart of Recover: a rotation a `rotord rotate` left behind when it
// was killed is finished without waiting for a restart. A rotation whose
// lease a live holder keeps is left to it, and reported with its
// *LeaseHeldError. Rotations that need reconcile are not retried here (each
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
		results = append(results, e.recoverOne(ctx, r, actor, false)...)
		done()
	}
	return results
}
