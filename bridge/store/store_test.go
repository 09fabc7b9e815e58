package store

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gormlogger "gorm.io/gorm/logger"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store/storetest"
)

// opener returns a new, empty (not migrated) store that is closed when the
// test ends.
type opener func(tb testing.TB) *Store

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func openSQLite(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(tb.Context(), "sqlite:"+filepath.Join(tb.TempDir(), "handoff.db"), testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// openPostgres opens a store in a fresh schema of the test database (via
// search_path), so tests and packages running in parallel never collide. The
// schema is dropped when the test ends.
func openPostgres(tb testing.TB) *Store {
	tb.Helper()
	u := storetest.Schema(tb, storetest.DatabaseURL(tb), "t_store")
	s, err := Open(tb.Context(), u, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContractSQLite(t *testing.T) {
	t.Parallel()
	runContract(t, openSQLite)
}

func TestContractPostgres(t *testing.T) {
	t.Parallel()
	storetest.DatabaseURL(t)
	runContract(t, openPostgres)
}

func TestOpenRejectsUnknownScheme(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"mysql://x", "", "handoff.db", "sqlite:", "mysql://user:secret@host/db"} {
		_, err := Open(t.Context(), u, nil)
		if err == nil {
			t.Errorf("Open(%q) succeeded, want an error", u)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "store: open") || !strings.Contains(msg, "sqlite:") {
			t.Errorf("Open(%q) = %q, want a store: open error naming the sqlite: form", u, msg)
		}
		if strings.Contains(u, "://") && !strings.Contains(msg, "postgres://") {
			t.Errorf("Open(%q) = %q, want the expected forms named", u, msg)
		}
		if strings.Contains(msg, "secret") {
			t.Errorf("Open(%q) = %q leaks the password", u, msg)
		}
	}
}

// sqlite::memory: must keep its data across calls: one shared connection.
func TestOpenMemory(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Open(ctx, "sqlite::memory:", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Dialect() != DialectSQLite || s.DB() == nil {
		t.Fatalf("Dialect = %q, DB = %v", s.Dialect(), s.DB())
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	sess := bridge.Session{ID: "s1", Conversation: "c1", State: bridge.StateBot, CreatedAt: time.Now()}
	if err := s.Update(ctx, func(tx bridge.Tx) error { return tx.CreateSession(ctx, sess) }); err != nil {
		t.Fatal(err)
	}
	// A second, separate in-memory store must not see it.
	other, err := Open(ctx, "sqlite::memory:", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.Update(ctx, func(tx bridge.Tx) error {
		_, err := tx.Session(ctx, "s1")
		return err
	}); !errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("other in-memory store: Session = %v, want ErrNotFound", err)
	}
	if err := s.Update(ctx, func(tx bridge.Tx) error {
		_, err := tx.Session(ctx, "s1")
		return err
	}); err != nil {
		t.Fatalf("Session after other calls: %v", err)
	}
}

func TestCeilMS(t *testing.T) {
	t.Parallel()
	base := time.UnixMilli(1_700_000_000_123)
	for _, tc := range []struct {
		in   time.Time
		want int64
	}{
		{base, 1_700_000_000_123},
		{base.Add(time.Nanosecond), 1_700_000_000_124},
		{base.Add(999 * time.Microsecond), 1_700_000_000_124},
		{base.Add(-time.Nanosecond), 1_700_000_000_123},
	} {
		if got := ceilMS(tc.in); got != tc.want {
			t.Errorf("ceilMS(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
	if got := fromMS(toMS(time.Time{})); !got.IsZero() {
		t.Errorf("zero time round trip = %v", got)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Even at gorm's most verbose level, bound values (chat text, names) never
// reach the log: only parameterized SQL does.
func TestLogsNoValues(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "log.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s.db.Logger = s.db.Logger.LogMode(gormlogger.Info)

	const secret = "SECRET-VALUE"
	err = s.Update(ctx, func(tx bridge.Tx) error {
		sess := bridge.Session{ID: "s1", Conversation: "c1", State: bridge.StateBot, UserName: secret, CreatedAt: time.Now()}
		if err := tx.CreateSession(ctx, sess); err != nil {
			return err
		}
		m := &bridge.Message{SessionID: "s1", Source: bridge.SourceUser, ExternalID: "a1", Text: secret, SentAt: time.Now()}
		if _, err := tx.InsertMessage(ctx, m); err != nil {
			return err
		}
		if _, err := tx.InsertMessage(ctx, m); err != nil { // duplicate path
			return err
		}
		if _, err := tx.Messages(ctx, "s1", 5); err != nil {
			return err
		}
		if err := tx.PutReview(ctx, bridge.ReviewRecord{SessionID: "s1", StartedAt: time.Now(), Reason: secret}); err != nil {
			return err
		}
		if _, err := tx.OutboxStats(ctx); err != nil {
			return err
		}
		return tx.Enqueue(ctx, bridge.NewOutboxItem("s1", "c1", bridge.KindUserSend, bridge.OutboxPayload{Reason: secret}, time.Now()))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimOutbox(ctx, bridge.ClaimRequest{Now: time.Now(), Limit: 10, Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := s.Reviews(ctx, time.Time{}, time.Now().Add(time.Hour), func(bridge.ReviewRecord) error { return nil }); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "INSERT INTO") {
		t.Fatalf("no SQL was logged at Info level:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Fatalf("log contains a bound value:\n%s", out)
	}
}

// TestSQLiteSynchronous checks the stated durability setting: FULL (2) on a
// file database unless the URL names its own.
func TestSQLiteSynchronous(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  int
	}{{"", 2}, {"?_pragma=synchronous(NORMAL)", 1}} {
		s, err := Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "handoff.db")+tc.query, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := s.DB().QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		if got != tc.want {
			t.Errorf("URL query %q: synchronous = %d, want %d", tc.query, got, tc.want)
		}
	}
}
