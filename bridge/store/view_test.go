package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store/storetest"
)

// TestStalledExportDoesNotStallWriter: on SQLite a review export whose reader
// stalls (an HTTP client that stopped reading) keeps its read transaction
// open on the read pool; the relay's writes still commit meanwhile. Before
// the read pool, the stream held the only connection and every write waited.
func TestStalledExportDoesNotStallWriter(t *testing.T) {
	t.Parallel()
	s := openSQLite(t)
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 9, 8, 0, 0, 0, time.UTC)
	if err := s.Update(ctx, func(tx bridge.Tx) error {
		for i := range 3 {
			r := bridge.ReviewRecord{SessionID: bridge.SessionID(fmt.Sprintf("r%d", i)), StartedAt: start.Add(time.Duration(i) * time.Minute),
				UserKey: "k", Reason: "user_asked"}
			if err := tx.PutReview(ctx, r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	stalled, release := make(chan struct{}), make(chan struct{})
	streamed := make(chan error, 1)
	go func() {
		n := 0
		streamed <- s.Reviews(ctx, start, start.Add(time.Hour), func(bridge.ReviewRecord) error {
			if n++; n == 1 {
				close(stalled)
				<-release // the client stopped reading
			}
			return nil
		})
	}()
	<-stalled

	// The relay writes while the export is stalled mid-stream.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := s.Update(wctx, func(tx bridge.Tx) error {
		return tx.CreateSession(wctx, bridge.Session{ID: "s1", Conversation: "c1", State: bridge.StateBot,
			CreatedAt: start, UpdatedAt: start})
	})
	if err != nil {
		t.Fatalf("a write waited for the stalled export: %v", err)
	}
	// Reads in View see committed data while the export still holds its
	// snapshot, and cannot write.
	err = s.View(wctx, func(tx bridge.Tx) error {
		got, err := tx.Session(wctx, "s1")
		if err != nil || got.Conversation != "c1" {
			return fmt.Errorf("View read %+v, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	werr := s.View(wctx, func(tx bridge.Tx) error {
		return tx.CreateSession(wctx, bridge.Session{ID: "s2", Conversation: "c2", State: bridge.StateBot, CreatedAt: start, UpdatedAt: start})
	})
	if werr == nil {
		t.Fatal("a write inside View succeeded, want it refused")
	}
	close(release)
	if err := <-streamed; err != nil {
		t.Fatal(err)
	}
}

// TestViewIsReadOnly on both dialects: View reads what Update wrote and
// refuses writes.
func TestViewSQLite(t *testing.T) {
	t.Parallel()
	testView(t, openSQLite)
}

func TestViewPostgres(t *testing.T) {
	t.Parallel()
	storetest.DatabaseURL(t)
	testView(t, openPostgres)
}

func testView(t *testing.T, open opener) {
	s := open(t)
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := s.Update(ctx, func(tx bridge.Tx) error {
		return tx.CreateSession(ctx, bridge.Session{ID: "s1", Conversation: "c1", State: bridge.StateBot, CreatedAt: now, UpdatedAt: now})
	}); err != nil {
		t.Fatal(err)
	}
	sentinel := errors.New("stop")
	err := s.View(ctx, func(tx bridge.Tx) error {
		if _, err := tx.Session(ctx, "s1"); err != nil {
			return err
		}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("View = %v, want fn's error unchanged", err)
	}
	err = s.View(ctx, func(tx bridge.Tx) error {
		return tx.CreateSession(ctx, bridge.Session{ID: "s2", Conversation: "c2", State: bridge.StateBot, CreatedAt: now, UpdatedAt: now})
	})
	if err == nil {
		t.Fatal("a write inside View succeeded")
	}
}

// TestDeskPostsNeverGoBack: two transactions read a session; one counts a
// desk post, the other (stale) writes the session back afterwards. The count
// must survive, or a later retry of an unsent message is taken for sent
// (found by TestPostgresConnectionsDropped: a message lost on PostgreSQL).
func TestDeskPostsNeverGoBackSQLite(t *testing.T) {
	t.Parallel()
	testDeskPostsNeverGoBack(t, openSQLite)
}

func TestDeskPostsNeverGoBackPostgres(t *testing.T) {
	t.Parallel()
	storetest.DatabaseURL(t)
	testDeskPostsNeverGoBack(t, openPostgres)
}

func testDeskPostsNeverGoBack(t *testing.T, open opener) {
	s := open(t)
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	sess := bridge.Session{ID: "s1", Conversation: "c1", State: bridge.StateLive, AgentChatID: "chat", DeskPosts: 4, CreatedAt: now, UpdatedAt: now}
	if err := s.Update(ctx, func(tx bridge.Tx) error { return tx.CreateSession(ctx, sess) }); err != nil {
		t.Fatal(err)
	}
	stale := sess // read before the confirmation below committed
	if err := s.Update(ctx, func(tx bridge.Tx) error {
		cur, err := tx.Session(ctx, "s1")
		if err != nil {
			return err
		}
		cur.DeskPosts++
		return tx.UpdateSession(ctx, cur, bridge.StateLive)
	}); err != nil {
		t.Fatal(err)
	}
	stale.UpdatedAt = now.Add(time.Second)
	if err := s.Update(ctx, func(tx bridge.Tx) error { return tx.UpdateSession(ctx, stale, bridge.StateLive) }); err != nil {
		t.Fatal(err)
	}
	var got bridge.Session
	if err := s.View(ctx, func(tx bridge.Tx) (err error) { got, err = tx.Session(ctx, "s1"); return err }); err != nil {
		t.Fatal(err)
	}
	if got.DeskPosts != 5 || !got.UpdatedAt.Equal(stale.UpdatedAt) {
		t.Fatalf("desk posts %d, updated %v; want 5 (the stale write must not take the count back) and the stale write's other fields", got.DeskPosts, got.UpdatedAt)
	}
}
