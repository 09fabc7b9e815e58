// Package storetest gives tests and benchmarks a PostgreSQL schema of their
// own in the test database, so packages that run in parallel never share
// tables.
package storetest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx" for the admin connection
)

// EnvDatabaseURL names the variable that holds the test database's URL,
// e.g. postgres://postgres@127.0.0.1:5432/handoff_ci?sslmode=disable.
const EnvDatabaseURL = "HANDOFF_TEST_DATABASE_URL"

// DatabaseURL returns the test database's URL, or skips tb when
// EnvDatabaseURL is unset; under CI=true an unset variable fails tb instead,
// because CI must not skip the PostgreSQL tests silently.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvDatabaseURL)
	if u == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not set; CI must test PostgreSQL", EnvDatabaseURL)
		}
		tb.Skipf("set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to test PostgreSQL", EnvDatabaseURL)
	}
	return u
}

// Databases names the databases a test or benchmark runs against: "sqlite"
// always, then "postgres" when EnvDatabaseURL is set.
func Databases() []string {
	if os.Getenv(EnvDatabaseURL) == "" {
		return []string{"sqlite"}
	}
	return []string{"sqlite", "postgres"}
}

// Schema creates a schema named prefix_<12 hex digits> in the database of
// base and returns base with its search_path set to that schema. The schema
// is dropped, with everything in it, when tb ends.
func Schema(tb testing.TB, base, prefix string) string {
	tb.Helper()
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("storetest: database URL: %v", err)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatalf("storetest: open %s: %v", u.Redacted(), err)
	}
	tb.Cleanup(func() { _ = admin.Close() })
	p := make([]byte, 6)
	_, _ = rand.Read(p)
	schema := prefix + "_" + hex.EncodeToString(p)
	if _, err := admin.ExecContext(tb.Context(), "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("storetest: create schema %s in %s: %v", schema, u.Redacted(), err)
	}
	tb.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			tb.Errorf("storetest: drop schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
