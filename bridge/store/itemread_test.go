package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/handoffhq/handoff/bridge"
)

// testReadItem: ReadItem returns exactly what Session, Message and
// ConversationRef return, in one statement, with their errors
// in their order; without a conversation it reads no reference.
func testReadItem(t *testing.T, s *Store) {
	s1 := session("s1", "c1", base)
	s1.State, s1.AgentChatID, s1.UserEmail, s1.DeskPosts = bridge.StateLive, "chat-1", "ana@example.com", 3
	createSessions(t, s, s1, session("s2", "c2", base))
	ref := bridge.ConversationRef{Conversation: "c1", ServiceURL: "https://smba.example/", ChannelID: "msteams",
		ConversationType: "personal", TenantID: "tenant-1", UserID: "29:user", UserName: "Ana Lima", Locale: "pt-BR", UpdatedAt: base}
	withAll := &bridge.Message{SessionID: "s1", Source: bridge.SourceBot, ExternalID: "bot-1", Author: "bot", Text: "pick one",
		Buttons: []bridge.Button{{Title: "Yes", Payload: "/affirm"}}, ImageURL: "https://example.com/a.png", SentAt: base, CreatedAt: base}
	bare := &bridge.Message{SessionID: "s1", Source: bridge.SourceAgent, Text: "hi", System: true, SentAt: base, CreatedAt: base}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for _, m := range []*bridge.Message{withAll, bare} {
			if _, err := tx.InsertMessage(ctx, m); err != nil {
				return err
			}
		}
		return tx.PutConversationRef(ctx, ref)
	})
	statements := countStatements(t, s)
	const want = 1
	// Store.ReadItem reads the same in one statement and no transaction.
	var viaTx [3]any
	if err := s.View(t.Context(), func(tx bridge.Tx) error {
		gotS, gotM, gotR, err := tx.ReadItem(t.Context(), "s1", withAll.ID, "c1")
		viaTx = [3]any{gotS, gotM, gotR}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	before, txBefore := statements(), s.Counts().Transactions
	gotS, gotM, gotR, err := s.ReadItem(t.Context(), "s1", withAll.ID, "c1")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "Store.ReadItem", [3]any{gotS, gotM, gotR}, viaTx)
	mustEqual(t, "statements of Store.ReadItem", statements()-before, want)
	mustEqual(t, "transactions of Store.ReadItem", s.Counts().Transactions-txBefore, int64(0))
	if _, _, _, err := s.ReadItem(t.Context(), "s9", withAll.ID, ""); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("Store.ReadItem of a missing session: %v, want ErrNotFound", err)
	}
	err = s.View(t.Context(), func(tx bridge.Tx) error {
		ctx := t.Context()
		for _, m := range []*bridge.Message{withAll, bare} {
			wantS, err := tx.Session(ctx, "s1")
			if err != nil {
				return err
			}
			wantM, err := tx.Message(ctx, m.ID)
			if err != nil {
				return err
			}
			wantR, err := tx.ConversationRef(ctx, "c1")
			if err != nil {
				return err
			}
			before := statements()
			gotS, gotM, gotR, err := tx.ReadItem(ctx, "s1", m.ID, "c1")
			if err != nil {
				return err
			}
			mustEqual(t, "statements of ReadItem", statements()-before, want)
			mustEqual(t, "ReadItem session", gotS, wantS)
			mustEqual(t, "ReadItem message", gotM, wantM)
			mustEqual(t, "ReadItem ref", gotR, wantR)
			gotS, gotM, gotR, err = tx.ReadItem(ctx, "s1", m.ID, "")
			if err != nil {
				return err
			}
			mustEqual(t, "ReadItem session without ref", gotS, wantS)
			mustEqual(t, "ReadItem message without ref", gotM, wantM)
			mustEqual(t, "ReadItem ref not asked for", gotR, bridge.ConversationRef{})
		}
		// c2 has no reference: only asking for one fails.
		if _, _, _, err := tx.ReadItem(ctx, "s2", bare.ID, ""); err != nil {
			t.Errorf("ReadItem without ref of a conversation with none: %v", err)
		}
		for _, c := range []struct {
			what    string
			session bridge.SessionID
			message int64
			conv    bridge.ConversationID
			want    string
		}{
			{"no session", "s9", bare.ID, "c1", `session "s9"`},
			{"no session nor message", "s9", 999, "c9", `session "s9"`},
			{"no message", "s1", 999, "c1", "message 999"},
			{"no message nor ref", "s1", 999, "c9", "message 999"},
			{"no ref", "s2", bare.ID, "c2", `conversation ref "c2"`},
		} {
			_, _, _, err := tx.ReadItem(ctx, c.session, c.message, c.conv)
			if !errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ReadItem with %s: err = %v, want ErrNotFound naming %s", c.what, err, c.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
