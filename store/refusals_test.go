package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

// What a host refused survives a restart of rotord, so that recovery does
// not send a refused password again; SetHost leaves it as it is.
func TestSetRefusedIsDurable(t *testing.T) { eachBackend(t, testSetRefusedIsDurable) }

func testSetRefusedIsDurable(t *testing.T, b backend) {
	ctx := context.Background()
	key := mustKey(t)
	path := b.fresh(t)
	db, err := b.open(ctx, path, store.NewKeyring(key))
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRotation("prod-web-root")
	id, err := db.Begin(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	web02 := r.Hosts[1].Host
	want := rotation.Refusals{Old: true, New: true, Count: 2}
	if err := db.SetRefused(ctx, id, 0, web02, want); err != nil {
		t.Fatal(err)
	}
	if err := db.SetHost(ctx, id, 0, rotation.HostRecord{Host: web02, State: rotation.HostNeedsReconcile}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetRefused(ctx, id, 0, rotation.Host{Name: "web09"}, want); !errors.Is(err, rotation.ErrNotFound) {
		t.Errorf("SetRefused of an unknown host: %v, want ErrNotFound", err)
	}
	_ = db.Close()

	again, err := b.open(ctx, path, store.NewKeyring(key))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	got, err := again.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hosts[1].Refused != want || got.Hosts[1].State != rotation.HostNeedsReconcile {
		t.Errorf("web02 after reopen: %+v, want refused %+v", got.Hosts[1], want)
	}
	if got.Hosts[0].Refused != (rotation.Refusals{}) {
		t.Errorf("web01 refused %+v, want none", got.Hosts[0].Refused)
	}
	if err := again.SetState(ctx, id, 0, rotation.StateRolledBack, ""); err != nil {
		t.Fatal(err)
	}
	if err := again.SetRefused(ctx, id, 0, web02, want); !errors.Is(err, store.ErrFinalState) {
		t.Errorf("SetRefused on a rolled-back rotation: %v, want ErrFinalState", err)
	}
}
