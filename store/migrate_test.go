package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

func TestMigrateFresh(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rotord.db")
	from, to, err := store.Migrate(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if from != 0 || to != store.LatestSchemaVersion() {
		t.Errorf("Migrate = %d → %d, want 0 → %d", from, to, store.LatestSchemaVersion())
	}
	from, to, err = store.Migrate(ctx, path)
	if err != nil || from != to || to != store.LatestSchemaVersion() {
		t.Errorf("second Migrate = %d → %d, %v; want nothing to do", from, to, err)
	}
	// Every table the store uses exists.
	raw := rawSQL(t, path)
	for _, table := range []string{"secrets", "rotations", "rotation_hosts", "sealed_passwords", "leases", "audit_events"} {
		var n int
		if err := raw.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, table).Scan(&n); err != nil || n != 1 {
			t.Errorf("table %s: %d, %v", table, n, err)
		}
	}
}

// TestMigrateUpgrade builds a database at every earlier schema version,
// writes a rotation with what that version has, then opens it with the
// current binary and reads everything back.
func TestMigrateUpgrade(t *testing.T) {
	ctx := context.Background()
	key := mustKey(t)
	for v := int64(1); v < store.LatestSchemaVersion(); v++ {
		t.Run(fmt.Sprintf("From%d", v), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rotord.db")
			old, err := store.OpenAt(ctx, path, store.NewKeyring(key), v)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := old.SchemaVersion(ctx); err != nil || got != v {
				t.Fatalf("schema version %d, %v; want %d", got, err, v)
			}
			r := sampleRotation("web")
			id, err := old.Begin(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if err := old.SetState(ctx, id, rotation.StateCommitted, ""); err != nil {
				t.Fatal(err)
			}
			if err := old.SetSecretID(ctx, "web", 77); err != nil {
				t.Fatal(err)
			}
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}

			db, err := store.Open(ctx, path, store.NewKeyring(key))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if got, err := db.SchemaVersion(ctx); err != nil || got != store.LatestSchemaVersion() {
				t.Fatalf("after upgrade: schema version %d, %v", got, err)
			}
			got, err := db.LastCommitted(ctx, "web", 0)
			if err != nil || got.ID != id || !got.Old.Equal(r.Old) || !got.New.Equal(r.New) || len(got.Hosts) != 3 {
				t.Errorf("rotation after upgrade: %+v, %v", got, err)
			}
			if vid, ok, err := db.SecretID(ctx, "web"); err != nil || !ok || vid != 77 {
				t.Errorf("secret id after upgrade: %d %v %v", vid, ok, err)
			}
			hist, err := db.History(ctx, rotation.HistoryQuery{Secret: "web"})
			if err != nil || len(hist) != 1 {
				t.Errorf("history after upgrade: %v, %v", hist, err)
			}
			if err := db.Audit(ctx, rotation.Event{Secret: "web", Actor: "test", Action: "migrate"}); err != nil {
				t.Errorf("audit after upgrade: %v", err)
			}
		})
	}
}

func TestMigrateRefusesNewer(t *testing.T) {
	ctx := context.Background()
	db, path := mustOpen(t)
	if _, err := db.Begin(ctx, sampleRotation("web")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// A newer rotord applied a migration this binary does not know.
	newer := store.LatestSchemaVersion() + 1
	raw := rawSQL(t, path)
	if _, err := raw.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, 1)`, newer); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TABLE from_the_future (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	_ = raw.Close()

	_, err := store.Open(ctx, path, store.NewKeyring(mustKey(t)))
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Open: %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{fmt.Sprint(newer), fmt.Sprint(store.LatestSchemaVersion()), "upgrade rotord"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, _, err := store.Migrate(ctx, path); !errors.Is(err, store.ErrSchemaTooNew) {
		t.Errorf("Migrate: %v, want ErrSchemaTooNew", err)
	}
	// Nothing was changed: the version is still the newer one.
	raw = rawSQL(t, path)
	var max int64
	if err := raw.QueryRow(`SELECT max(version_id) FROM goose_db_version`).Scan(&max); err != nil || max != newer {
		t.Errorf("version after refusal %d, %v", max, err)
	}
}
