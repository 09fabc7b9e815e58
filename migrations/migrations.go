// Package migrations holds the versioned SQL schema of the handoff store and
// applies it with goose. It is the only place the schema exists: the store
// never runs gorm's AutoMigrate.
//
// Each dialect has its own folder (postgres/, sqlite/) with the same version
// numbers, so a version means the same schema on both. Files are append-only:
// never edit one that has been merged, add a new version instead.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Dialect names accepted by the functions of this package.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Version is one migration and whether the database has it.
type Version struct {
	Version   int64
	Name      string // file name, e.g. "00001_init.sql"
	Applied   bool
	AppliedAt time.Time // zero when not applied
}

// Up applies every pending migration of dialect to db. It is idempotent. On
// PostgreSQL it holds a session-level advisory lock while it runs (one lock
// per database and schema), so replicas starting together apply each version
// once; the others wait up to five minutes for the lock.
func Up(ctx context.Context, db *sql.DB, dialect string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p, err := newProvider(ctx, db, dialect, logger, true)
	if err != nil {
		return err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrations: up (%s): %w", dialect, err)
	}
	for _, r := range results {
		logger.InfoContext(ctx, "migration applied",
			slog.String("dialect", dialect),
			slog.Int64("version", r.Source.Version),
			slog.String("name", path.Base(r.Source.Path)),
			slog.Duration("duration", r.Duration))
	}
	return nil
}

// Status lists every known migration of dialect, oldest first, with whether
// db has it. It creates goose's version table if it does not exist yet.
func Status(ctx context.Context, db *sql.DB, dialect string) ([]Version, error) {
	p, err := newProvider(ctx, db, dialect, slog.New(slog.DiscardHandler), false)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: status (%s): %w", dialect, err)
	}
	out := make([]Version, 0, len(st))
	for _, s := range st {
		v := Version{Version: s.Source.Version, Name: path.Base(s.Source.Path), Applied: s.State == goose.StateApplied}
		if v.Applied {
			v.AppliedAt = s.AppliedAt.UTC()
		}
		out = append(out, v)
	}
	return out, nil
}

// Current reports whether db has every migration of dialect applied. When it
// has not, reason says what is missing (for an operator: "run handoff
// migrate"). A database that is ahead of this binary (a newer version applied
// by a newer release) counts as current, with reason saying so, because
// migrations only ever add to the schema.
func Current(ctx context.Context, db *sql.DB, dialect string) (ok bool, reason string, err error) {
	vs, err := Status(ctx, db, dialect)
	if err != nil {
		return false, "", err
	}
	var missing []int64
	var latest int64
	for _, v := range vs {
		latest = max(latest, v.Version)
		if !v.Applied {
			missing = append(missing, v.Version)
		}
	}
	if len(missing) > 0 {
		return false, fmt.Sprintf("%d of %d migrations not applied (first missing: version %d); run the migrations",
			len(missing), len(vs), missing[0]), nil
	}
	p, err := newProvider(ctx, db, dialect, slog.New(slog.DiscardHandler), false)
	if err != nil {
		return false, "", err
	}
	dbVersion, err := p.GetDBVersion(ctx)
	if err != nil {
		return false, "", fmt.Errorf("migrations: database version (%s): %w", dialect, err)
	}
	if dbVersion > latest {
		return true, fmt.Sprintf("database is at version %d, newer than this binary's %d", dbVersion, latest), nil
	}
	return true, "", nil
}

// newProvider builds a goose provider for dialect over db; locked adds the
// PostgreSQL session locker.
func newProvider(ctx context.Context, db *sql.DB, dialect string, logger *slog.Logger, locked bool) (*goose.Provider, error) {
	if db == nil {
		return nil, errors.New("migrations: nil database")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var gd goose.Dialect
	switch dialect {
	case SQLite:
		gd = goose.DialectSQLite3
	case Postgres:
		gd = goose.DialectPostgres
	default:
		return nil, fmt.Errorf("migrations: unknown dialect %q (want %q or %q)", dialect, SQLite, Postgres)
	}
	sub, err := fs.Sub(files, dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations: %s files: %w", dialect, err)
	}
	// Version numbers are handed out in ranges to parallel streams of work,
	// so a lower version can be merged after a higher one was applied
	// somewhere: apply it then instead of refusing to start. Each migration
	// must therefore not depend on versions numbered above it.
	opts := []goose.ProviderOption{goose.WithSlog(logger), goose.WithDisableGlobalRegistry(true), goose.WithAllowOutofOrder(true)}
	if locked && dialect == Postgres {
		id, err := lockID(ctx, db)
		if err != nil {
			return nil, err
		}
		locker, err := lock.NewPostgresSessionLocker(
			lock.WithLockID(id),
			lock.WithLockTimeout(1, 300), // probe every second for five minutes
			lock.WithUnlockTimeout(1, 60),
		)
		if err != nil {
			return nil, fmt.Errorf("migrations: session locker: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(gd, db, sub, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrations: provider (%s): %w", dialect, err)
	}
	return p, nil
}

// lockID derives the advisory lock key from the current schema, so that
// deployments (or tests) living in different schemas of one database do not
// wait for each other, while replicas of one deployment share the lock.
func lockID(ctx context.Context, db *sql.DB) (int64, error) {
	var schema sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return 0, fmt.Errorf("migrations: current schema: %w", err)
	}
	if !schema.Valid {
		return 0, errors.New("migrations: no current schema: the search_path names no existing schema")
	}
	h := fnv.New64a()
	h.Write([]byte("handoff-migrations:" + schema.String))
	return int64(h.Sum64() &^ (1 << 63)), nil
}
