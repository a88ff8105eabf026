package store_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

func TestInstances(t *testing.T) { eachBackend(t, testInstances) }

func testInstances(t *testing.T, b backend) {
	ctx := context.Background()
	clk := newClock()
	db, _ := b.mustOpen(t, store.WithNow(clk.Now))
	a := store.Instance{ID: "alpha/10/ab12", Host: "alpha", Version: "1.2.0", Started: clk.Now()}
	if err := db.Heartbeat(ctx, a); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	bInst := store.Instance{ID: "beta/11/cd34", Host: "beta", Version: "1.2.0", Started: clk.Now()}
	if err := db.Heartbeat(ctx, bInst); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	a.InFlight = 3
	if err := db.Heartbeat(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := db.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != a.ID || got[0].InFlight != 3 || !got[0].Heartbeat.Equal(clk.Now()) ||
		!got[0].Started.Equal(a.Started) || got[1].ID != bInst.ID || got[1].Host != "beta" || got[1].Version != "1.2.0" {
		t.Fatalf("Instances() = %+v", got)
	}
	if n, err := db.ForgetInstances(ctx, clk.Now()); err != nil || n != 1 {
		t.Errorf("ForgetInstances = %d, %v; want 1 (beta)", n, err)
	}
	if err := db.Deregister(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Instances(ctx); len(got) != 0 {
		t.Errorf("after deregistering: %+v", got)
	}

	if _, err := db.Acquire(ctx, "Web", a.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Acquire(ctx, "db", bInst.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := db.Release(ctx, "db", bInst.ID); err != nil {
		t.Fatal(err)
	}
	leases, err := db.HeldLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 1 || leases[0].Secret != "web" || leases[0].Holder != a.ID || !leases[0].Expires.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("HeldLeases() = %+v", leases)
	}
}

// A slot is claimed under the secret's lease, once it is due, and only
// until a rotation of it commits.
func TestClaimSlot(t *testing.T) { eachBackend(t, testClaimSlot) }

func testClaimSlot(t *testing.T, b backend) {
	ctx := context.Background()
	clk := newClock()
	db, _ := b.mustOpen(t, store.WithNow(clk.Now))
	t0 := clk.Now()
	var held *rotation.LeaseHeldError
	if _, _, err := db.ClaimSlot(ctx, "web", "a", t0); !errors.As(err, &held) {
		t.Fatalf("claim without the lease: %v, want a LeaseHeldError", err)
	}
	gen, err := db.Acquire(ctx, "web", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if slot, ok, err := db.ClaimSlot(ctx, "WEB", "a", t0); err != nil || !ok || !slot.Equal(t0) {
		t.Fatalf("nothing recorded: %v %v %v", slot, ok, err)
	}
	if _, _, err := db.ClaimSlot(ctx, "web", "b", t0); !errors.As(err, &held) || held.Holder != "a" {
		t.Errorf("claim by another while a holds the lease: %v", err)
	}
	due := t0.Add(5 * time.Second)
	if err := db.SetNextDue(ctx, "web", due); err != nil {
		t.Fatal(err)
	}
	if slot, ok, err := db.ClaimSlot(ctx, "web", "a", due.Add(-time.Millisecond)); ok || err != nil || !slot.IsZero() {
		t.Errorf("claim before the slot: %v %v %v", slot, ok, err)
	}
	clk.Add(6 * time.Second)
	if slot, ok, err := db.ClaimSlot(ctx, "web", "a", clk.Now()); !ok || err != nil || !slot.Equal(due) {
		t.Errorf("claim of the due slot: %v %v %v", slot, ok, err)
	}
	// A rotation of the slot: a rollback does not serve it, a committed
	// rotation does.
	for _, kind := range []rotation.Kind{rotation.KindRollback, rotation.KindRotate} {
		r := sampleRotation("web")
		r.Kind, r.Generation, r.RollbackOf = kind, gen, 1
		id, err := db.Begin(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.SetState(ctx, id, gen, rotation.StateCommitted, ""); err != nil {
			t.Fatal(err)
		}
		slot, ok, err := db.ClaimSlot(ctx, "web", "a", clk.Now())
		if err != nil || ok != (kind == rotation.KindRollback) || !slot.Equal(due) {
			t.Errorf("claim after a committed %s: %v %v %v", kind, slot, ok, err)
		}
	}
	// The lease expired: no claim, even by its last holder.
	clk.Add(time.Minute)
	if _, _, err := db.ClaimSlot(ctx, "web", "a", clk.Now()); !errors.As(err, &held) {
		t.Errorf("claim under an expired lease: %v", err)
	}
}

// Instances that share the database and whose timers fire for one slot
// at once (a catch-up after an outage is such a race too), each taking
// the lease, claiming, and on a claim committing a rotation: the slot is
// rotated exactly once, however the race goes.
func TestClaimSlotRace(t *testing.T) { eachBackend(t, testClaimSlotRace) }

func testClaimSlotRace(t *testing.T, b backend) {
	ctx := context.Background()
	first, loc := b.mustOpen(t)
	key := mustKey(t)
	first.Close()
	const n = 4
	var dbs []*store.DB
	for range n {
		db, err := b.open(ctx, loc, store.NewKeyring(key))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		dbs = append(dbs, db)
	}
	t0 := time.Now().Add(-time.Hour)
	if err := dbs[0].SetNextDue(ctx, "web", t0); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		var rotations atomic.Int32
		var wg sync.WaitGroup
		for i, db := range dbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				holder := fmt.Sprintf("instance-%d", i)
				for {
					gen, err := db.Acquire(ctx, "web", holder, time.Minute)
					var held *rotation.LeaseHeldError
					if errors.As(err, &held) {
						runtime.Gosched()
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					defer db.Release(ctx, "web", holder)
					_, ok, err := db.ClaimSlot(ctx, "web", holder, time.Now())
					if err != nil || !ok {
						return
					}
					r := sampleRotation("web")
					r.Generation = gen
					id, err := db.Begin(ctx, r)
					if err == nil {
						err = db.SetState(ctx, id, gen, rotation.StateCommitted, "")
					}
					if err != nil {
						t.Error(err)
						return
					}
					rotations.Add(1)
					return
				}
			}()
		}
		wg.Wait()
		if rotations.Load() != 1 {
			t.Fatalf("round %d: %d rotations of one slot, want 1", round, rotations.Load())
		}
		// The next slot is due.
		if err := dbs[round%n].SetNextDue(ctx, "web", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
}
