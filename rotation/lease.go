package rotation

import (
	"context"
	"errors"
	"sync"
	"time"
)

// hold is a secret's lease held by this engine.
type hold struct {
	gen     int64           // the lease's fencing generation
	lost    <-chan struct{} // closed if the lease is lost while held
	release func()          // stops the renewals and gives the lease up
}

// lease takes the secret's lease, taking over one left by a dead process
// of this machine, and keeps it renewed until the hold is released.
func (e *Engine) lease(ctx context.Context, name string) (*hold, error) {
	gen, err := e.store.Acquire(ctx, name, e.cfg.Holder, e.cfg.LeaseTTL)
	var held *LeaseHeldError
	if errors.As(err, &held) && holderDead(held.Holder) {
		e.log.Info("taking over the lease of a dead process", "secret", name, "holder", held.Holder)
		if err = e.store.Release(ctx, name, held.Holder); err == nil {
			gen, err = e.store.Acquire(ctx, name, e.cfg.Holder, e.cfg.LeaseTTL)
		}
	}
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	lostc := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(e.cfg.LeaseTTL / 3)
		defer t.Stop()
		// Renewals that keep failing (the database locked, a disk stall) do
		// not extend the lease; once it could expire before the next try,
		// another process may take it, so the rotation is given up first:
		// after a second failure in a row, or half the lifetime without a
		// renewal, whichever comes first.
		renewed, failures := time.Now(), 0
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sent := time.Now()
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.LeaseTTL/6)
				err := e.store.Renew(rctx, name, e.cfg.Holder, e.cfg.LeaseTTL)
				cancel()
				var held *LeaseHeldError
				switch {
				case errors.As(err, &held):
					close(lostc)
					e.log.Error("lease lost", "secret", name, "holder", held.Holder, "alert", true)
					return
				case err != nil:
					failures++
					if failures >= 2 || time.Since(renewed) >= e.cfg.LeaseTTL/2 {
						close(lostc)
						e.log.Error("lease lost: renewal keeps failing; giving up before it expires", "secret", name, "err", err, "alert", true)
						return
					}
					e.log.Warn("lease renewal failed", "secret", name, "err", err)
				default:
					renewed, failures = sent, 0
				}
			}
		}
	}()
	release := func() {
		close(done)
		wg.Wait()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := e.store.Release(rctx, name, e.cfg.Holder); err != nil {
			e.log.Warn("lease release failed", "secret", name, "err", err)
		}
	}
	return &hold{gen: gen, lost: lostc, release: release}, nil
}
