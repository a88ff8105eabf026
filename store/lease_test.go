package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/store"
)

func TestLeases(t *testing.T) { eachBackend(t, testLeases) }

func testLeases(t *testing.T, b backend) {
	ctx := context.Background()
	clk := newClock()
	db, _ := b.mustOpen(t, store.WithNow(clk.Now))
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

// Secret names match without regard to case everywhere, so everything the
// store keeps per secret is found under any spelling of the name, and two
// holders cannot get one secret's lease under two spellings.
func TestSecretKeysIgnoreCase(t *testing.T) { eachBackend(t, testSecretKeysIgnoreCase) }

func testSecretKeysIgnoreCase(t *testing.T, b backend) {
	ctx := context.Background()
	db, _ := b.mustOpen(t)
	if _, err := db.Acquire(ctx, "prod-root", "daemon", time.Minute); err != nil {
		t.Fatal(err)
	}
	var held *rotation.LeaseHeldError
	if _, err := db.Acquire(ctx, "PROD-ROOT", "cli", time.Minute); !errors.As(err, &held) || held.Holder != "daemon" {
		t.Fatalf("Acquire under another spelling: %v, want held by the daemon", err)
	}
	due := time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)
	if err := db.SetNextDue(ctx, "Prod-Root", due); err != nil {
		t.Fatal(err)
	}
	if at, ok, err := db.NextDue(ctx, "prod-ROOT"); err != nil || !ok || !at.Equal(due) {
		t.Errorf("next due under another spelling: %v %v %v", at, ok, err)
	}
	if err := db.SetSecretID(ctx, "PROD-root", 7); err != nil {
		t.Fatal(err)
	}
	if id, ok, err := db.SecretID(ctx, "prod-root"); err != nil || !ok || id != 7 {
		t.Errorf("secret id under another spelling: %d %v %v", id, ok, err)
	}
	id, err := db.Begin(ctx, sampleRotation("Prod-Root"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetState(ctx, id, 0, rotation.StateCommitted, ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"prod-root", "PROD-ROOT", "Prod-Root"} {
		if h, err := db.History(ctx, rotation.HistoryQuery{Secret: name}); err != nil || len(h) != 1 || h[0].ID != id {
			t.Errorf("history of %q: %v, %v", name, h, err)
		}
		if r, err := db.LastCommitted(ctx, name, 0); err != nil || r.ID != id {
			t.Errorf("last committed of %q: %v", name, err)
		}
	}
}

// Each new holder of a lease gets a greater generation; the same holder
// keeps its generation. A rotation's writes are refused (ErrFenced) once
// another holder took the lease, and after that holder adopted it.
func TestLeaseGenerationFences(t *testing.T) { eachBackend(t, testLeaseGenerationFences) }

func testLeaseGenerationFences(t *testing.T, b backend) {
	ctx := context.Background()
	clk := newClock()
	db, _ := b.mustOpen(t, store.WithNow(clk.Now))
	const ttl = time.Minute
	g1, err := db.Acquire(ctx, "web", "a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := db.Acquire(ctx, "web", "a", ttl); err != nil || g != g1 {
		t.Errorf("re-acquire by the holder: generation %d, %v; want %d", g, err, g1)
	}
	r := sampleRotation("web")
	r.Generation = g1
	id, err := db.Begin(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetState(ctx, id, g1, rotation.StateHostsChanging, ""); err != nil {
		t.Fatal(err)
	}
	clk.Add(ttl + time.Second)
	g2, err := db.Acquire(ctx, "WEB", "b", ttl)
	if err != nil || g2 <= g1 {
		t.Fatalf("take over: generation %d, %v; want above %d", g2, err, g1)
	}
	h := rotation.HostRecord{Host: rotation.Host{Name: "web01"}, State: rotation.HostChanged}
	if err := db.SetHost(ctx, id, g1, h); !errors.Is(err, rotation.ErrFenced) {
		t.Errorf("SetHost by the old holder after a take-over: %v, want ErrFenced", err)
	}
	if err := db.Adopt(ctx, id, g1); !errors.Is(err, rotation.ErrFenced) {
		t.Errorf("Adopt by the old generation: %v, want ErrFenced", err)
	}
	if err := db.Adopt(ctx, id, g2); err != nil {
		t.Fatal(err)
	}
	for name, write := range map[string]func(gen int64) error{
		"SetState": func(gen int64) error { return db.SetState(ctx, id, gen, rotation.StateRollingBack, "") },
		"SetHost":  func(gen int64) error { return db.SetHost(ctx, id, gen, h) },
		"SetNew":   func(gen int64) error { return db.SetNew(ctx, id, gen, secret.New("fresh-Pa55word")) },
	} {
		if err := write(g1); !errors.Is(err, rotation.ErrFenced) {
			t.Errorf("%s by the old generation after adoption: %v, want ErrFenced", name, err)
		}
		if err := write(g2); err != nil {
			t.Errorf("%s by the adopting generation: %v", name, err)
		}
	}
	if _, err := db.Begin(ctx, r); !errors.Is(err, rotation.ErrFenced) {
		t.Errorf("Begin under a lost generation: %v, want ErrFenced", err)
	}
	// Released and taken again: the generation still grows.
	if err := db.Release(ctx, "web", "b"); err != nil {
		t.Fatal(err)
	}
	if g3, err := db.Acquire(ctx, "web", "b", ttl); err != nil || g3 <= g2 {
		t.Errorf("after release: generation %d, %v; want above %d", g3, err, g2)
	}
}
