// Package migrations holds rotord's database schema as numbered, append-only
// SQL migrations embedded in the binary.
//
// Each file NNNNN_name.sql holds a "-- +goose Up" section (and a "-- +goose
// Down" section for development use); package store applies them with
// pressly/goose. A migration that has been released is never edited: a
// change of schema is a new file with the next number.
//
// The files at the root are written for SQLite and, where their SQL is
// portable (ALTER TABLE ... ADD COLUMN, CREATE INDEX, plain DML), run as
// they are on PostgreSQL too. Where the SQL differs, a file of the same
// name under postgres/ takes its place on PostgreSQL (see FSFor): one
// numbering, one schema version, for both databases.
package migrations

import (
	"embed"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

//go:embed *.sql postgres/*.sql
var files embed.FS

// Dialects FSFor knows.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// FS returns the migration files for SQLite, named NNNNN_name.sql at its
// root.
func FS() fs.FS { return files }

// FSFor returns the migration files for a dialect (SQLite or Postgres),
// named NNNNN_name.sql at its root: those of FS, each replaced by the
// dialect's own file of the same name where there is one.
func FSFor(dialect string) fs.FS {
	if dialect == SQLite {
		return FS()
	}
	return overlay{base: files, dir: dialect}
}

// overlay opens dir/NAME instead of NAME when dir has it.
type overlay struct {
	base fs.FS
	dir  string
}

// Open opens the dialect's file of that name, else the root's.
func (o overlay) Open(name string) (fs.File, error) {
	if fs.ValidPath(name) && !strings.Contains(name, "/") && name != "." {
		if f, err := o.base.Open(path.Join(o.dir, name)); err == nil {
			return f, nil
		}
	}
	return o.base.Open(name)
}

// Glob matches pattern at the root (the dialect's files bear the same
// names as the ones they replace).
func (o overlay) Glob(pattern string) ([]string, error) { return fs.Glob(o.base, pattern) }

// Latest returns the highest schema version the embedded migrations reach.
func Latest() int64 {
	var latest int64
	names, _ := fs.Glob(files, "*.sql") // the pattern is valid; Glob cannot fail
	for _, name := range names {
		v, ok := Version(name)
		if ok && v > latest {
			latest = v
		}
	}
	return latest
}

// Version returns the version number a migration file name starts with.
func Version(name string) (int64, bool) {
	num, _, ok := strings.Cut(path.Base(name), "_")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 1 {
		return 0, false
	}
	return v, true
}
