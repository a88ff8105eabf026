package store

import (
	"context"

	"github.com/rotord/rotord/migrations"
)

// OpenAt opens the database at path and migrates it up to version only,
// so tests can build databases of every earlier schema.
func OpenAt(ctx context.Context, path string, keys *Keyring, version int64, opts ...Option) (*DB, error) {
	db, err := open(ctx, path, keys, opts)
	if err != nil {
		return nil, err
	}
	if _, _, err := db.migrateTo(ctx, version); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// LatestSchemaVersion returns the schema version this binary migrates to.
func LatestSchemaVersion() int64 { return migrations.Latest() }
