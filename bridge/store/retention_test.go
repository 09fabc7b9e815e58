package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// testPruneRelayData: old closed sessions go with everything they hold, a bot
// session keeps its session but loses its old messages, recent data and a
// session with pending work stay, and done outbox rows are pruned by their own
// cutoff.
func testPruneRelayData(t *testing.T, s *Store) {
	ctx := t.Context()
	day := 24 * time.Hour
	oldClosed := session("old-closed", "c1", base)
	oldClosed.State, oldClosed.ClosedAt = bridge.StateClosed, base.Add(time.Hour)
	newClosed := session("new-closed", "c2", base.Add(40*day))
	newClosed.State, newClosed.ClosedAt = bridge.StateClosed, base.Add(40*day)
	busyClosed := session("busy-closed", "c3", base)
	busyClosed.State, busyClosed.ClosedAt = bridge.StateClosed, base.Add(time.Hour)
	bot := session("bot", "c4", base)
	createSessions(t, s, oldClosed, newClosed, busyClosed, bot)
	var ids = map[string]int64{}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for _, m := range []struct {
			key  string
			sess bridge.SessionID
			at   time.Time
		}{
			{"old-1", "old-closed", base}, {"old-2", "old-closed", base.Add(time.Minute)},
			{"new-1", "new-closed", base.Add(40 * day)},
			{"busy-1", "busy-closed", base},
			{"bot-old", "bot", base}, {"bot-new", "bot", base.Add(40 * day)},
		} {
			msg := bridge.Message{SessionID: m.sess, Source: bridge.SourceUser, ExternalID: m.key, Text: "text " + m.key, SentAt: m.at, CreatedAt: m.at}
			if _, err := tx.InsertMessage(ctx, &msg); err != nil {
				return err
			}
			ids[m.key] = msg.ID
		}
		return nil
	})
	// Outbox: a done row of the old session (goes with it), a done row of the
	// new session finished long ago (pruned) and one just now (kept), a
	// pending row that keeps busy-closed.
	done := enqueue(t, s,
		item("old-closed", "c1", bridge.KindUserSend, ids["old-1"]),
		item("new-closed", "c2", bridge.KindUserSend, ids["new-1"]),
		item("busy-closed", "c3", bridge.KindUserSend, ids["busy-1"]),
	)
	complete(t, s, done[0], done[1])
	if err := s.db.WithContext(ctx).Model(&outboxRow{}).Where("id = ?", done[1]).Update("updated_at", toMS(base)).Error; err != nil {
		t.Fatal(err)
	}
	recent := enqueue(t, s, item("new-closed", "c2", bridge.KindUserTyping, 0))
	complete(t, s, recent...)

	cut := base.Add(30 * day)
	sessions, messages, outbox, err := s.PruneRelayData(ctx, cut, base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if sessions != 1 || messages != 3 || outbox != 1 {
		t.Errorf("pruned %d sessions, %d messages, %d outbox rows; want 1 (old-closed), 3 (its two and bot-old), 1", sessions, messages, outbox)
	}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if _, err := tx.Session(ctx, "old-closed"); !errors.Is(err, bridge.ErrNotFound) {
			return fmt.Errorf("old closed session still there: %v", err)
		}
		for _, id := range []bridge.SessionID{"new-closed", "busy-closed", "bot"} {
			if _, err := tx.Session(ctx, id); err != nil {
				return fmt.Errorf("session %s: %w", id, err)
			}
		}
		for key, want := range map[string]bool{"old-1": false, "old-2": false, "new-1": true, "busy-1": true, "bot-old": false, "bot-new": true} {
			_, err := tx.Message(ctx, ids[key])
			if got := err == nil; got != want {
				t.Errorf("message %s kept = %v, want %v (%v)", key, got, want, err)
			}
		}
		stats, err := tx.OutboxStats(ctx)
		if stats["done"] != 1 || stats["pending"] != 1 {
			t.Errorf("outbox after pruning = %v, want 1 done (the recent one) and 1 pending", stats)
		}
		return err
	})
}
