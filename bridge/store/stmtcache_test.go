package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modernc.org/sqlite"

	"github.com/handoffhq/handoff/bridge"
)

// openCachePool opens a one-connection pool whose connection keeps size
// statements, with a table t(n) holding 1..3.
func openCachePool(t *testing.T, size int) (*sql.Conn, *statementConn) {
	t.Helper()
	c, err := sqlite.NewConnector(filepath.Join(t.TempDir(), "cache.db"))
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(stmtConnector{Connector: c, size: size})
	t.Cleanup(func() { _ = db.Close() })
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	for _, q := range []string{"CREATE TABLE t (n INTEGER)", "INSERT INTO t VALUES (1), (2), (3)"} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	var sc *statementConn
	if err := conn.Raw(func(dc any) error { sc = dc.(*statementConn); return nil }); err != nil {
		t.Fatal(err)
	}
	// Forget the setup's statements.
	for el := sc.order.Front(); el != nil; el = el.Next() {
		_ = el.Value.(*cachedStmt).stmt.Close()
	}
	sc.order.Init()
	clear(sc.stmts)
	sc.hits, sc.misses = 0, 0
	return conn, sc
}

func sumWhere(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) (int, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	sum := 0
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, rows.Err()
}

func TestStatementCache(t *testing.T) {
	const above = "SELECT n FROM t WHERE n > ?"
	tests := []struct {
		name         string
		size         int
		run          func(t *testing.T, conn *sql.Conn)
		hits, misses int
		kept         []string
	}{
		{
			name: "a statement run again, in and out of transactions, is compiled once",
			size: 8,
			run: func(t *testing.T, conn *sql.Conn) {
				for i := range 3 {
					tx, err := conn.BeginTx(t.Context(), nil)
					if err != nil {
						t.Fatal(err)
					}
					if got, err := sumWhere(t.Context(), tx, above, i); err != nil || got != []int{6, 5, 3}[i] {
						t.Fatalf("run %d: sum %d, %v", i, got, err)
					}
					if _, err := tx.ExecContext(t.Context(), "UPDATE t SET n = n WHERE n = ?", i); err != nil {
						t.Fatal(err)
					}
					if err := tx.Commit(); err != nil {
						t.Fatal(err)
					}
				}
				if got, err := sumWhere(t.Context(), conn, above, 0); err != nil || got != 6 {
					t.Fatalf("outside a transaction: sum %d, %v", got, err)
				}
			},
			// BEGIN/COMMIT are the driver's own; the two statements compile once each.
			hits: 5, misses: 2, kept: []string{"UPDATE t SET n = n WHERE n = ?", above},
		},
		{
			name: "the same statement with its rows still open runs uncached and both read right",
			size: 8,
			run: func(t *testing.T, conn *sql.Conn) {
				outer, err := conn.QueryContext(t.Context(), above, 1)
				if err != nil {
					t.Fatal(err)
				}
				var seen []int
				for outer.Next() {
					var n int
					if err := outer.Scan(&n); err != nil {
						t.Fatal(err)
					}
					seen = append(seen, n)
					// database/sql lets a second query run on the same
					// connection only through the driver; use Raw for it.
					if err := conn.Raw(func(dc any) error {
						rows, err := dc.(*statementConn).QueryContext(t.Context(), above, []driver.NamedValue{{Ordinal: 1, Value: int64(0)}})
						if err != nil {
							return err
						}
						return rows.Close()
					}); err != nil {
						t.Fatal(err)
					}
				}
				if err := outer.Close(); err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(seen) != "[2 3]" {
					t.Fatalf("outer rows read %v, want [2 3]: the inner run disturbed them", seen)
				}
				if got, err := sumWhere(t.Context(), conn, above, 2); err != nil || got != 3 {
					t.Fatalf("after: sum %d, %v", got, err)
				}
			},
			hits: 1, misses: 3, kept: []string{above},
		},
		{
			name: "the least recently used statement is dropped beyond the size, even while its rows are open",
			size: 2,
			run: func(t *testing.T, conn *sql.Conn) {
				open, err := conn.QueryContext(t.Context(), "SELECT n FROM t WHERE n = ?", 1)
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range []string{"SELECT n FROM t WHERE n = 2", "SELECT n FROM t WHERE n = 3"} {
					if err := conn.Raw(func(dc any) error {
						rows, err := dc.(*statementConn).QueryContext(t.Context(), q, nil)
						if err != nil {
							return err
						}
						return rows.Close()
					}); err != nil {
						t.Fatal(err)
					}
				}
				var n int
				if !open.Next() || open.Scan(&n) != nil || n != 1 {
					t.Fatalf("the evicted statement's open rows read %d, want 1", n)
				}
				if err := open.Close(); err != nil {
					t.Fatalf("closing the rows of an evicted statement: %v", err)
				}
			},
			hits: 0, misses: 3, kept: []string{"SELECT n FROM t WHERE n = 2", "SELECT n FROM t WHERE n = 3"},
		},
		{
			name: "a statement that does not compile is reported and not kept",
			size: 8,
			run: func(t *testing.T, conn *sql.Conn) {
				_, err := conn.ExecContext(t.Context(), "UPDATE nosuch SET n = 1")
				if err == nil || !strings.Contains(err.Error(), "nosuch") {
					t.Fatalf("got %v, want the driver's error naming the table", err)
				}
			},
			hits: 0, misses: 1, kept: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, sc := openCachePool(t, tt.size)
			tt.run(t, conn)
			var kept []string // least recently used first
			for el := sc.order.Back(); el != nil; el = el.Prev() {
				kept = append(kept, el.Value.(*cachedStmt).query)
			}
			if sc.hits != tt.hits || sc.misses != tt.misses || fmt.Sprint(kept) != fmt.Sprint(tt.kept) {
				t.Errorf("hits %d misses %d kept %q; want %d, %d, %q", sc.hits, sc.misses, kept, tt.hits, tt.misses, tt.kept)
			}
		})
	}
}

// TestStoreReusesStatements: the store's own transactions (claims of an
// empty outbox) compile each statement once per connection.
func TestStoreReusesStatements(t *testing.T) {
	s := openSQLite(t)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	run := func() {
		for range 20 {
			if _, err := s.ClaimOutbox(t.Context(), bridge.ClaimRequest{Now: time.Now(), Limit: 5, Lease: time.Minute, Owner: "test"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	run()
	var sc *statementConn
	conn, err := s.sqlDB.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Raw(func(dc any) error { sc = dc.(*statementConn); return nil }); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	h0, m0 := sc.hits, sc.misses
	run()
	if sc.misses != m0 || sc.hits <= h0 {
		t.Fatalf("20 more claims: %d new compilations, %d reuses; want 0 and more than 0", sc.misses-m0, sc.hits-h0)
	}
}
