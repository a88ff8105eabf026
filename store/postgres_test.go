package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/rotation/secret"
	"github.com/rotord/rotord/store"
	"github.com/rotord/rotord/store/pgtest"
)

// Rekey needs the PostgreSQL journal alone, as it needs the SQLite file
// alone: another open store (another rotord, on any machine) refuses it.
func TestPostgresRekeyRefusedWhileInUse(t *testing.T) {
	ctx := context.Background()
	key := mustKey(t)
	dsn := pgtest.NewDatabase(t)
	db, err := store.OpenPostgres(ctx, dsn, store.NewKeyring(key))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Begin(ctx, sampleRotation("web")); err != nil {
		t.Fatal(err)
	}
	other, err := store.OpenPostgres(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Rekey(ctx, mustKey(t)); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("Rekey while another store is open: %v, want ErrInUse", err)
	}
	_ = other.Close()
	newKey := mustKey(t)
	if n, err := db.Rekey(ctx, newKey); err != nil || n != 2 {
		t.Fatalf("Rekey alone: %d, %v", n, err)
	}
	again, err := store.OpenPostgres(ctx, dsn, store.NewKeyring(newKey))
	if err != nil {
		t.Fatalf("open with the new key after Rekey: %v", err)
	}
	_ = again.Close()
}

// Stores that share one PostgreSQL database, as rotords on several
// machines do, race for one lease: in every round exactly one wins, each
// winner gets a greater generation, and the losers' fenced writes fail.
func TestPostgresLeaseRaceAcrossStores(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	key := mustKey(t)
	const n = 6
	dbs := make([]*store.DB, n)
	for i := range dbs {
		db, err := store.OpenPostgres(ctx, dsn, store.NewKeyring(key))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	var last int64
	for round := range 10 {
		var wins atomic.Int32
		gens := make([]int64, n)
		var wg sync.WaitGroup
		for i, db := range dbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g, err := db.Acquire(ctx, "web", fmt.Sprintf("host%d/%d", i, round), time.Minute)
				var held *rotation.LeaseHeldError
				switch {
				case err == nil:
					wins.Add(1)
					gens[i] = g
				case !errors.As(err, &held):
					t.Errorf("Acquire: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, wins.Load())
		}
		var winner int
		for i, g := range gens {
			if g != 0 {
				winner = i
			}
		}
		if gens[winner] <= last {
			t.Fatalf("round %d: generation %d, not above %d", round, gens[winner], last)
		}
		r := sampleRotation("web")
		r.Generation = gens[winner]
		id, err := dbs[winner].Begin(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if last > 0 {
			r.Generation = last
			if _, err := dbs[(winner+1)%n].Begin(ctx, r); !errors.Is(err, rotation.ErrFenced) {
				t.Fatalf("Begin under the previous generation: %v, want ErrFenced", err)
			}
		}
		if err := dbs[winner].SetState(ctx, id, gens[winner], rotation.StateRolledBack, ""); err != nil {
			t.Fatal(err)
		}
		if err := dbs[winner].Release(ctx, "web", fmt.Sprintf("host%d/%d", winner, round)); err != nil {
			t.Fatal(err)
		}
		last = gens[winner]
	}
}

// signalHandler is a slog handler that calls on for every record whose
// message is msg.
type signalHandler struct {
	msg string
	on  func()
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.on()
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }

// A PostgreSQL restart in the middle of a rotation loses no write: a
// statement that finds the server down is retried until it is back, and
// the rotation's record is whole afterwards, journaled once.
func TestPostgresWritesSurviveRestart(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Shared(t)
	dsn := pgtest.NewDatabase(t)
	var once sync.Once
	restarted := make(chan error, 1)
	log := slog.New(signalHandler{msg: "database statement failed for a transient reason; retrying", on: func() {
		once.Do(func() { go func() { restarted <- c.Restart() }() })
	}})
	db, err := store.OpenPostgres(ctx, dsn, store.NewKeyring(mustKey(t)), store.WithLogger(log), store.WithRetryWindow(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gen, err := db.Acquire(ctx, "web", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRotation("web")
	r.Generation = gen
	id, err := db.Begin(ctx, r)
	if err != nil {
		t.Fatal(err)
	}

	// Down between two writes of the rotation: the next write waits for it.
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := db.SetState(ctx, id, gen, rotation.StateHostsChanging, ""); err != nil {
		t.Fatalf("SetState across a restart: %v", err)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	// Down before a Begin: journaled once.
	once = sync.Once{}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	id2, err := db.Begin(ctx, sampleRotation("db"))
	if err != nil {
		t.Fatalf("Begin across a restart: %v", err)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	got, err := db.Get(ctx, id)
	if err != nil || got.State != rotation.StateHostsChanging {
		t.Fatalf("after the restart: %v, %v", got.State, err)
	}
	if err := db.Renew(ctx, "web", "a", time.Minute); err != nil {
		t.Errorf("Renew after the restart: %v", err)
	}
	h, err := db.History(ctx, rotation.HistoryQuery{Secret: "db"})
	if err != nil || len(h) != 1 || h[0].ID != id2 {
		t.Errorf("rotations of db after a Begin across a restart: %v, %v", h, err)
	}
}

// A server restart drops every store's advisory use lock with its
// session, so a rekey can then run while a daemon's store stays open.
// That store must not go on sealing with the old key: its next Begin and
// SetNew fail with ErrRekeyed and write nothing, and every sealed value
// in the journal is under the new key, which opens it.
func TestPostgresRekeyAcrossServerRestart(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Shared(t)
	dsn := pgtest.NewDatabase(t)
	oldKey, newKey := mustKey(t), mustKey(t)
	daemon, err := store.OpenPostgres(ctx, dsn, store.NewKeyring(oldKey), store.WithRetryWindow(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	id, err := daemon.Begin(ctx, sampleRotation("web"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.OpenPostgres(ctx, dsn, store.NewKeyring(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Rekey(ctx, newKey); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("Rekey beside an open store: %v, want ErrInUse", err)
	}
	_ = other.Close()

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	rekeyer, err := store.OpenPostgres(ctx, dsn, store.NewKeyring(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	n, err := rekeyer.Rekey(ctx, newKey)
	_ = rekeyer.Close()
	if err != nil || n != 2 {
		t.Fatalf("Rekey after the restart: %d, %v (the daemon's use lock went with its session)", n, err)
	}

	if _, err := daemon.Begin(ctx, sampleRotation("db")); !errors.Is(err, store.ErrRekeyed) {
		t.Fatalf("Begin with the old key after the rekey: %v, want ErrRekeyed", err)
	}
	if err := daemon.SetNew(ctx, id, 0, secret.New("Another-New-Pw-1")); !errors.Is(err, store.ErrRekeyed) {
		t.Fatalf("SetNew with the old key after the rekey: %v, want ErrRekeyed", err)
	}
	raw := postgresBackend.raw(t, dsn)
	rows, err := raw.QueryContext(ctx, `SELECT key_id FROM sealed_passwords`)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for rows.Next() {
		var kid string
		if err := rows.Scan(&kid); err != nil {
			t.Fatal(err)
		}
		if kid != newKey.ID() {
			t.Errorf("a sealed value under key %s after the rekey to %s", kid, newKey.ID())
		}
		count++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if count != 2 {
		t.Errorf("%d sealed values, want the first rotation's 2 only", count)
	}
	after, err := store.OpenPostgres(ctx, dsn, store.NewKeyring(newKey))
	if err != nil {
		t.Fatalf("open with the new key: %v", err)
	}
	defer after.Close()
	got, err := after.Get(ctx, id)
	if err != nil || got.New.IsZero() {
		t.Fatalf("the rotation under the new key: %+v, %v", got, err)
	}
	if _, err := after.Begin(ctx, sampleRotation("db")); err != nil {
		t.Errorf("Begin with the new key: %v", err)
	}
}
