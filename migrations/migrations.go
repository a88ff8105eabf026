// Package migrations holds rotord's database schema as numbered, append-only
// SQL migrations embedded in the binary.
//
// Each file NNNNN_name.sql holds a "-- +goose Up" section (and a "-- +goose
// Down" section for development use); package store applies them with
// pressly/goose. A migration that has been released is never edited: a
// change of schema is a new file with the next number.
package migrations

import (
	"embed"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

//go:embed *.sql
var files embed.FS

// FS returns the migration files, named NNNNN_name.sql at its root.
func FS() fs.FS { return files }

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
