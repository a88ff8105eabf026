package main

// This file holds what rotord run does when several daemons share one
// journal (store.driver postgres): its instance's heartbeat row, and the
// claim of each scheduled slot, so that exactly one daemon rotates it.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

// slotLeaseWait is how often a daemon whose slot finds the secret's lease
// held by another process tries the lease again, while it waits for that
// rotation to end.
const slotLeaseWait = 250 * time.Millisecond

// staleInstanceAge is how long an instance may have been silent before a
// starting instance removes it from the listing.
const staleInstanceAge = 7 * 24 * time.Hour

// instanceBeat registers this daemon in the shared journal and records its
// heartbeat, with the rotations in flight, until ctx is done; then it
// removes the registration. It returns at once when the journal keeps no
// instances.
func (a *app) instanceBeat(ctx context.Context, journal any, inFlight *atomic.Int64) {
	is, ok := journal.(instanceStore)
	if !ok {
		return
	}
	in := store.Instance{ID: holder(), Host: instanceHost(), Version: version, Started: time.Now()}
	beat := func() {
		in.InFlight = int(inFlight.Load())
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), instanceHeartbeatEvery(a.cfg))
		defer cancel()
		if err := is.Heartbeat(bctx, in); err != nil {
			a.log.Warn("instance heartbeat not recorded", "err", err)
		}
	}
	beat()
	// Instances killed long ago (their machine gone) would otherwise stay
	// listed as stale for ever.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), instanceHeartbeatEvery(a.cfg))
	if n, err := is.ForgetInstances(fctx, time.Now().Add(-staleInstanceAge)); err != nil {
		a.log.Warn("instances silent for long not forgotten", "err", err)
	} else if n > 0 {
		a.log.Info("forgot instances silent for long", "instances", n, "silent_for", staleInstanceAge)
	}
	cancel()
	t := time.NewTicker(instanceHeartbeatEvery(a.cfg))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := is.Deregister(dctx, in.ID); err != nil {
				a.log.Warn("instance not deregistered", "err", err)
			}
			return
		case <-t.C:
			beat()
		}
	}
}

// claimSlot decides whether this daemon rotates the secret's slot that is
// due now, when several daemons share the journal: it takes the secret's
// lease (as the engine's holder: the rotation that follows keeps it) and
// claims the slot under it (store.DB.ClaimSlot). A lease held by another
// live daemon leaves the slot to it (every daemon schedules every secret,
// so that one serves the slot, now or once it has finished what it holds
// the lease for). While another process (rotord rotate, rollback) holds
// it, it waits for it, up to rotation.deadline, rather than retrying a
// minute later; then the slot is either served (skipped here) or still
// due. It returns true when this daemon
// rotates the slot; false, nil when another daemon served it.
//
// A rotation of the secret left unfinished (its daemon died, or the
// database went away mid-rotation) is recovered first, through recover:
// if it rolls forward it served the slot, which is then not rotated again.
func (a *app) claimSlot(ctx context.Context, is instanceStore, state *sharedSchedule, name string, now func() time.Time,
	recover func(ctx context.Context, name string)) (bool, error) {
	ttl := a.cfg.Rotation.LeaseTTL.D()
	giveUp := time.Now().Add(a.cfg.Rotation.Deadline.D())
	var tick *time.Ticker
	recovered := 0
	for {
		_, err := is.Acquire(ctx, name, holder(), ttl)
		var held *rotation.LeaseHeldError
		if err == nil {
			unfinished, uerr := a.unfinishedOf(ctx, is, name)
			if uerr != nil || !unfinished || recovered == 2 {
				break // the engine's own settling deals with what is left
			}
			recovered++
			// The recovery takes the lease itself, and gives it back.
			recover(ctx, name)
			continue
		}
		if !errors.As(err, &held) || time.Now().After(giveUp) {
			return false, err
		}
		if a.liveInstance(ctx, is, held.Holder) {
			// Another daemon has the secret: it is rotating this slot, or
			// recovering or checking the secret, and then its own timer
			// serves the slot. The recorded due time stays for it.
			state.keepNext(name)
			a.log.Info("slot left to the instance holding the secret's lease", "secret", name, "holder", held.Holder)
			return false, nil
		}
		if tick == nil {
			a.log.Info("slot waits for the secret's lease held by another process", "secret", name, "holder", held.Holder)
			tick = time.NewTicker(slotLeaseWait)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return false, err
		case <-tick.C:
		}
	}
	slot, ok, err := is.ClaimSlot(ctx, name, holder(), now())
	if err == nil && !ok && slot.IsZero() {
		// Served, and the next slot recorded by the instance that served
		// it: keep it; recording this instance's own (later) next slot
		// would push the shared one past the other instances' timers.
		state.keepNext(name)
	}
	if err != nil || !ok {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := is.Release(rctx, name, holder()); rerr != nil {
			a.log.Warn("lease release failed", "secret", name, "err", rerr)
		}
		if err == nil {
			a.log.Info("slot already served or not due in the shared journal; skipped", "secret", name)
		}
		return false, err
	}
	a.log.Debug("slot claimed", "secret", name, "slot", slot)
	return true, nil
}

// liveInstance reports whether holder is another daemon sharing the
// journal whose heartbeat is recent (within three periods).
func (a *app) liveInstance(ctx context.Context, is instanceStore, holderName string) bool {
	if holderName == holder() {
		return false
	}
	insts, err := is.Instances(ctx)
	if err != nil {
		return false
	}
	for _, in := range insts {
		if in.ID == holderName {
			return time.Since(in.Heartbeat) <= 3*instanceHeartbeatEvery(a.cfg)
		}
	}
	return false
}

// unfinishedOf reports whether the journal holds an unfinished rotation of
// the secret.
func (a *app) unfinishedOf(ctx context.Context, is instanceStore, name string) (bool, error) {
	unf, err := is.Unfinished(ctx)
	if err != nil {
		return false, err
	}
	for _, r := range unf {
		if rotation.SecretKey(r.Secret) == rotation.SecretKey(name) {
			return true, nil
		}
	}
	return false, nil
}

// sharedSchedule is the scheduler's ScheduleState when several daemons
// share the journal: the recorded next due time is the one slot they all
// claim, so a daemon that skipped a slot another served does not record
// its own next slot over the one the other recorded (keepNext).
type sharedSchedule struct {
	rotation.ScheduleState

	mu   sync.Mutex
	keep map[string]bool // by rotation.SecretKey
}

func newSharedSchedule(st rotation.ScheduleState) *sharedSchedule {
	return &sharedSchedule{ScheduleState: st, keep: map[string]bool{}}
}

// keepNext makes the next SetNextDue of the secret record nothing.
func (s *sharedSchedule) keepNext(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keep[rotation.SecretKey(name)] = true
}

// SetNextDue records t unless keepNext asked to keep the recorded time.
func (s *sharedSchedule) SetNextDue(ctx context.Context, name string, t time.Time) error {
	s.mu.Lock()
	keep := s.keep[rotation.SecretKey(name)]
	delete(s.keep, rotation.SecretKey(name))
	s.mu.Unlock()
	if keep {
		return nil
	}
	return s.ScheduleState.SetNextDue(ctx, name, t)
}
