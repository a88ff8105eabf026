package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

func TestLeases(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	db, _ := mustOpen(t, store.WithNow(clk.Now))
	const name, ttl = "prod-web-root", 2 * time.Minute

	heldBy := func(err error, holder string) bool {
		var held *rotation.LeaseHeldError
		return errors.As(err, &held) && held.Holder == holder && held.Secret == name
	}
	if _, err := db.Acquire(ctx, name, "a", ttl); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Acquire(ctx, name, "a", ttl); err != nil {
		t.Errorf("re-acquire by the holder: %v", err)
	}
	_, err := db.Acquire(ctx, name, "b", ttl)
	if !heldBy(err, "a") {
		t.Fatalf("Acquire by b: %v, want held by a", err)
	}
	var held *rotation.LeaseHeldError
	errors.As(err, &held)
	if !held.Expires.Equal(clk.Now().Add(ttl)) {
		t.Errorf("expires %v, want %v", held.Expires, clk.Now().Add(ttl))
	}
	if _, err := db.Acquire(ctx, "other", "b", ttl); err != nil {
		t.Errorf("another secret's lease: %v", err)
	}

	// Renewal keeps the lease past its first expiry.
	clk.Add(ttl - time.Second)
	if err := db.Renew(ctx, name, "a", ttl); err != nil {
		t.Fatal(err)
	}
	clk.Add(ttl - time.Second)
	if _, err := db.Acquire(ctx, name, "b", ttl); !heldBy(err, "a") {
		t.Errorf("Acquire after renewal: %v, want held by a", err)
	}
	if err := db.Renew(ctx, name, "b", ttl); !heldBy(err, "a") {
		t.Errorf("Renew by a non-holder: %v, want held by a", err)
	}

	// Expired: taken over; the old holder cannot renew it.
	clk.Add(time.Second)
	if _, err := db.Acquire(ctx, name, "b", ttl); err != nil {
		t.Fatalf("take over an expired lease: %v", err)
	}
	if err := db.Renew(ctx, name, "a", ttl); !heldBy(err, "b") {
		t.Errorf("Renew of a lost lease: %v, want held by b", err)
	}
	if err := db.Release(ctx, name, "a"); err != nil {
		t.Errorf("Release of a lease not held: %v", err)
	}
	if _, err := db.Acquire(ctx, name, "a", ttl); !heldBy(err, "b") {
		t.Errorf("a's release freed b's lease: %v", err)
	}
	if err := db.Release(ctx, name, "b"); err != nil {
		t.Fatal(err)
	}
	if err := db.Renew(ctx, name, "b", ttl); !heldBy(err, "") {
		t.Errorf("Renew after release: %v, want a LeaseHeldError", err)
	}
	if _, err := db.Acquire(ctx, name, "a", ttl); err != nil {
		t.Errorf("Acquire after release: %v", err)
	}
	for _, bad := range []struct {
		name, holder string
		ttl          time.Duration
	}{{"", "a", ttl}, {name, "", ttl}, {name, "a", 0}} {
		if _, err := db.Acquire(ctx, bad.name, bad.holder, bad.ttl); err == nil {
			t.Errorf("Acquire(%q, %q, %s) accepted", bad.name, bad.holder, bad.ttl)
		}
	}
}
