package store

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
)

// SQLite compiles the text of a statement on every execution unless the
// compiled statement is kept, and compiling was a fifth of the bridge's CPU
// per relayed message. database/sql cannot keep them for the store: a
// statement prepared inside a transaction belongs to that transaction and
// is closed with it, and nearly every statement of the store runs inside
// one. So each SQLite connection keeps its own compiled statements, keyed by
// their text, in a small LRU: statementConn. Nothing above the driver
// changes; a statement whose compiled form is in use (its rows still open)
// runs uncached, as before.

// stmtConnector opens SQLite connections that keep up to size compiled
// statements each.
type stmtConnector struct {
	driver.Connector
	size int
}

func (c stmtConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, err := newStatementConn(conn, c.size)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return sc, nil
}

// sqliteConn is what statementConn needs of the driver's connection.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// statementConn is one SQLite connection with its compiled statements. Like
// every driver connection it is used by one goroutine at a time
// (database/sql holds the connection's lock around each call), so it needs
// no lock of its own.
type statementConn struct {
	sqliteConn
	size  int
	order *list.List // of *cachedStmt, most recently used first
	stmts map[string]*list.Element

	// hits and misses count executions that reused a compiled statement
	// and those that compiled one (kept or not), for tests.
	hits, misses int
}

type cachedStmt struct {
	query string
	stmt  driver.Stmt
	// busy: rows of this statement are open, so it cannot run again until
	// they close. evicted: it left the cache while busy; close it then.
	busy, evicted bool
}

func newStatementConn(conn driver.Conn, size int) (*statementConn, error) {
	sc, ok := conn.(sqliteConn)
	if !ok {
		return nil, fmt.Errorf("store: sqlite connection %T lacks the driver interfaces the statement cache needs", conn)
	}
	return &statementConn{sqliteConn: sc, size: size, order: list.New(), stmts: map[string]*list.Element{}}, nil
}

// statement returns the kept statement for query, compiling and keeping it
// on first use; nil when it is in use (the caller runs query uncached).
func (c *statementConn) statement(ctx context.Context, query string) (*cachedStmt, error) {
	if el, ok := c.stmts[query]; ok {
		cs := el.Value.(*cachedStmt)
		if cs.busy {
			c.misses++
			return nil, nil
		}
		c.order.MoveToFront(el)
		c.hits++
		return cs, nil
	}
	c.misses++
	st, err := c.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	cs := &cachedStmt{query: query, stmt: st}
	c.stmts[query] = c.order.PushFront(cs)
	for c.order.Len() > c.size {
		old := c.order.Back()
		c.order.Remove(old)
		o := old.Value.(*cachedStmt)
		delete(c.stmts, o.query)
		if o.busy {
			o.evicted = true
		} else if err := o.stmt.Close(); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

func (c *statementConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	cs, err := c.statement(ctx, query)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	return cs.stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (c *statementConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	cs, err := c.statement(ctx, query)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := cs.stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	sr, ok := rows.(sqliteRows)
	if !ok {
		_ = rows.Close()
		return nil, fmt.Errorf("store: sqlite rows %T lack the column type interfaces the statement cache passes on", rows)
	}
	cs.busy = true
	return &cachedRows{sqliteRows: sr, cs: cs}, nil
}

// Close closes every kept statement, then the connection.
func (c *statementConn) Close() error {
	var errs []error
	for el := c.order.Front(); el != nil; el = el.Next() {
		errs = append(errs, el.Value.(*cachedStmt).stmt.Close())
	}
	c.order.Init()
	clear(c.stmts)
	return errors.Join(append(errs, c.sqliteConn.Close())...)
}

// sqliteRows is what the driver's rows offer (gorm reads column types).
type sqliteRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeLength
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypePrecisionScale
	driver.RowsColumnTypeScanType
}

// cachedRows frees its statement for the next execution when closed.
type cachedRows struct {
	sqliteRows
	cs *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.sqliteRows.Close()
	r.cs.busy = false
	if r.cs.evicted {
		err = errors.Join(err, r.cs.stmt.Close())
	}
	return err
}
