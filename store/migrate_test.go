package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
// writes what that version has (with rows as older rotords wrote them:
// one secret under several spellings of its name), then opens it with the
// current binary and finds everything under any spelling.
func TestMigrateUpgrade(t *testing.T) {
	ctx := context.Background()
	key := mustKey(t)
	due := time.Date(2026, 4, 5, 0, 0, 0, 0, time.UTC)
	for v := int64(1); v < store.LatestSchemaVersion(); v++ {
		t.Run(fmt.Sprintf("From%d", v), func(t *testing.T) {
			dir := t.TempDir()
			// The rotation and its sealed passwords, as the current code
			// writes them, to copy into the old schema.
			scratch, err := store.Open(ctx, filepath.Join(dir, "scratch.db"), store.NewKeyring(key))
			if err != nil {
				t.Fatal(err)
			}
			r := sampleRotation("Web")
			id, err := scratch.Begin(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if err := scratch.SetState(ctx, id, 0, rotation.StateCommitted, ""); err != nil {
				t.Fatal(err)
			}
			_ = scratch.Close()

			path := filepath.Join(dir, "rotord.db")
			old, err := store.OpenAt(ctx, path, store.NewKeyring(key), v)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := old.SchemaVersion(ctx); err != nil || got != v {
				t.Fatalf("schema version %d, %v; want %d", got, err, v)
			}
			_ = old.Close()
			raw := rawSQL(t, path)
			// Before version 3 rotord kept a secret's rows under the name
			// as configured, so one secret could have several spellings;
			// from version 3 on every row is under its canonical key.
			secretsRows := fmt.Sprintf(`INSERT INTO secrets (name, vault_id, next_due, last_rotation_id, last_rotated_at)
					VALUES ('Web', NULL, %d, %d, 1), ('WEB', 77, NULL, NULL, NULL)`, due.UnixNano(), id)
			leaseRows := `INSERT INTO leases (secret, holder, acquired_at, expires_at) VALUES ('Web', 'gone', 1, 2), ('WEB', 'gone', 1, 3)`
			spellA, spellB := "Web", "WEB"
			if v >= 3 {
				spellA, spellB = "web", "web"
				secretsRows = fmt.Sprintf(`INSERT INTO secrets (name, vault_id, next_due, last_rotation_id, last_rotated_at)
					VALUES ('web', 77, %d, %d, 1)`, due.UnixNano(), id)
				leaseRows = `INSERT INTO leases (secret, holder, acquired_at, expires_at) VALUES ('web', 'gone', 1, 3)`
			}
			stmts := []string{
				`ATTACH DATABASE '` + filepath.Join(dir, "scratch.db") + `' AS s`,
				secretsRows,
				`INSERT INTO rotations (id, secret, secret_id, username, kind, state, error, rollback_of, started_at, updated_at)
					SELECT id, '` + spellA + `', secret_id, username, kind, state, error, rollback_of, started_at, updated_at FROM s.rotations`,
				`INSERT INTO rotation_hosts (rotation_id, host, position, name, port, state, attempts, last_error, updated_at)
					SELECT rotation_id, host, position, name, port, state, attempts, last_error, updated_at FROM s.rotation_hosts`,
				`INSERT INTO sealed_passwords SELECT * FROM s.sealed_passwords`,
				leaseRows,
			}
			if v >= 2 {
				stmts = append(stmts, `INSERT INTO audit_events (at, secret, actor, action) VALUES (1, '`+spellB+`', 'test', 'rotate')`)
			}
			for _, q := range stmts {
				if _, err := raw.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			_ = raw.Close()

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
			if vid, ok, err := db.SecretID(ctx, "wEb"); err != nil || !ok || vid != 77 {
				t.Errorf("secret id after upgrade: %d %v %v", vid, ok, err)
			}
			if at, ok, err := db.NextDue(ctx, "WEB"); err != nil || !ok || !at.Equal(due) {
				t.Errorf("next due after upgrade: %v %v %v, want %v", at, ok, err, due)
			}
			hist, err := db.History(ctx, rotation.HistoryQuery{Secret: "WEB"})
			if err != nil || len(hist) != 1 {
				t.Errorf("history after upgrade: %v, %v", hist, err)
			}
			if v >= 2 {
				if ev, err := db.AuditLog(ctx, store.AuditQuery{Secret: "Web"}); err != nil || len(ev) != 1 {
					t.Errorf("audit log after upgrade: %v, %v", ev, err)
				}
			}
			if err := db.Audit(ctx, rotation.Event{Secret: "web", Actor: "test", Action: "migrate"}); err != nil {
				t.Errorf("audit after upgrade: %v", err)
			}
			// One lease for the secret, free (both old ones expired).
			if _, err := db.Acquire(ctx, "web", "new", time.Minute); err != nil {
				t.Errorf("acquire after upgrade: %v", err)
			}
			if _, err := db.Acquire(ctx, "Web", "other", time.Minute); err == nil {
				t.Errorf("a second holder got the lease under another spelling")
			}
			var rows int
			check := rawSQL(t, path)
			if err := check.QueryRow(`SELECT (SELECT count(*) FROM secrets) + (SELECT count(*) FROM leases)`).Scan(&rows); err != nil || rows != 2 {
				t.Errorf("secrets and leases rows after upgrade: %d, %v; want one of each", rows, err)
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
