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

func TestCSATPromptsSQLite(t *testing.T) {
	t.Parallel()
	testCSATPrompts(t, openSQLite)
}

func TestCSATPromptsPostgres(t *testing.T) {
	t.Parallel()
	storetest.DatabaseURL(t)
	testCSATPrompts(t, openPostgres)
}

// testCSATPrompts: rating cards round-trip, only open ones are listed,
// soonest expiry first, and a card goes with its session.
func testCSATPrompts(t *testing.T, open opener) {
	s := open(t)
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for i, state := range []string{bridge.CSATOpen, bridge.CSATAnswered, bridge.CSATOpen, bridge.CSATExpired} {
			id := bridge.SessionID(fmt.Sprintf("s%d", i))
			if err := tx.CreateSession(ctx, bridge.Session{ID: id, Conversation: bridge.ConversationID(fmt.Sprintf("c%d", i)), State: bridge.StateBot, CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
			p := bridge.CSATPrompt{Session: id, Conversation: "c1", PromptedAt: now, ExpiresAt: now.Add(time.Duration(10-i) * time.Minute), State: state}
			if err := tx.PutCSATPrompt(ctx, p); err != nil {
				return err
			}
		}
		if _, err := tx.CSATPrompt(ctx, "nope"); !errors.Is(err, bridge.ErrNotFound) {
			return fmt.Errorf("missing card: %v, want ErrNotFound", err)
		}
		p, err := tx.CSATPrompt(ctx, "s0")
		if err != nil {
			return err
		}
		p.CardID = "1000000000001"
		if err := tx.PutCSATPrompt(ctx, p); err != nil {
			return err
		}
		got, err := tx.CSATPrompt(ctx, "s0")
		if err != nil || got.CardID != p.CardID || !got.ExpiresAt.Equal(now.Add(10*time.Minute)) || got.Conversation != "c1" {
			return fmt.Errorf("round trip: %+v, %v", got, err)
		}
		openCards, err := tx.OpenCSATPrompts(ctx, 10)
		if err != nil {
			return err
		}
		if len(openCards) != 2 || openCards[0].Session != "s2" || openCards[1].Session != "s0" {
			return fmt.Errorf("open cards = %+v, want s2 then s0", openCards)
		}
		return nil
	})
	// The card goes with its session.
	if err := s.db.Exec(`DELETE FROM sessions WHERE id = 's0'`).Error; err != nil {
		t.Fatal(err)
	}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if _, err := tx.CSATPrompt(ctx, "s0"); !errors.Is(err, bridge.ErrNotFound) {
			return fmt.Errorf("card of a deleted session: %v", err)
		}
		return nil
	})
}
