package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rotord/rotord/store"
)

// TestAcceptRekeyRefusedWhileDaemonRuns: `rotord rekey` while `rotord run`
// has the journal open is refused, names the daemon and re-seals nothing
// (the daemon would go on sealing with the old key); once the daemon has
// stopped, it re-seals the journal.
func TestAcceptRekeyRefusedWhileDaemonRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newLab(t, ctx, labOptions{hosts: 1, groups: map[string][]int{"web-root": {0}}, schedule: "@yearly"})
	if _, errOut, code := l.rotord("rotate", "web-root"); code != 0 {
		t.Fatalf("rotord rotate: exit %d: %s", code, errOut)
	}
	newKey := l.path("store-key.new")
	if _, errOut, code := l.rotord("keygen", newKey); code != 0 {
		t.Fatalf("rotord keygen: exit %d: %s", code, errOut)
	}
	oldKey, err := store.LoadKey(l.path("store-key"))
	if err != nil {
		t.Fatal(err)
	}
	opensWithOldKey := func() error {
		db, err := store.Open(ctx, l.path("rotord.db"), store.NewKeyring(oldKey))
		if err == nil {
			_ = db.Close()
		}
		return err
	}

	d := l.startDaemon()
	d.next("the daemon started", func(rec map[string]any) bool { return is(rec, "rotord starting") })
	_, errOut, code := l.rotord("rekey", "--new-key", newKey)
	if code == 0 || !strings.Contains(errOut, "rotord run") {
		t.Errorf("rotord rekey while the daemon runs: exit %d, %q; want a refusal naming the daemon", code, errOut)
	}
	if err := opensWithOldKey(); err != nil {
		t.Errorf("after the refused rekey the old key no longer opens the journal: %v", err)
	}
	d.stop()

	if _, errOut, code := l.rotord("rekey", "--new-key", newKey); code != 0 {
		t.Fatalf("rotord rekey after the daemon stopped: exit %d: %s", code, errOut)
	}
	if err := opensWithOldKey(); !errors.Is(err, store.ErrUnseal) {
		t.Errorf("after rekey the old key alone opens the journal (%v): nothing was re-sealed", err)
	}
}
