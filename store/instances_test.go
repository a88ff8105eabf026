package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

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

// One instance claims a due slot; the others skip it; the claimer gets it
// again for its retries; the next slot is claimed afresh.
func TestClaimSlot(t *testing.T) { eachBackend(t, testClaimSlot) }

func testClaimSlot(t *testing.T, b backend) {
	ctx := context.Background()
	db, _ := b.mustOpen(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const every = 5 * time.Second
	// Nothing recorded: claimed with slot now.
	slot, ok, err := db.ClaimSlot(ctx, "web", "a", t0, t0.Add(every))
	if err != nil || !ok || !slot.Equal(t0) {
		t.Fatalf("first claim: %v %v %v", slot, ok, err)
	}
	if _, ok, _ := db.ClaimSlot(ctx, "WEB", "b", t0.Add(time.Second), t0.Add(every+time.Second)); ok {
		t.Error("a claimed slot was claimed again by another instance")
	}
	if slot, ok, _ := db.ClaimSlot(ctx, "web", "a", t0.Add(2*time.Second), t0.Add(every+2*time.Second)); !ok || !slot.Equal(t0) {
		t.Errorf("the claimer's retry: %v %v", slot, ok)
	}
	if due, ok, _ := db.NextDue(ctx, "web"); !ok || !due.Equal(t0.Add(every)) {
		t.Errorf("next due after the claim: %v", due)
	}
	// The next slot: b's timer fires first and wins it.
	t1 := t0.Add(every + 300*time.Millisecond)
	if slot, ok, _ := db.ClaimSlot(ctx, "web", "b", t1, t1.Add(every)); !ok || !slot.Equal(t0.Add(every)) {
		t.Errorf("next slot by b: %v %v", slot, ok)
	}
	if _, ok, _ := db.ClaimSlot(ctx, "web", "a", t1, t1.Add(every)); ok {
		t.Error("a claimed b's slot")
	}
	if _, _, err := db.ClaimSlot(ctx, "web", "a", t1, t1); err == nil {
		t.Error("a next due not after now was accepted")
	}
}

// Instances that share the database and whose timers fire for one slot
// at once: exactly one claims it, however the race goes, slot after slot
// (a catch-up after an outage is such a race too).
func TestClaimSlotRace(t *testing.T) { eachBackend(t, testClaimSlotRace) }

func testClaimSlotRace(t *testing.T, b backend) {
	ctx := context.Background()
	first, loc := b.mustOpen(t)
	const n = 4
	dbs := []*store.DB{first}
	for range n - 1 {
		db, err := b.open(ctx, loc, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		dbs = append(dbs, db)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := first.SetNextDue(ctx, "web", t0); err != nil {
		t.Fatal(err)
	}
	for round := range 8 {
		now := t0.Add(time.Duration(round)*time.Minute + time.Second)
		var mu sync.Mutex
		var winners []string
		var wg sync.WaitGroup
		for i, db := range dbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("instance-%d", i)
				slot, ok, err := db.ClaimSlot(ctx, "web", id, now, t0.Add(time.Duration(round+1)*time.Minute))
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					winners = append(winners, id+"@"+slot.Format(time.TimeOnly))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: winners %v, want exactly one", round, winners)
		}
	}
}
