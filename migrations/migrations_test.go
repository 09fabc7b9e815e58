package migrations

import (
	"database/sql"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	_ "modernc.org/sqlite"             // driver "sqlite"

	"github.com/handoffhq/handoff/bridge/store/storetest"
)

func openSQLite(t *testing.T) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.db")
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// openPostgres returns a pool whose search_path is a fresh schema, dropped
// when the test ends.
func openPostgres(t *testing.T) *sql.DB {
	t.Helper()
	u := storetest.Schema(t, storetest.DatabaseURL(t), "t_mig")
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	testDialect(t, openSQLite(t), SQLite)
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	testDialect(t, openPostgres(t), Postgres)
}

func testDialect(t *testing.T, db *sql.DB, dialect string) {
	ctx := t.Context()

	ok, reason, err := Current(ctx, db, dialect)
	if err != nil || ok || !strings.Contains(reason, "not applied") {
		t.Fatalf("Current on an empty database = %v, %q, %v; want false, a reason, nil", ok, reason, err)
	}
	for i := range 2 { // the second run must be a no-op
		if err := Up(ctx, db, dialect, nil); err != nil {
			t.Fatalf("Up #%d: %v", i+1, err)
		}
	}
	vs, err := Status(ctx, db, dialect)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 || vs[0].Version != 1 || vs[0].Name != "00001_init.sql" {
		t.Fatalf("Status = %+v, want version 1 00001_init.sql first", vs)
	}
	for _, v := range vs {
		if !v.Applied || v.AppliedAt.IsZero() {
			t.Errorf("version %d: Applied=%v AppliedAt=%v, want applied with a time", v.Version, v.Applied, v.AppliedAt)
		}
	}
	if ok, reason, err := Current(ctx, db, dialect); err != nil || !ok || reason != "" {
		t.Fatalf("Current after Up = %v, %q, %v; want true, \"\", nil", ok, reason, err)
	}
	for _, table := range []string{"sessions", "messages", "conversation_refs", "cursors", "outbox", "review_records"} {
		if _, err := db.ExecContext(ctx, "SELECT COUNT(*) FROM "+table); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}

	// The Down sections must undo everything so that Up works again.
	p, err := newProvider(ctx, db, dialect, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down to 0: %v", err)
	}
	if _, err := db.ExecContext(ctx, "SELECT COUNT(*) FROM sessions"); err == nil {
		t.Error("sessions still exists after down")
	}
	if ok, _, err := Current(ctx, db, dialect); err != nil || ok {
		t.Errorf("Current after down = %v, %v; want false, nil", ok, err)
	}
	if err := Up(ctx, db, dialect, nil); err != nil {
		t.Fatalf("Up after down: %v", err)
	}
}

// Replicas starting together: every Up succeeds and each version is applied
// once (the advisory lock serializes them).
func TestPostgresConcurrentUp(t *testing.T) {
	t.Parallel()
	db := openPostgres(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- Up(t.Context(), db, Postgres, nil) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Up: %v", err)
		}
	}
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM goose_db_version WHERE version_id = 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("version 1 recorded %d times, want 1", n)
	}
}

func TestUnknownDialect(t *testing.T) {
	t.Parallel()
	err := Up(t.Context(), openSQLite(t), "mysql", nil)
	if err == nil || !strings.Contains(err.Error(), `"sqlite"`) || !strings.Contains(err.Error(), `"postgres"`) {
		t.Fatalf("Up with dialect mysql = %v, want an error naming sqlite and postgres", err)
	}
}

// Both dialects must carry the same versions: a version means one schema.
func TestDialectsHaveSameVersions(t *testing.T) {
	t.Parallel()
	names := func(dir string) []string {
		entries, err := fs.ReadDir(files, dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	pg, lite := names(Postgres), names(SQLite)
	if !slices.Equal(pg, lite) || len(pg) == 0 {
		t.Fatalf("postgres has %v, sqlite has %v; want the same non-empty list", pg, lite)
	}
}
