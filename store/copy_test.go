package store_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/store"
	"github.com/rotord/rotord/store/pgtest"
)

// Moving up from SQLite: the journal is copied row for row into an empty
// PostgreSQL database; the same key opens it, the sealed bytes are those
// of the source, and a copied rotation can be rolled back (its passwords
// and its place in the history are there), and new rotations continue
// after the copied ids.
func TestCopyFromSQLite(t *testing.T) {
	ctx := context.Background()
	key := mustKey(t)
	keys := store.NewKeyring(key)
	path := filepath.Join(t.TempDir(), "rotord.db")
	src, err := store.Open(ctx, path, keys)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var ids []int64
	for i, name := range []string{"web", "db", "web"} {
		r := sampleRotation(name)
		r.New = secret.New("new-" + name + string(rune('a'+i)))
		gen, err := src.Acquire(ctx, name, "cli", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		r.Generation = gen
		id, err := src.Begin(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := src.SetRefused(ctx, id, gen, r.Hosts[0].Host, rotation.Refusals{Old: true, Count: 1}); err != nil {
			t.Fatal(err)
		}
		if err := src.SetState(ctx, id, gen, rotation.StateCommitted, ""); err != nil {
			t.Fatal(err)
		}
		if err := src.Release(ctx, name, "cli"); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	due := time.Date(2026, 5, 1, 3, 0, 0, 0, time.UTC)
	if err := src.SetNextDue(ctx, "web", due); err != nil {
		t.Fatal(err)
	}
	if err := src.Audit(ctx, rotation.Event{Secret: "web", Actor: "cli:alice", Action: "rotate", Detail: "by hand"}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Acquire(ctx, "db", "daemon-on-the-old-machine", time.Hour); err != nil {
		t.Fatal(err)
	}

	dsn := pgtest.NewDatabase(t)
	dst, err := store.OpenPostgres(ctx, dsn, keys)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	counts, err := dst.CopyFrom(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if counts["rotations"] != 3 || counts["rotation_hosts"] != 9 || counts["sealed_passwords"] != 6 || counts["audit_events"] != 1 {
		t.Errorf("copied %v", counts)
	}
	for _, id := range ids {
		want, _ := src.Get(ctx, id)
		got, err := dst.Get(ctx, id)
		if err != nil {
			t.Fatalf("rotation %d after the copy: %v", id, err)
		}
		if !got.Old.Equal(want.Old) || !got.New.Equal(want.New) || got.State != rotation.StateCommitted ||
			!got.Started.Equal(want.Started) || got.Hosts[0].Refused != want.Hosts[0].Refused || got.Generation != want.Generation {
			t.Errorf("rotation %d: got %+v, want %+v", id, got, want)
		}
	}
	for _, q := range []string{`SELECT ciphertext FROM sealed_passwords WHERE rotation_id = 1 AND role = 'new'`} {
		var a, b []byte
		if err := rawSQL(t, path).QueryRow(q).Scan(&a); err != nil {
			t.Fatal(err)
		}
		if err := postgresBackend.raw(t, dsn).QueryRow(q).Scan(&b); err != nil {
			t.Fatal(err)
		}
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Error("sealed bytes differ after the copy")
		}
	}
	// Rolling back the newest rotation of web: the previous password is
	// there, under the same key.
	last, err := dst.LastCommitted(ctx, "web", 0)
	if err != nil || last.ID != ids[2] {
		t.Fatalf("last committed of web: %d, %v", last.ID, err)
	}
	prev, err := dst.LastCommitted(ctx, "web", last.ID)
	if err != nil || prev.ID != ids[0] || !prev.New.Equal(secret.New("new-weba")) {
		t.Fatalf("rotation before it: %d, %v", prev.ID, err)
	}
	gen, err := dst.Acquire(ctx, "db", "new-daemon", time.Minute)
	if err != nil {
		t.Fatalf("a lease held on the old machine is not held here: %v", err)
	}
	rb := rotation.Rotation{Secret: "web", Kind: rotation.KindRollback, RollbackOf: last.ID, Old: last.New, New: last.Old}
	rbID, err := dst.Begin(ctx, rb)
	if err != nil {
		t.Fatal(err)
	}
	if rbID <= ids[2] {
		t.Errorf("new rotation id %d reuses a copied id (up to %d)", rbID, ids[2])
	}
	if d, ok, _ := dst.NextDue(ctx, "WEB"); !ok || !d.Equal(due) {
		t.Errorf("next due after the copy: %v %v", d, ok)
	}
	if g, _ := dst.Acquire(ctx, "db", "new-daemon", time.Minute); g != gen {
		t.Errorf("generation changed on re-acquire")
	}

	// The target is no longer empty: a second copy is refused.
	if _, err := dst.CopyFrom(ctx, src); !errors.Is(err, store.ErrNotEmpty) {
		t.Errorf("copy into a journal with rows: %v, want ErrNotEmpty", err)
	}
	// A source with an unfinished rotation is refused.
	if _, err := src.Begin(ctx, sampleRotation("mail")); err != nil {
		t.Fatal(err)
	}
	other, err := store.OpenPostgres(ctx, pgtest.NewDatabase(t), keys)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.CopyFrom(ctx, src); !errors.Is(err, store.ErrUnfinished) {
		t.Errorf("copy of a journal with an unfinished rotation: %v, want ErrUnfinished", err)
	}
	if h, _ := other.History(ctx, rotation.HistoryQuery{}); len(h) != 0 {
		t.Errorf("a refused copy left %d rotations", len(h))
	}
}
