package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
	"github.com/rotord/rotord/store"
)

// History fixture: benchRotations rotations of benchSecrets secrets, three
// hosts each. Sealed passwords are left out: History never reads them.
const (
	benchRotations = 1_000_000
	benchSecrets   = 200
	benchFixture   = 1 // bump when the fixture's shape changes
)

// historyFixture returns the path of a database holding the benchmark's
// rotations, building it on first use and caching it in the temporary
// directory across runs (the benchmark only reads it).
func historyFixture(b *testing.B) string {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("rotord-bench-history-s%d-f%d.db", store.LatestSchemaVersion(), benchFixture))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	ctx := context.Background()
	start := time.Now()
	tmp := filepath.Join(b.TempDir(), "fixture.db")
	if _, _, err := store.Migrate(ctx, tmp); err != nil {
		b.Fatal(err)
	}
	raw := rawSQL(b, tmp)
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for _, q := range []string{
		`BEGIN`,
		fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < %d)
			INSERT INTO secrets (name, vault_id) SELECT 'secret-' || i, 1000 + i FROM n`, benchSecrets),
		fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO rotations (id, secret, secret_id, username, kind, state, error, started_at, updated_at)
			SELECT i, 'secret-' || (i %% %d), 1000 + i %% %d, 'root', 'rotate',
				CASE WHEN i %% 50 = 0 THEN 'rolled-back' ELSE 'committed' END,
				CASE WHEN i %% 50 = 0 THEN 'web1.example: rejected-by-policy' ELSE '' END,
				%d + i * 60000000000, %d + i * 60000000000 + 30000000000 FROM n`,
			benchRotations, benchSecrets, benchSecrets, base, base),
		`INSERT INTO rotation_hosts (rotation_id, host, position, name, port, state, attempts, last_error, updated_at)
			SELECT r.id, 'web' || h.k || '.example', h.k, 'web' || h.k || '.example', 0, 'changed', 1, '', r.updated_at
			FROM rotations r, (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2) h ORDER BY r.id, h.k`,
		`COMMIT`,
		`PRAGMA wal_checkpoint(TRUNCATE)`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	if err := raw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built history fixture %s in %s", path, time.Since(start).Round(time.Millisecond))
	return path
}

// BenchmarkHistory measures one page of 50 rotations, with their hosts,
// out of a million: newest and deep in the list, for all secrets and for
// one. The target is well under 20 ms per page.
func BenchmarkHistory(b *testing.B) {
	ctx := context.Background()
	db, err := store.Open(ctx, historyFixture(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, bc := range []struct {
		name string
		q    rotation.HistoryQuery
	}{
		{"Global/Newest", rotation.HistoryQuery{Limit: 50}},
		{"Global/Deep", rotation.HistoryQuery{Limit: 50, BeforeID: benchRotations / 2}},
		{"Secret/Newest", rotation.HistoryQuery{Secret: "secret-7", Limit: 50}},
		{"Secret/Deep", rotation.HistoryQuery{Secret: "secret-7", Limit: 50, BeforeID: 1000}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				rs, err := db.History(ctx, bc.q)
				if err != nil {
					b.Fatal(err)
				}
				want := 50
				if bc.name == "Secret/Deep" {
					want = 1000 / benchSecrets // ids 7, 207, ... below 1000
				}
				if len(rs) != want || len(rs[0].Hosts) != 3 {
					b.Fatalf("%d rotations, want %d", len(rs), want)
				}
			}
		})
	}
}

// BenchmarkBegin measures journaling one rotation with three hosts: sealing
// both passwords and one durable (fsynced) transaction.
func BenchmarkBegin(b *testing.B) {
	ctx := context.Background()
	db, _ := mustOpen(b)
	r := sampleRotation("web")
	for b.Loop() {
		if _, err := db.Begin(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}
