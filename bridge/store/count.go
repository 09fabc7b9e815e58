package store

import (
	"context"
	"database/sql"
	"sync/atomic"

	"gorm.io/gorm"
)

// Counts is what the store has sent to its database since Open: a number
// that does not depend on the machine's load, unlike the time it took, so
// tests can bound the statements and commits a relayed message costs.
type Counts struct {
	// Statements counts the statements the store executed (queries and
	// writes alike, inside a transaction or not); BEGIN, COMMIT and ROLLBACK
	// are not among them.
	Statements int64
	// Transactions counts the transactions begun, read-only ones included;
	// Commits those committed, and ReadOnlyCommits the read-only ones among
	// those (no write, no fsync).
	Transactions    int64
	Commits         int64
	ReadOnlyCommits int64
}

// Sub returns c minus o.
func (c Counts) Sub(o Counts) Counts {
	return Counts{
		Statements:      c.Statements - o.Statements,
		Transactions:    c.Transactions - o.Transactions,
		Commits:         c.Commits - o.Commits,
		ReadOnlyCommits: c.ReadOnlyCommits - o.ReadOnlyCommits,
	}
}

// Counts returns what the store has sent to its database since Open.
func (s *Store) Counts() Counts {
	c := s.counter
	return Counts{
		Statements:      c.statements.Load(),
		Transactions:    c.transactions.Load(),
		Commits:         c.commits.Load(),
		ReadOnlyCommits: c.readOnlyCommits.Load(),
	}
}

type counter struct {
	statements, transactions, commits, readOnlyCommits atomic.Int64
}

// countPool is a gorm connection pool that counts what passes through it
// (Store.Counts). It is not a transaction itself: gorm takes a pool that
// can commit for an open transaction and would nest instead of beginning.
type countPool struct {
	*sql.DB
	c *counter
}

// countPoolOf installs a countPool under gdb, counting into c.
func countPoolOf(gdb *gorm.DB, c *counter) {
	db, ok := gdb.ConnPool.(*sql.DB)
	if !ok {
		return // not a plain pool: left uncounted
	}
	p := countPool{DB: db, c: c}
	gdb.ConnPool = p
	gdb.Statement.ConnPool = p
}

func (p countPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	p.c.statements.Add(1)
	return p.DB.ExecContext(ctx, query, args...)
}

func (p countPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	p.c.statements.Add(1)
	return p.DB.QueryContext(ctx, query, args...)
}

func (p countPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	p.c.statements.Add(1)
	return p.DB.QueryRowContext(ctx, query, args...)
}

// GetDBConn lets gorm's DB() find the pool.
func (p countPool) GetDBConn() (*sql.DB, error) { return p.DB, nil }

// BeginTx makes countPool a gorm.ConnPoolBeginner.
func (p countPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	tx, err := p.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	p.c.transactions.Add(1)
	return &countTx{Tx: tx, c: p.c, readOnly: opts != nil && opts.ReadOnly}, nil
}

// countTx is one transaction of a countPool.
type countTx struct {
	*sql.Tx
	c        *counter
	readOnly bool
}

func (t *countTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	t.c.statements.Add(1)
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *countTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	t.c.statements.Add(1)
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *countTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	t.c.statements.Add(1)
	return t.Tx.QueryRowContext(ctx, query, args...)
}

func (t *countTx) Commit() error {
	if err := t.Tx.Commit(); err != nil {
		return err
	}
	t.c.commits.Add(1)
	if t.readOnly {
		t.c.readOnlyCommits.Add(1)
	}
	return nil
}
