package migrations_test

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/rotord/rotord/migrations"
)

// TestFiles checks the naming and numbering rules that keep migrations
// append-only: NNNNN_name.sql, versions 1..n without gaps, each with an Up
// section.
func TestFiles(t *testing.T) {
	names, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 2 {
		t.Fatalf("got %d migrations, want at least 2", len(names))
	}
	pattern := regexp.MustCompile(`^[0-9]{5}_[a-z0-9_]+\.sql$`)
	for i, name := range names {
		if !pattern.MatchString(name) {
			t.Errorf("%s: name is not NNNNN_name.sql", name)
		}
		v, ok := migrations.Version(name)
		if !ok || v != int64(i+1) {
			t.Errorf("%s: version %d, want %d (no gaps, no duplicates)", name, v, i+1)
		}
		b, err := fs.ReadFile(migrations.FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "-- +goose Up") {
			t.Errorf("%s: no -- +goose Up section", name)
		}
	}
	if got := migrations.Latest(); got != int64(len(names)) {
		t.Errorf("Latest() = %d, want %d", got, len(names))
	}
}

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int64
		ok   bool
	}{
		{"00001_init.sql", 1, true},
		{"00042_x.sql", 42, true},
		{"init.sql", 0, false},
		{"x_init.sql", 0, false},
		{"00000_zero.sql", 0, false},
	} {
		v, ok := migrations.Version(tc.name)
		if v != tc.want || ok != tc.ok {
			t.Errorf("Version(%q) = %d, %v; want %d, %v", tc.name, v, ok, tc.want, tc.ok)
		}
	}
}

// A dialect's own file only ever replaces a numbered file of the same
// name: the numbering stays one for both databases.
func TestDialectFiles(t *testing.T) {
	own, err := fs.Glob(migrations.FS(), "postgres/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(own) == 0 {
		t.Fatal("no PostgreSQL files")
	}
	pg := migrations.FSFor(migrations.Postgres)
	for _, name := range own {
		base := strings.TrimPrefix(name, "postgres/")
		if _, err := fs.Stat(migrations.FS(), base); err != nil {
			t.Errorf("%s replaces no file of the same name: %v", name, err)
		}
		want, _ := fs.ReadFile(migrations.FS(), name)
		got, err := fs.ReadFile(pg, base)
		if err != nil || string(got) != string(want) {
			t.Errorf("FSFor(postgres) opens %s not as %s: %v", base, name, err)
		}
	}
	rootNames, _ := fs.Glob(migrations.FS(), "*.sql")
	pgNames, _ := fs.Glob(pg, "*.sql")
	if strings.Join(rootNames, ",") != strings.Join(pgNames, ",") {
		t.Errorf("PostgreSQL lists %v, SQLite %v", pgNames, rootNames)
	}
	sqlite, _ := fs.ReadFile(migrations.FSFor(migrations.SQLite), "00001_init.sql")
	if !strings.Contains(string(sqlite), "STRICT") {
		t.Error("FSFor(sqlite) does not open the SQLite file")
	}
}
