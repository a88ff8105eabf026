package store

import (
	"context"
	"database/sql"
	"sync/atomic"

	"gorm.io/gorm"

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

// CountRoundTrips makes db add to n one for every request it sends the
// database from now on through its journal's statements: each statement,
// each BEGIN, COMMIT and ROLLBACK.
func (db *DB) CountRoundTrips(n *atomic.Int64) {
	db.gdb.Statement.ConnPool = &countingPool{pool: db.gdb.Statement.ConnPool, n: n}
}

// countingPool counts what goes through a gorm connection pool.
type countingPool struct {
	pool gorm.ConnPool
	n    *atomic.Int64
}

func (p *countingPool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	p.n.Add(1)
	return p.pool.PrepareContext(ctx, query)
}

func (p *countingPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	p.n.Add(1)
	return p.pool.ExecContext(ctx, query, args...)
}

func (p *countingPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	p.n.Add(1)
	return p.pool.QueryContext(ctx, query, args...)
}

func (p *countingPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	p.n.Add(1)
	return p.pool.QueryRowContext(ctx, query, args...)
}

// BeginTx starts a counted transaction (gorm's ConnPoolBeginner).
func (p *countingPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	b, ok := p.pool.(gorm.TxBeginner)
	if !ok {
		return nil, gorm.ErrInvalidTransaction
	}
	p.n.Add(1)
	tx, err := b.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &countingTx{countingPool: countingPool{pool: tx, n: p.n}, tx: tx}, nil
}

// GetDBConn returns the pool's database (gorm's GetDBConnector).
func (p *countingPool) GetDBConn() (*sql.DB, error) {
	if d, ok := p.pool.(*sql.DB); ok {
		return d, nil
	}
	return nil, gorm.ErrInvalidDB
}

// countingTx is a counted transaction.
type countingTx struct {
	countingPool
	tx *sql.Tx
}

func (t *countingTx) Commit() error   { t.n.Add(1); return t.tx.Commit() }
func (t *countingTx) Rollback() error { t.n.Add(1); return t.tx.Rollback() }

// LatestSchemaVersion returns the schema version this binary migrates to.
func LatestSchemaVersion() int64 { return migrations.Latest() }
