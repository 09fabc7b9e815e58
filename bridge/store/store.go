// Package store is the bridge's durable storage: one gorm implementation of
// bridge.Store for SQLite (pure Go driver, no cgo) and PostgreSQL.
//
// The schema lives only in the versioned SQL of package migrations; call
// Migrate (or the migrate subcommand) before use. The store never runs
// AutoMigrate.
//
// Conventions of the tables:
//   - Every time is a BIGINT of Unix milliseconds. Times are therefore stored
//     with millisecond precision and come back in UTC; the zero time.Time is
//     stored as 0 (so the instant 1970-01-01T00:00:00Z reads back as zero).
//   - Row structs (rows.go) are separate from the domain types; updates name
//     their columns (maps) so zero values are written too.
//
// SQLite: the database is opened in WAL mode with one writer connection
// (busy_timeout, foreign keys on, IMMEDIATE transactions, synchronous=FULL:
// a commit is fsynced to the WAL before Update returns, so an acknowledged
// webhook or activity survives a power loss), so all writes are serialized,
// and a separate read-only pool of a few connections for View and the review
// streams: in
// WAL mode a reader never waits for the writer nor the writer for a reader,
// so a slow export does not stall the relay. Inside Store.Update only the Tx
// may be used. sqlite::memory: has no read pool (the database lives in the
// one connection): there, View and the streams share the writer and their
// callbacks may not use the Store. More than one dispatcher worker gains
// nothing on SQLite. Extra driver parameters may be appended to the URL, e.g.
// sqlite:handoff.db?_pragma=synchronous(NORMAL) to trade durability on power
// loss (not on a crash of the process) for commit speed: a URL that names
// synchronous keeps its own setting.
//
// PostgreSQL: several replicas may share the database. Outbox items are
// claimed with FOR UPDATE SKIP LOCKED, and enqueuers of one lane are serialized
// by a transaction-level advisory lock so that outbox ids of a lane follow
// commit order (the claim relies on id order).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	gormsqlite "github.com/libtnb/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"modernc.org/sqlite"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/migrations"
)

// Dialect names, as returned by Store.Dialect.
const (
	DialectSQLite   = migrations.SQLite
	DialectPostgres = migrations.Postgres
)

// Store implements bridge.Store on SQLite or PostgreSQL. It is safe for
// concurrent use.
type Store struct {
	db    *gorm.DB
	sqlDB *sql.DB
	// rdb is the read-only pool of a SQLite file database (nil otherwise:
	// reads use db). In WAL mode its readers never wait for the writer and
	// the writer never waits for them.
	rdb     *gorm.DB
	rsqlDB  *sql.DB
	dialect string
	logger  *slog.Logger
	now     func() time.Time // bookkeeping times (updated_at) only
	counter *counter         // what the pools sent (Counts)
}

var _ bridge.Store = (*Store)(nil)

// Open connects to databaseURL, one of
//
//	sqlite:<path>       e.g. sqlite:handoff.db, sqlite:/var/lib/handoff/handoff.db
//	sqlite::memory:     a private in-memory database (lost on Close)
//	postgres://…        or postgresql://…, any URL pgx accepts
//
// and checks that the database answers. It does not migrate: call Migrate.
func Open(ctx context.Context, databaseURL string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var (
		dialector gorm.Dialector
		dialect   string
	)
	switch {
	case strings.HasPrefix(databaseURL, "sqlite:"):
		dsn, err := sqliteDSN(strings.TrimPrefix(databaseURL, "sqlite:"), false)
		if err != nil {
			return nil, err
		}
		db, err := openSQLitePool(dsn)
		if err != nil {
			return nil, err
		}
		dialector, dialect = gormsqlite.New(gormsqlite.Config{Conn: db}), DialectSQLite
	case strings.HasPrefix(databaseURL, "postgres://"), strings.HasPrefix(databaseURL, "postgresql://"):
		dialector, dialect = postgres.Open(databaseURL), DialectPostgres
	default:
		return nil, fmt.Errorf("store: open: unsupported database URL %q: want sqlite:<path>, sqlite::memory: or postgres://user@host/db",
			redactURL(databaseURL))
	}
	gdb, err := gorm.Open(dialector, gormConfig(logger))
	if err != nil {
		return nil, fmt.Errorf("store: open %s database: %w", dialect, err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		return nil, fmt.Errorf("store: open %s database: %w", dialect, err)
	}
	if dialect == DialectSQLite {
		// One connection: SQLite has one writer anyway, and a private
		// :memory: database exists only as long as its connection.
		sqlDB.SetMaxOpenConns(1)
		sqlDB.SetMaxIdleConns(1)
		sqlDB.SetConnMaxLifetime(0)
		sqlDB.SetConnMaxIdleTime(0)
	} else {
		// As many idle connections as open ones: with fewer, a burst closed
		// the connections above the idle limit and opened them again
		// (0.08–0.19 new connections per relayed message in bench-engine,
		// each a backend fork and its statements prepared again). Idle ones
		// close after five minutes.
		sqlDB.SetMaxOpenConns(20)
		sqlDB.SetMaxIdleConns(20)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		sqlDB.SetConnMaxLifetime(30 * time.Minute)
	}
	s := &Store{db: gdb, sqlDB: sqlDB, dialect: dialect, logger: logger, now: time.Now, counter: &counter{}}
	countPoolOf(gdb, s.counter)
	if err := s.Ping(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("store: open %s database: %w", dialect, err)
	}
	if p := strings.TrimPrefix(databaseURL, "sqlite:"); dialect == DialectSQLite && p != ":memory:" {
		// The writer's Ping above created the file and switched it to WAL
		// (persistent), so the readers open an existing WAL database.
		if err := s.openReaders(ctx, p, logger); err != nil {
			_ = sqlDB.Close()
			return nil, err
		}
	}
	return s, nil
}

// stmtCacheSize bounds the compiled statements each SQLite connection keeps
// (stmtcache.go). The store runs under a hundred distinct statements; IN
// lists of varying length make some more.
const stmtCacheSize = 256

// openSQLitePool opens a pool of SQLite connections to dsn that keep their
// compiled statements.
func openSQLitePool(dsn string) (*sql.DB, error) {
	c, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite database: %w", err)
	}
	return sql.OpenDB(stmtConnector{Connector: c, size: stmtCacheSize}), nil
}

func gormConfig(logger *slog.Logger) *gorm.Config {
	return &gorm.Config{
		TranslateError:         true,
		SkipDefaultTransaction: true,
		DisableAutomaticPing:   true,
		Logger:                 newGormLogger(logger),
	}
}

// readConns is the size of the SQLite read-only pool.
const readConns = 4

// openReaders opens the read-only pool of a SQLite file database.
func (s *Store) openReaders(ctx context.Context, path string, logger *slog.Logger) error {
	dsn, err := sqliteDSN(path, true)
	if err != nil {
		return err
	}
	rconn, err := openSQLitePool(dsn)
	if err != nil {
		return err
	}
	rdb, err := gorm.Open(gormsqlite.New(gormsqlite.Config{Conn: rconn}), gormConfig(logger))
	if err != nil {
		return fmt.Errorf("store: open sqlite read pool: %w", err)
	}
	rsql, err := rdb.DB()
	if err != nil {
		return fmt.Errorf("store: open sqlite read pool: %w", err)
	}
	rsql.SetMaxOpenConns(readConns)
	rsql.SetMaxIdleConns(readConns)
	if err := rsql.PingContext(ctx); err != nil {
		_ = rsql.Close()
		return fmt.Errorf("store: open sqlite read pool: %w", err)
	}
	countPoolOf(rdb, s.counter)
	s.rdb, s.rsqlDB = rdb, rsql
	return nil
}

// greatest names the two-argument maximum of the dialect.
func (s *Store) greatest() string {
	if s.dialect == DialectPostgres {
		return "GREATEST"
	}
	return "MAX"
}

// reader is the pool for read-only work.
func (s *Store) reader() *gorm.DB {
	if s.rdb != nil {
		return s.rdb
	}
	return s.db
}

// sqliteDSN turns the part after "sqlite:" into a driver DSN with the
// pragmas the store relies on. "//" before an absolute path is accepted
// (sqlite:///var/x.db); query parameters given by the caller are kept.
//
// readOnly gives the DSN of the read pool: query_only, and deferred
// transactions (an IMMEDIATE one would take the write lock).
func sqliteDSN(p string, readOnly bool) (string, error) {
	p = strings.TrimPrefix(p, "//")
	if p == "" {
		return "", errors.New("store: open: empty SQLite path (want sqlite:<path>, or sqlite::memory: for an in-memory database)")
	}
	pragmas := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate"
	switch {
	case readOnly:
		pragmas = "_pragma=busy_timeout(10000)&_pragma=query_only(1)"
	case p != ":memory:":
		pragmas += "&_pragma=journal_mode(WAL)"
		if !strings.Contains(p, "synchronous") {
			// Stated, not left to the build's default: every commit is
			// on disk (the WAL fsynced) before Update returns.
			pragmas += "&_pragma=synchronous(FULL)"
		}
	}
	if strings.Contains(p, "?") {
		return p + "&" + pragmas, nil
	}
	return p + "?" + pragmas, nil
}

// redactURL hides a password in u for error messages.
func redactURL(u string) string {
	if parsed, err := url.Parse(u); err == nil && parsed.User != nil {
		return parsed.Redacted()
	}
	return u
}

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

// DB returns the underlying connection pool (for migrations and health checks).
func (s *Store) DB() *sql.DB { return s.sqlDB }

// Migrate applies the pending schema migrations.
func (s *Store) Migrate(ctx context.Context) error {
	if err := migrations.Up(ctx, s.sqlDB, s.dialect, s.logger); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}

// SchemaStatus lists every migration and whether it is applied.
func (s *Store) SchemaStatus(ctx context.Context) ([]migrations.Version, error) {
	vs, err := migrations.Status(ctx, s.sqlDB, s.dialect)
	if err != nil {
		return nil, fmt.Errorf("store: schema status: %w", err)
	}
	return vs, nil
}

// SchemaCurrent reports whether every migration is applied; reason says what
// is missing when it is not. The daemon refuses to start unless ok.
func (s *Store) SchemaCurrent(ctx context.Context) (ok bool, reason string, err error) {
	ok, reason, err = migrations.Current(ctx, s.sqlDB, s.dialect)
	if err != nil {
		return false, "", fmt.Errorf("store: schema current: %w", err)
	}
	return ok, reason, nil
}

// Close closes the database. Call it last, after every user of the store stopped.
func (s *Store) Close() error {
	var rerr error
	if s.rsqlDB != nil {
		rerr = s.rsqlDB.Close()
	}
	if err := errors.Join(s.sqlDB.Close(), rerr); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// SerialWrites reports whether write transactions run one at a time: true
// on SQLite (one writer connection), false on PostgreSQL.
func (s *Store) SerialWrites() bool { return s.dialect == DialectSQLite }

// Update runs fn in one read-write transaction. An error returned by fn rolls
// the transaction back and is returned unchanged; a failure to begin or
// commit is returned wrapped. A panic in fn rolls back and is re-raised.
func (s *Store) Update(ctx context.Context, fn func(tx bridge.Tx) error) error {
	var fnErr error
	err := s.db.WithContext(ctx).Transaction(func(gtx *gorm.DB) error {
		fnErr = fn(&tx{s: s, db: gtx})
		return fnErr
	})
	switch {
	case err == nil:
		return nil
	case fnErr != nil:
		return fnErr // gorm returns fn's error as is; keep it unwrapped
	default:
		return fmt.Errorf("store: update transaction: %w", err)
	}
}

// View runs fn in one read-only transaction: on SQLite on the read pool,
// so a slow reader never holds the writer; on PostgreSQL a READ ONLY
// transaction. The Tx's write methods fail. Errors are returned as by
// Update.
func (s *Store) View(ctx context.Context, fn func(tx bridge.Tx) error) error {
	var fnErr error
	err := s.reader().WithContext(ctx).Transaction(func(gtx *gorm.DB) error {
		fnErr = fn(&tx{s: s, db: gtx})
		return fnErr
	}, &sql.TxOptions{ReadOnly: true})
	switch {
	case err == nil:
		return nil
	case fnErr != nil:
		return fnErr
	default:
		return fmt.Errorf("store: read transaction: %w", err)
	}
}

// wrap prefixes err with "store: what", turning gorm's not-found error into
// bridge.ErrNotFound.
func wrap(what string, err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("store: %s: %w", what, bridge.ErrNotFound)
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

// gormLogger sends gorm's log through slog with parameterized SQL (values,
// which include chat text, are never logged). Errors the store turns into
// domain errors (not found, duplicate key) and cancellations are not logged:
// the caller gets them and decides.
type gormLogger struct{ logger.Interface }

func newGormLogger(l *slog.Logger) logger.Interface {
	return gormLogger{logger.NewSlogLogger(l, logger.Config{
		SlowThreshold:             500 * time.Millisecond,
		IgnoreRecordNotFoundError: true,
		ParameterizedQueries:      true,
		LogLevel:                  logger.Warn,
	})}
}

func (g gormLogger) LogMode(level logger.LogLevel) logger.Interface {
	return gormLogger{g.Interface.LogMode(level)}
}

func (g gormLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if err != nil && (errors.Is(err, gorm.ErrDuplicatedKey) || errors.Is(err, gorm.ErrRecordNotFound) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		err = nil // still reported as slow if it was
	}
	g.Interface.Trace(ctx, begin, fc, err)
}

// ParamsFilter keeps bound values out of the SQL text gorm logs.
func (g gormLogger) ParamsFilter(ctx context.Context, sql string, params ...any) (string, []any) {
	return sql, nil
}
