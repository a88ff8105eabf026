package store_test

import (
	"database/sql"
	"testing"

	_ "github.com/mattn/go-sqlite3" // the raw view of the database tests tamper with
)

// rawSQL opens the database file directly, bypassing the store, to inspect
// or tamper with rows.
func rawSQL(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=10000&_foreign_keys=off")
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(1) // temp tables live on one connection
	tb.Cleanup(func() { _ = db.Close() })
	return db
}
