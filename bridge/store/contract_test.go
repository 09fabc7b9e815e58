package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/handoffhq/handoff/bridge"
)

// base is a millisecond-precise UTC instant: what the store gives back.
var base = time.Date(2025, 3, 3, 9, 30, 0, 123_000_000, time.UTC)

// runContract is the one suite every database runs. Each subtest gets its own
// empty database.
func runContract(t *testing.T, open opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *Store)
	}{
		{"Migrations", testMigrations},
		{"UpdateSemantics", testUpdateSemantics},
		{"Sessions", testSessions},
		{"CountSessions", testCountSessions},
		{"Messages", testMessages},
		{"Cursor", testCursor},
		{"Cursors", testCursors},
		{"AdvanceCursors", testAdvanceCursors},
		{"PollTargets", testPollTargets},
		{"SettledReads", testSettledReads},
		{"ConversationRef", testConversationRef},
		{"ReadItem", testReadItem},
		{"RememberActivity", testRememberActivity},
		{"OutboxLaneOrder", testOutboxLaneOrder},
		{"OutboxLeaseAndRetry", testOutboxLeaseAndRetry},
		{"OutboxMisc", testOutboxMisc},
		{"OutboxFencing", testOutboxFencing},
		{"CompleteOutboxNext", testCompleteOutboxNext},
		{"AddDeskPost", testAddDeskPost},
		{"PutActivityRef", testPutActivityRef},
		{"OutboxThrottle", testOutboxThrottle},
		{"OutboxThrottledLanes", testOutboxThrottledLanes},
		{"OutboxRelease", testOutboxRelease},
		{"OutboxConcurrentWorkers", testOutboxConcurrentWorkers},
		{"OutboxEnqueueSerializesLane", testOutboxEnqueueSerializesLane},
		{"OutboxEnqueueClaimed", testOutboxEnqueueClaimed},
		{"Reviews", testReviews},
		{"ReviewInbox", testReviewInbox},
		{"PruneRelayData", testPruneRelayData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			if tc.name != "Migrations" {
				if err := s.Migrate(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			tc.fn(t, s)
		})
	}
}

// update runs fn in a transaction and fails the test on error.
func update(t *testing.T, s *Store, fn func(ctx context.Context, tx bridge.Tx) error) {
	t.Helper()
	ctx := t.Context()
	if err := s.Update(ctx, func(tx bridge.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
}

// inTx runs fn in a transaction and returns its error.
func inTx(t *testing.T, s *Store, fn func(ctx context.Context, tx bridge.Tx) error) error {
	t.Helper()
	ctx := t.Context()
	return s.Update(ctx, func(tx bridge.Tx) error { return fn(ctx, tx) })
}

func session(id bridge.SessionID, conv bridge.ConversationID, created time.Time) bridge.Session {
	return bridge.Session{
		ID: id, Conversation: conv, State: bridge.StateBot,
		UserID: "29:user", UserName: "Ana Lima", UserAADID: "aad-1", UserEmail: "ana@example.com",
		TenantID: "tenant-1", DeskData: `{"nonce":"n-` + string(id) + `"}`, DeskPosts: 3,
		CreatedAt: created, UpdatedAt: created,
	}
}

func createSessions(t *testing.T, s *Store, ss ...bridge.Session) {
	t.Helper()
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for _, x := range ss {
			if err := tx.CreateSession(ctx, x); err != nil {
				return err
			}
		}
		return nil
	})
}

func mustEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error = %v, want %v", what, err, target)
	}
}

func testMigrations(t *testing.T, s *Store) {
	ctx := t.Context()
	ok, reason, err := s.SchemaCurrent(ctx)
	if err != nil || ok || reason == "" {
		t.Fatalf("SchemaCurrent before Migrate = %v, %q, %v; want false with a reason", ok, reason, err)
	}
	for range 2 { // idempotent
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := s.SchemaStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 || vs[0].Version != 1 || vs[0].Name != "00001_init.sql" {
		t.Fatalf("SchemaStatus = %+v", vs)
	}
	for _, v := range vs {
		if !v.Applied || v.AppliedAt.IsZero() {
			t.Errorf("version %d not applied: %+v", v.Version, v)
		}
	}
	if ok, reason, err := s.SchemaCurrent(ctx); err != nil || !ok {
		t.Fatalf("SchemaCurrent after Migrate = %v, %q, %v; want true", ok, reason, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func testUpdateSemantics(t *testing.T, s *Store) {
	ctx := t.Context()
	sentinel := errors.New("stop here")
	err := s.Update(ctx, func(tx bridge.Tx) error {
		if err := tx.CreateSession(ctx, session("s1", "c1", base)); err != nil {
			return err
		}
		return sentinel
	})
	if err != sentinel { //nolint:errorlint // the contract: returned unchanged
		t.Fatalf("Update = %v, want the callback's error unchanged", err)
	}
	err = inTx(t, s, func(ctx context.Context, tx bridge.Tx) error {
		_, err := tx.Session(ctx, "s1")
		return err
	})
	wantErr(t, "session of a rolled-back transaction", err, bridge.ErrNotFound)

	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic in the callback was swallowed")
			}
		}()
		_ = s.Update(ctx, func(tx bridge.Tx) error {
			if err := tx.CreateSession(ctx, session("s2", "c2", base)); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	err = inTx(t, s, func(ctx context.Context, tx bridge.Tx) error {
		_, err := tx.Session(ctx, "s2")
		return err
	})
	wantErr(t, "session of a panicked transaction", err, bridge.ErrNotFound)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	err = s.Update(cancelled, func(tx bridge.Tx) error { return nil })
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Update with a cancelled context = %v, want a wrapped context.Canceled", err)
	}
}

func testCountSessions(t *testing.T, s *Store) {
	states := []bridge.State{bridge.StateBot, bridge.StateBot, bridge.StateQueued, bridge.StateLive, bridge.StateClosed, bridge.StateClosed, bridge.StateClosed}
	var ss []bridge.Session
	for i, st := range states {
		x := session(bridge.SessionID(fmt.Sprint("n", i)), bridge.ConversationID(fmt.Sprint("cn", i)), base)
		x.State = st
		ss = append(ss, x)
	}
	createSessions(t, s, ss...)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		got, err := tx.CountSessions(ctx)
		mustEqual(t, "CountSessions", got, map[bridge.State]int{bridge.StateBot: 2, bridge.StateQueued: 1,
			bridge.StateLive: 1, bridge.StateClosing: 0, bridge.StateClosed: 3})
		return err
	})
}

func testSessions(t *testing.T, s *Store) {
	s1 := session("s1", "c1", base)
	s1.Reason = "user_asked"
	createSessions(t, s, s1)

	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		got, err := tx.Session(ctx, "s1")
		if err != nil {
			return err
		}
		mustEqual(t, "Session", got, s1)
		got, err = tx.OpenSession(ctx, "c1")
		if err != nil {
			return err
		}
		mustEqual(t, "OpenSession", got, s1)
		_, err = tx.Session(ctx, "nope")
		wantErr(t, "Session(nope)", err, bridge.ErrNotFound)
		_, err = tx.OpenSession(ctx, "c-none")
		wantErr(t, "OpenSession(c-none)", err, bridge.ErrNotFound)

		// A second open session of c1 conflicts, and (PostgreSQL!) the
		// transaction stays usable after the conflict.
		err = tx.CreateSession(ctx, session("s2", "c1", base.Add(time.Second)))
		wantErr(t, "second open session", err, bridge.ErrConflict)
		err = tx.CreateSession(ctx, session("s1", "c9", base))
		wantErr(t, "duplicate session id", err, bridge.ErrConflict)
		if _, err := tx.OpenSession(ctx, "c1"); err != nil {
			t.Fatalf("transaction unusable after a conflict: %v", err)
		}
		return tx.CreateSession(ctx, session("s3", "c3", base.Add(time.Second)))
	})

	// Optimistic update: a wrong expectation writes nothing.
	moved := s1
	moved.State = bridge.StateQueued
	moved.Queue = "it-desk"
	moved.AgentChatID = "chat-1"
	moved.QueuedAt = base.Add(time.Minute)
	moved.UpdatedAt = base.Add(time.Minute)
	err := inTx(t, s, func(ctx context.Context, tx bridge.Tx) error {
		return tx.UpdateSession(ctx, moved, bridge.StateLive)
	})
	wantErr(t, "UpdateSession with a stale state", err, bridge.ErrConflict)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		got, err := tx.Session(ctx, "s1")
		mustEqual(t, "session after a conflicting update", got, s1)
		return err
	})
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		return tx.UpdateSession(ctx, moved, bridge.StateBot)
	})
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		got, err := tx.Session(ctx, "s1")
		mustEqual(t, "session after update", got, moved)
		return err
	})

	// Zero values are written too.
	live := moved
	live.State = bridge.StateLive
	live.Queue = ""
	live.QueuedAt = time.Time{}
	live.LiveAt = base.Add(2 * time.Minute)
	live.LastAgentActivity = base.Add(2 * time.Minute)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if err := tx.UpdateSession(ctx, live, bridge.StateQueued); err != nil {
			return err
		}
		got, err := tx.Session(ctx, "s1")
		mustEqual(t, "session after zeroing fields", got, live)
		return err
	})

	err = inTx(t, s, func(ctx context.Context, tx bridge.Tx) error {
		return tx.UpdateSession(ctx, session("ghost", "c7", base), bridge.StateBot)
	})
	wantErr(t, "UpdateSession of a missing session", err, bridge.ErrConflict)
	wantErr(t, "UpdateSession of a missing session", err, bridge.ErrNotFound)

	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		got, err := tx.SessionByAgentChat(ctx, "chat-1")
		if err != nil {
			return err
		}
		mustEqual(t, "SessionByAgentChat", got.ID, bridge.SessionID("s1"))
		_, err = tx.SessionByAgentChat(ctx, "chat-x")
		wantErr(t, "SessionByAgentChat(chat-x)", err, bridge.ErrNotFound)
		_, err = tx.SessionByAgentChat(ctx, "")
		wantErr(t, "SessionByAgentChat(empty)", err, bridge.ErrNotFound)
		return nil
	})

	// Closing frees the conversation for a new session.
	closed := live
	closed.State = bridge.StateClosed
	closed.CloseReason = bridge.ReasonUserEnded
	closed.ClosedAt = base.Add(3 * time.Minute)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		return tx.UpdateSession(ctx, closed, bridge.StateLive)
	})
	err = inTx(t, s, func(ctx context.Context, tx bridge.Tx) error {
		_, err := tx.OpenSession(ctx, "c1")
		return err
	})
	wantErr(t, "OpenSession after close", err, bridge.ErrNotFound)
	s4 := session("s4", "c1", base.Add(4*time.Minute))
	createSessions(t, s, s4)

	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		got, err := tx.OpenSession(ctx, "c1")
		mustEqual(t, "OpenSession after a new session", got, s4)
		if err != nil {
			return err
		}
		all, err := tx.SessionsInStates(ctx, bridge.StateBot, bridge.StateClosed)
		if err != nil {
			return err
		}
		var ids []bridge.SessionID
		for _, x := range all {
			ids = append(ids, x.ID)
		}
		mustEqual(t, "SessionsInStates(bot, closed)", ids, []bridge.SessionID{"s1", "s3", "s4"})
		none, err := tx.SessionsInStates(ctx, bridge.StateQueued)
		if err != nil {
			return err
		}
		mustEqual(t, "SessionsInStates(queued)", len(none), 0)
		none, err = tx.SessionsInStates(ctx)
		mustEqual(t, "SessionsInStates()", len(none), 0)
		return err
	})
}

func testMessages(t *testing.T, s *Store) {
	s1 := session("s1", "c1", base)
	s2 := session("s2", "c2", base)
	createSessions(t, s, s1, s2)

	msg := func(sess bridge.SessionID, src bridge.Source, ext, text string, sent time.Duration) *bridge.Message {
		return &bridge.Message{SessionID: sess, Source: src, ExternalID: ext, Author: string(src), Text: text,
			SentAt: base.Add(sent), CreatedAt: base.Add(time.Hour)}
	}
	m1 := msg("s1", bridge.SourceUser, "act-1", "hello", 3*time.Second)
	m2 := msg("s1", bridge.SourceAgent, "sys-1", "hi, I'm Bo", time.Second)
	m3 := msg("s1", bridge.SourceAgent, "sys-2", "how can I help?", time.Second) // same SentAt as m2: id decides
	m3.System = true
	m4 := msg("s1", bridge.SourceBot, "bot-1", "pick one", 2*time.Second)
	m4.Buttons = []bridge.Button{{Title: "Yes", Payload: "/affirm"}, {Title: "No", Payload: "/deny"}}
	m4.ImageURL = "https://example.com/a.png"
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for _, m := range []*bridge.Message{m1, m2, m3, m4} {
			inserted, err := tx.InsertMessage(ctx, m)
			if err != nil {
				return err
			}
			if !inserted || m.ID == 0 {
				t.Fatalf("InsertMessage(%s) = %v, id %d; want inserted with an id", m.ExternalID, inserted, m.ID)
			}
		}
		return nil
	})

	// A duplicate delivery is a no-op that reports the stored id.
	dup := msg("s1", bridge.SourceAgent, "sys-1", "changed text", 9*time.Second)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		inserted, err := tx.InsertMessage(ctx, dup)
		if err != nil {
			return err
		}
		if inserted || dup.ID != m2.ID {
			t.Fatalf("duplicate InsertMessage = %v, id %d; want false, id %d", inserted, dup.ID, m2.ID)
		}
		n, err := tx.CountMessages(ctx, "s1", bridge.SourceAgent)
		mustEqual(t, "agent messages after a duplicate", n, 2)
		if err != nil {
			return err
		}
		got, err := tx.Message(ctx, m2.ID)
		mustEqual(t, "stored message after a duplicate", got, *m2)
		return err
	})
	// The same external id from another source or session is not a duplicate;
	// an empty external id is never one.
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for _, m := range []*bridge.Message{
			msg("s1", bridge.SourceUser, "sys-1", "same id, other source", 4*time.Second),
			msg("s2", bridge.SourceAgent, "sys-1", "same id, other session", 4*time.Second),
			msg("s2", bridge.SourceBridge, "", "notice a", 5*time.Second),
			msg("s2", bridge.SourceBridge, "", "notice b", 6*time.Second),
		} {
			inserted, err := tx.InsertMessage(ctx, m)
			if err != nil {
				return err
			}
			if !inserted {
				t.Fatalf("InsertMessage(%s/%s/%q) was treated as a duplicate", m.SessionID, m.Source, m.ExternalID)
			}
		}
		return nil
	})

	texts := func(ms []bridge.Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Text)
		}
		return out
	}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		all, err := tx.Messages(ctx, "s1", 0)
		if err != nil {
			return err
		}
		mustEqual(t, "Messages(s1, all)", texts(all),
			[]string{"hi, I'm Bo", "how can I help?", "pick one", "hello", "same id, other source"})
		mustEqual(t, "message with buttons", all[2], *m4)
		mustEqual(t, "system message", all[1], *m3)
		last, err := tx.Messages(ctx, "s1", 2)
		if err != nil {
			return err
		}
		mustEqual(t, "Messages(s1, 2)", texts(last), []string{"hello", "same id, other source"})
		none, err := tx.Messages(ctx, "s-none", 0)
		mustEqual(t, "Messages(s-none)", len(none), 0)
		if err != nil {
			return err
		}
		if n, err := tx.CountMessages(ctx, "s2", bridge.SourceBridge); err != nil || n != 2 {
			t.Fatalf("CountMessages(s2, bridge) = %d, %v; want 2", n, err)
		}
		_, err = tx.Message(ctx, 1_000_000)
		wantErr(t, "Message(missing)", err, bridge.ErrNotFound)
		return nil
	})

	// ConversationMessages spans every session of the conversation.
	closed := s1
	closed.State = bridge.StateClosed
	s3 := session("s3", "c1", base.Add(time.Hour))
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if err := tx.UpdateSession(ctx, closed, bridge.StateBot); err != nil {
			return err
		}
		if err := tx.CreateSession(ctx, s3); err != nil {
			return err
		}
		_, err := tx.InsertMessage(ctx, msg("s3", bridge.SourceUser, "act-9", "back again", 2*time.Hour))
		return err
	})
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		got, err := tx.ConversationMessages(ctx, "c1", 3)
		if err != nil {
			return err
		}
		mustEqual(t, "ConversationMessages(c1, 3)", texts(got), []string{"hello", "same id, other source", "back again"})
		got, err = tx.ConversationMessages(ctx, "c1", 0)
		if err != nil {
			return err
		}
		mustEqual(t, "ConversationMessages(c1, all)", len(got), 6)
		got, err = tx.ConversationMessages(ctx, "c2", 0)
		mustEqual(t, "ConversationMessages(c2)", texts(got), []string{"same id, other session", "notice a", "notice b"})
		return err
	})
}

func testCursor(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base))
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		at, err := tx.Cursor(ctx, "s1")
		if err != nil || !at.IsZero() {
			t.Fatalf("Cursor before SetCursor = %v, %v; want zero, nil", at, err)
		}
		at, err = tx.Cursor(ctx, "s-none")
		if err != nil || !at.IsZero() {
			t.Fatalf("Cursor of a missing session = %v, %v; want zero, nil", at, err)
		}
		// ms precision, whatever the location of the time given.
		in := time.Date(2025, 3, 3, 11, 30, 1, 987_654_321, time.FixedZone("CET", 3600))
		if err := tx.SetCursor(ctx, "s1", in); err != nil {
			return err
		}
		got, err := tx.Cursor(ctx, "s1")
		mustEqual(t, "Cursor", got, time.Date(2025, 3, 3, 10, 30, 1, 987_000_000, time.UTC))
		if err != nil {
			return err
		}
		if err := tx.SetCursor(ctx, "s1", in.Add(1500*time.Millisecond)); err != nil {
			return err
		}
		got, err = tx.Cursor(ctx, "s1")
		mustEqual(t, "Cursor after a second SetCursor", got, time.Date(2025, 3, 3, 10, 30, 3, 487_000_000, time.UTC))
		return err
	})
}

// testAdvanceCursors moves the cursors of more sessions than one Cursors IN
// list with one statement: forward only, and creating missing cursors.
func testAdvanceCursors(t *testing.T, s *Store) {
	const n = cursorChunk*2 + 11
	var ss []bridge.Session
	want := make(map[bridge.SessionID]time.Time, n)
	moves := make(map[bridge.SessionID]time.Time, n)
	for i := range n {
		id := bridge.SessionID(fmt.Sprintf("s%04d", i))
		ss = append(ss, session(id, bridge.ConversationID("c"+id), base))
		moves[id] = base.Add(time.Duration(i) * time.Second)
		want[id] = moves[id]
	}
	createSessions(t, s, ss...)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for i := range n {
			id := bridge.SessionID(fmt.Sprintf("s%04d", i))
			switch i % 3 {
			case 0: // no cursor yet: created
			case 1: // behind: moved
				if err := tx.SetCursor(ctx, id, moves[id].Add(-time.Millisecond)); err != nil {
					return err
				}
			case 2: // ahead: stays
				want[id] = moves[id].Add(time.Millisecond)
				if err := tx.SetCursor(ctx, id, want[id]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	statements := countStatements(t, s)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error { return tx.AdvanceCursors(ctx, moves) })
	if got := statements(); got != 1 {
		t.Errorf("AdvanceCursors of %d sessions ran %d statements, want 1", n, got)
	}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		got, err := tx.Cursors(ctx, slices.Collect(maps.Keys(want)))
		if err != nil {
			return err
		}
		for id, at := range want {
			mustEqual(t, "cursor of "+string(id), got[id], at)
		}
		return tx.AdvanceCursors(ctx, nil)
	})
}

// testPollTargets lists the queued and live sessions with a desk chat,
// oldest first, with their cursors (zero when none is set).
func testPollTargets(t *testing.T, s *Store) {
	mk := func(id string, st bridge.State, chat string, age int) bridge.Session {
		x := session(bridge.SessionID(id), bridge.ConversationID("c-"+id), base.Add(-time.Duration(age)*time.Minute))
		x.State, x.AgentChatID = st, bridge.AgentChatID(chat)
		return x
	}
	createSessions(t, s,
		mk("live-new", bridge.StateLive, "chat-1", 1),
		mk("queued-old", bridge.StateQueued, "chat-2", 5),
		mk("queued-no-chat", bridge.StateQueued, "", 4),
		mk("bot", bridge.StateBot, "", 3),
		mk("closing", bridge.StateClosing, "chat-3", 3),
		mk("closed", bridge.StateClosed, "chat-4", 2),
	)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if err := tx.SetCursor(ctx, "live-new", base); err != nil {
			return err
		}
		got, err := tx.PollTargets(ctx)
		mustEqual(t, "PollTargets", got, []bridge.PollTarget{
			{Session: "queued-old", Chat: "chat-2"},
			{Session: "live-new", Chat: "chat-1", Cursor: base},
		})
		return err
	})
}

// testSettledReads reads the sessions of many desk chats and which message
// keys are stored, across more than one IN list.
func testSettledReads(t *testing.T, s *Store) {
	const n = cursorChunk + 20
	var ss []bridge.Session
	var chats []bridge.AgentChatID
	for i := range n {
		x := session(bridge.SessionID(fmt.Sprintf("s%04d", i)), bridge.ConversationID(fmt.Sprintf("c%04d", i)), base)
		x.State, x.AgentChatID = bridge.StateLive, bridge.AgentChatID(fmt.Sprintf("chat%04d", i))
		ss, chats = append(ss, x), append(chats, x.AgentChatID)
	}
	createSessions(t, s, ss...)
	var keys []bridge.MessageKey
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for i, x := range ss {
			k := bridge.MessageKey{Session: x.ID, Source: bridge.SourceAgent, ExternalID: fmt.Sprint("m", i)}
			keys = append(keys, k, bridge.MessageKey{Session: x.ID, Source: bridge.SourceBridge, ExternalID: k.ExternalID},
				bridge.MessageKey{Session: ss[(i+1)%n].ID, Source: bridge.SourceAgent, ExternalID: k.ExternalID})
			if i%2 == 1 {
				continue
			}
			if _, err := tx.InsertMessage(ctx, &bridge.Message{SessionID: x.ID, Source: k.Source, ExternalID: k.ExternalID, Text: "hi", SentAt: base, CreatedAt: base}); err != nil {
				return err
			}
		}
		got, err := tx.SessionsByAgentChats(ctx, append(chats, "chat-none", ""))
		if err != nil {
			return err
		}
		if len(got) != n {
			t.Errorf("SessionsByAgentChats returned %d sessions, want %d", len(got), n)
		}
		for _, x := range ss {
			if got[x.AgentChatID].ID != x.ID || got[x.AgentChatID].State != bridge.StateLive {
				t.Errorf("session of %s = %+v, want %s", x.AgentChatID, got[x.AgentChatID], x.ID)
			}
		}
		stored, err := tx.StoredMessages(ctx, keys)
		if err != nil {
			return err
		}
		for i, k := range keys {
			want := i%3 == 0 && (i/3)%2 == 0 // only the agent's own key of even sessions
			if stored[k] != want {
				t.Errorf("StoredMessages[%+v] = %v, want %v", k, stored[k], want)
			}
		}
		return nil
	})
}

// countStatements counts the SQL statements s runs from now on, on the
// writer and the read pool (begin and commit excluded).
func countStatements(t *testing.T, s *Store) func() int {
	t.Helper()
	var n atomic.Int64
	count := func(*gorm.DB) { n.Add(1) }
	name := "test:count:" + t.Name()
	for _, db := range []*gorm.DB{s.db, s.rdb} {
		if db == nil {
			continue
		}
		cb := db.Callback()
		for _, err := range []error{
			cb.Create().After("gorm:create").Register(name, count),
			cb.Query().After("gorm:query").Register(name, count),
			cb.Update().After("gorm:update").Register(name, count),
			cb.Delete().After("gorm:delete").Register(name, count),
			cb.Row().After("gorm:row").Register(name, count),
			cb.Raw().After("gorm:raw").Register(name, count),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return func() int { return int(n.Load()) }
}

// testCursors reads many cursors at once, across more ids than one IN list.
func testCursors(t *testing.T, s *Store) {
	const n = cursorChunk + 37
	var ss []bridge.Session
	var ids []bridge.SessionID
	for i := range n {
		id := fmt.Sprintf("s%04d", i)
		ss = append(ss, session(bridge.SessionID(id), bridge.ConversationID("c"+id), base))
		ids = append(ids, bridge.SessionID(id))
	}
	createSessions(t, s, ss...)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for i, id := range ids {
			if i%3 == 0 {
				continue // no cursor yet
			}
			if err := tx.SetCursor(ctx, id, base.Add(time.Duration(i)*time.Millisecond)); err != nil {
				return err
			}
		}
		got, err := tx.Cursors(ctx, append(ids, "s-none"))
		if err != nil {
			return err
		}
		for i, id := range ids {
			at, ok := got[id]
			if i%3 == 0 {
				if ok {
					t.Errorf("session %s has no cursor but Cursors returned %v", id, at)
				}
				continue
			}
			mustEqual(t, "Cursors["+string(id)+"]", at, base.Add(time.Duration(i)*time.Millisecond))
		}
		if _, ok := got["s-none"]; ok || len(got) != n-(n+2)/3 {
			t.Errorf("Cursors returned %d entries, want %d", len(got), n-(n+2)/3)
		}
		return nil
	})
}

func testConversationRef(t *testing.T, s *Store) {
	ref := bridge.ConversationRef{
		Conversation: "a:1xYz", ServiceURL: "https://smba.trafficmanager.net/emea/", ChannelID: "msteams",
		ConversationType: "personal", TenantID: "tenant-1", BotID: "28:app", BotName: "Helpdesk",
		UserID: "29:user", UserName: "Ana Lima", UserAADID: "aad-1", Locale: "pt-BR", UpdatedAt: base,
	}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		_, err := tx.ConversationRef(ctx, ref.Conversation)
		wantErr(t, "ConversationRef before Put", err, bridge.ErrNotFound)
		if err := tx.PutConversationRef(ctx, ref); err != nil {
			return err
		}
		got, err := tx.ConversationRef(ctx, ref.Conversation)
		mustEqual(t, "ConversationRef", got, ref)
		return err
	})
	ref2 := ref
	ref2.ServiceURL = "https://smba.trafficmanager.net/amer/"
	ref2.Locale = ""
	ref2.UpdatedAt = base.Add(time.Hour)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if err := tx.PutConversationRef(ctx, ref2); err != nil {
			return err
		}
		got, err := tx.ConversationRef(ctx, ref.Conversation)
		mustEqual(t, "ConversationRef after replace", got, ref2)
		return err
	})
}

// enqueue stores items and returns their ids, in order (Enqueue does not
// return them: they are the newest rows of the test's own outbox).
func enqueue(t *testing.T, s *Store, items ...bridge.OutboxItem) []int64 {
	t.Helper()
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		return tx.Enqueue(ctx, items...)
	})
	rows, err := s.DB().QueryContext(t.Context(), fmt.Sprintf("SELECT id FROM outbox ORDER BY id DESC LIMIT %d", len(items)))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(ids)
	return ids
}

func item(sess bridge.SessionID, conv bridge.ConversationID, k bridge.OutboxKind, msgID int64) bridge.OutboxItem {
	return bridge.NewOutboxItem(sess, conv, k, bridge.OutboxPayload{MessageID: msgID}, base)
}

func claimIDs(t *testing.T, s *Store, now time.Time, limit int, lease time.Duration) []int64 {
	t.Helper()
	items, err := s.ClaimOutbox(t.Context(), bridge.ClaimRequest{Now: now, Limit: limit, Lease: lease, Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if items == nil {
		t.Fatal("ClaimOutbox returned a nil slice")
	}
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	return ids
}

// claimOf reads the item's current claim token straight from the table; an
// item nobody claimed gets one written, as a claim would.
func claimOf(t *testing.T, s *Store, id int64) string {
	t.Helper()
	var r outboxRow
	if err := s.db.Where("id = ?", id).Take(&r).Error; err != nil {
		t.Fatal(err)
	}
	if r.ClaimToken == "" && r.Status == statusPending {
		r.ClaimToken = fmt.Sprintf("test-claim-%d", id)
		if err := s.db.Model(&outboxRow{}).Where("id = ?", id).Update("claim_token", r.ClaimToken).Error; err != nil {
			t.Fatal(err)
		}
	}
	return r.ClaimToken
}

func claim(t *testing.T, s *Store, req bridge.ClaimRequest) []bridge.OutboxItem {
	t.Helper()
	items, err := s.ClaimOutbox(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// testOutboxFencing: a worker whose lease ran out and whose item another
// worker claimed can neither extend nor record an outcome; the holder can.
func testOutboxFencing(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base))
	ids := enqueue(t, s, item("s1", "c1", bridge.KindUserSend, 1))
	now := base.Add(time.Second)
	lease := 10 * time.Second
	first := claim(t, s, bridge.ClaimRequest{Now: now, Limit: 5, Lease: lease, Owner: "a"})
	if len(first) != 1 {
		t.Fatalf("first claim = %+v", first)
	}
	// A heartbeat keeps the claim past its original lease.
	if err := s.ExtendOutbox(t.Context(), ids[0], first[0].Claim, now.Add(2*lease)); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "claim after the original lease, extended", claimIDs(t, s, now.Add(lease+time.Second), 5, lease), []int64{})
	// Without more beats it runs out and another worker takes it.
	later := now.Add(2*lease + time.Millisecond)
	second := claim(t, s, bridge.ClaimRequest{Now: later, Limit: 5, Lease: lease, Owner: "b"})
	if len(second) != 1 || second[0].Claim == first[0].Claim || second[0].Attempts != 2 {
		t.Fatalf("second claim = %+v, want the item under a new token with Attempts 2", second)
	}
	stale := first[0].Claim
	wantErr(t, "ExtendOutbox(stale)", s.ExtendOutbox(t.Context(), ids[0], stale, later.Add(lease)), bridge.ErrLeaseLost)
	wantErr(t, "ExtendOutbox(missing)", s.ExtendOutbox(t.Context(), 999_999, stale, later), bridge.ErrNotFound)
	for name, fn := range map[string]func(ctx context.Context, tx bridge.Tx) error{
		"CompleteOutbox(stale)": func(ctx context.Context, tx bridge.Tx) error { return tx.CompleteOutbox(ctx, ids[0], stale) },
		"RetryOutbox(stale)": func(ctx context.Context, tx bridge.Tx) error {
			return tx.RetryOutbox(ctx, ids[0], stale, bridge.OutboxRetry{Next: later})
		},
		"FailOutbox(stale)":    func(ctx context.Context, tx bridge.Tx) error { return tx.FailOutbox(ctx, ids[0], stale, "x") },
		"CompleteOutbox(\"\")": func(ctx context.Context, tx bridge.Tx) error { return tx.CompleteOutbox(ctx, ids[0], "") },
	} {
		err := s.Update(t.Context(), func(tx bridge.Tx) error { return fn(t.Context(), tx) })
		wantErr(t, name, err, bridge.ErrLeaseLost)
	}
	complete(t, s, ids[0])
	// Done: the holder's token is spent too.
	err := s.Update(t.Context(), func(tx bridge.Tx) error { return tx.CompleteOutbox(t.Context(), ids[0], second[0].Claim) })
	wantErr(t, "CompleteOutbox(twice)", err, bridge.ErrLeaseLost)
}

// testPutActivityRef: one activity after another on one conversation, each
// merged with what is stored: the e-mail is kept unless given or the user
// changes, the welcome time is set once.
func testPutActivityRef(t *testing.T, s *Store) {
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	ref := func(user string, sec int) bridge.ConversationRef {
		return bridge.ConversationRef{Conversation: "c1", ServiceURL: fmt.Sprintf("https://smba.example/%d/", sec), ChannelID: "msteams",
			ConversationType: "personal", TenantID: "tenant-1", UserID: user, UserName: "Ana Lima", Locale: "pt-BR", UpdatedAt: at(sec)}
	}
	steps := []struct {
		name         string
		ref          bridge.ConversationRef
		email        string
		welcome      time.Time
		wantWelcomed bool
		wantEmail    string
		wantWelcome  time.Time
	}{
		{"first message", ref("29:ana", 1), "", time.Time{}, false, "", time.Time{}},
		{"install greets", ref("29:ana", 2), "", at(2), true, "", at(2)},
		{"e-mail learnt", ref("29:ana", 3), "ana@example.com", time.Time{}, false, "ana@example.com", at(2)},
		{"second install keeps the greeting", ref("29:ana", 4), "", at(4), false, "ana@example.com", at(2)},
		// Teams sends installationUpdate and conversationUpdate together: the
		// second may carry the same millisecond as the greeting.
		{"second install in the greeting's millisecond", ref("29:ana", 2), "", at(2), false, "ana@example.com", at(2)},
		{"a message keeps the e-mail", ref("29:ana", 5), "", time.Time{}, false, "ana@example.com", at(2)},
		{"no user id keeps the e-mail", ref("", 6), "", time.Time{}, false, "ana@example.com", at(2)},
		{"another user clears the e-mail", ref("29:bea", 7), "", time.Time{}, false, "", at(2)},
		{"another user with an e-mail", ref("29:cid", 8), "cid@example.com", time.Time{}, false, "cid@example.com", at(2)},
	}
	for _, st := range steps {
		var welcomed bool
		update(t, s, func(ctx context.Context, tx bridge.Tx) error {
			var err error
			welcomed, err = tx.PutActivityRef(ctx, st.ref, st.email, st.welcome)
			return err
		})
		mustEqual(t, st.name+": welcomed", welcomed, st.wantWelcomed)
		want := st.ref
		want.UserEmail, want.WelcomedAt = st.wantEmail, st.wantWelcome
		err := s.View(t.Context(), func(tx bridge.Tx) error {
			got, err := tx.ConversationRef(t.Context(), "c1")
			if err != nil {
				return err
			}
			mustEqual(t, st.name+": stored", got, want)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A new conversation with an e-mail and a greeting.
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		r := ref("29:dan", 9)
		r.Conversation = "c2"
		welcomed, err := tx.PutActivityRef(ctx, r, "dan@example.com", at(9))
		mustEqual(t, "new conversation: welcomed", welcomed, true)
		return err
	})
}

// testAddDeskPost: each call counts one desk post and sets UpdatedAt,
// whatever the state; a later UpdateSession in the same transaction that
// changes another field keeps the count; a missing session is ErrNotFound.
func testAddDeskPost(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base)) // DeskPosts 3
	later := base.Add(time.Minute)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		x, err := tx.Session(ctx, "s1")
		if err != nil {
			return err
		}
		if err := tx.AddDeskPost(ctx, "s1", later); err != nil {
			return err
		}
		x.UserEmail = "ana@example.org"
		return tx.UpdateSession(ctx, x, x.State)
	})
	update(t, s, func(ctx context.Context, tx bridge.Tx) error { return tx.AddDeskPost(ctx, "s1", later) })
	err := s.View(t.Context(), func(tx bridge.Tx) error {
		got, err := tx.Session(t.Context(), "s1")
		if err != nil {
			return err
		}
		mustEqual(t, "desk posts", got.DeskPosts, 5)
		mustEqual(t, "updated at", got.UpdatedAt, later)
		mustEqual(t, "the other field", got.UserEmail, "ana@example.org")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "AddDeskPost(missing)", inTx(t, s, func(ctx context.Context, tx bridge.Tx) error { return tx.AddDeskPost(ctx, "s9", later) }), bridge.ErrNotFound)
}

// testCompleteOutboxNext: completing an item reports whether a later item
// of its lane (same conversation and lane) is pending, and no other lane's.
func testCompleteOutboxNext(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base), session("s2", "c2", base))
	enqueue(t, s, item("s1", "c1", bridge.KindUserSend, 1), item("s1", "c1", bridge.KindUserSend, 2),
		item("s1", "c1", bridge.KindDeskSend, 3), item("s2", "c2", bridge.KindUserSend, 4))
	now := base.Add(time.Second)
	completeNext := func(it bridge.OutboxItem) (next bool) {
		t.Helper()
		update(t, s, func(ctx context.Context, tx bridge.Tx) error {
			var err error
			next, err = tx.CompleteOutboxNext(ctx, it.ID, it.Claim)
			return err
		})
		return next
	}
	heads := claim(t, s, bridge.ClaimRequest{Now: now, Limit: 10, Lease: time.Minute, Owner: "a"})
	if len(heads) != 3 {
		t.Fatalf("claimed %+v, want the three lanes' heads", heads)
	}
	for _, it := range heads {
		want := it.Kind == bridge.KindUserSend && it.Conversation == "c1" // the second user send waits behind it
		mustEqual(t, fmt.Sprintf("next after %s of %s", it.Kind, it.Conversation), completeNext(it), want)
	}
	last := claim(t, s, bridge.ClaimRequest{Now: now, Limit: 10, Lease: time.Minute, Owner: "a"})
	if len(last) != 1 {
		t.Fatalf("claimed %+v, want the second user send", last)
	}
	mustEqual(t, "next after the lane's last item", completeNext(last[0]), false)
	err := s.Update(t.Context(), func(tx bridge.Tx) error {
		_, err := tx.CompleteOutboxNext(t.Context(), 999_999, "x")
		return err
	})
	wantErr(t, "CompleteOutboxNext(missing)", err, bridge.ErrNotFound)
	err = s.Update(t.Context(), func(tx bridge.Tx) error {
		_, err := tx.CompleteOutboxNext(t.Context(), last[0].ID, last[0].Claim)
		return err
	})
	wantErr(t, "CompleteOutboxNext(twice)", err, bridge.ErrLeaseLost)
}

// testOutboxThrottle: a throttled retry gives the attempt back; a failure
// run keeps its first failing time; a throttled lane kind is not claimed in
// any conversation until the throttle ends, and other kinds are.
func testOutboxThrottle(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base), session("s2", "c2", base))
	ids := enqueue(t, s,
		item("s1", "c1", bridge.KindDeskSend, 1),
		item("s2", "c2", bridge.KindDeskSend, 2),
		item("s2", "c2", bridge.KindUserSend, 3),
	)
	now := base.Add(time.Second)
	lease := 10 * time.Second
	got := claim(t, s, bridge.ClaimRequest{Now: now, Limit: 1, Lease: lease, Owner: "a"})
	if len(got) != 1 || got[0].ID != ids[0] || got[0].Attempts != 1 || !got[0].FailingSince.IsZero() {
		t.Fatalf("claim = %+v", got)
	}
	until := now.Add(time.Minute)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if err := tx.RetryOutbox(ctx, ids[0], got[0].Claim, bridge.OutboxRetry{Next: until, LastErr: "429", Throttled: true}); err != nil {
			return err
		}
		if err := tx.SetThrottle(ctx, bridge.LaneDesk, until); err != nil {
			return err
		}
		// An earlier until never shortens the throttle.
		return tx.SetThrottle(ctx, bridge.LaneDesk, now.Add(time.Second))
	})
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		u, err := tx.Throttle(ctx, bridge.LaneDesk, now)
		mustEqual(t, "desk throttle", u, until)
		if err != nil {
			return err
		}
		u, err = tx.Throttle(ctx, bridge.LaneUser, now)
		mustEqual(t, "user throttle", u, time.Time{})
		if err != nil {
			return err
		}
		u, err = tx.Throttle(ctx, bridge.LaneDesk, until)
		mustEqual(t, "desk throttle once over", u, time.Time{})
		return err
	})
	// c2's desk lane is throttled too (same destination); its user lane is not.
	mustEqual(t, "claim while desk throttled", claimIDs(t, s, now, 10, lease), []int64{ids[2]})
	got = claim(t, s, bridge.ClaimRequest{Now: until, Limit: 10, Lease: lease, Owner: "a"})
	// (the user item's lease ran out meanwhile, so it is claimed again too)
	if len(got) != 3 || got[0].ID != ids[0] || got[0].Attempts != 1 || got[1].ID != ids[1] {
		t.Fatalf("claim after the throttle = %+v, want items %d (Attempts 1: the throttled one was given back), %d, %d", got, ids[0], ids[1], ids[2])
	}
	// A failure run: the first failure sets FailingSince, later ones keep it.
	first := until.Add(time.Second)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		return tx.RetryOutbox(ctx, ids[0], got[0].Claim, bridge.OutboxRetry{Next: first, LastErr: "503", FailingSince: first})
	})
	again := claim(t, s, bridge.ClaimRequest{Now: first, Limit: 1, Lease: lease, Owner: "a"})
	if len(again) != 1 || !again[0].FailingSince.Equal(first) || again[0].Attempts != 2 {
		t.Fatalf("claim after a failure = %+v, want FailingSince %v and Attempts 2", again, first)
	}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		return tx.RetryOutbox(ctx, ids[0], again[0].Claim, bridge.OutboxRetry{Next: first, LastErr: "503", FailingSince: first.Add(time.Minute)})
	})
	again = claim(t, s, bridge.ClaimRequest{Now: first, Limit: 1, Lease: lease, Owner: "a"})
	if len(again) != 1 || !again[0].FailingSince.Equal(first) {
		t.Fatalf("claim after a second failure = %+v, want FailingSince still %v", again, first)
	}
}

// testOutboxThrottledLanes: the claim leaves out every lane whose kind is
// throttled at req.Now, its due head and everything behind it, and claims
// the other kinds' heads; the lane is claimable again from the throttle's
// until (a throttle holds while until > now). A claim is two statements
// (lane heads, then the claiming update), one when nothing is due: the
// throttle check is part of the heads statement.
func testOutboxThrottledLanes(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base), session("s2", "c2", base))
	ids := enqueue(t, s,
		item("s1", "c1", bridge.KindDeskSend, 1), // head of c1/desk
		item("s1", "c1", bridge.KindDeskSend, 2), // behind it
		item("s1", "c1", bridge.KindUserSend, 3),
		item("s2", "c2", bridge.KindDeskSend, 4), // head of c2/desk
		item("s2", "c2", bridge.KindBotSend, 5),
	)
	now := base.Add(time.Second)
	until := now.Add(time.Minute)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if err := tx.SetThrottle(ctx, bridge.LaneDesk, until); err != nil {
			return err
		}
		// An expired throttle of another kind holds nothing back.
		return tx.SetThrottle(ctx, bridge.LaneBot, now.Add(-time.Millisecond))
	})
	statements := countStatements(t, s)
	before := statements()
	mustEqual(t, "claim while desk throttled", claimIDs(t, s, now, 10, time.Hour), []int64{ids[2], ids[4]})
	mustEqual(t, "statements of a claim", statements()-before, 2)
	before = statements()
	mustEqual(t, "claim while desk throttled, the rest leased", claimIDs(t, s, now, 10, time.Hour), []int64{})
	mustEqual(t, "statements of an empty claim", statements()-before, 1)
	mustEqual(t, "claim a millisecond before until", claimIDs(t, s, until.Add(-time.Millisecond), 10, time.Hour), []int64{})
	mustEqual(t, "claim at until", claimIDs(t, s, until, 10, time.Hour), []int64{ids[0], ids[3]})
}

// testOutboxEnqueueClaimed: an item enqueued alone in its lane, due and not
// throttled is born claimed (fresh token, the owner, Attempts 1, leased) and
// no other claim gets it while the lease lasts; its token records the
// outcome, and after the lease another worker takes it under a new token. In
// a lane with a pending item, a throttled lane or not yet due, it is enqueued
// unclaimed behind what is there.
func testOutboxEnqueueClaimed(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base), session("s2", "c2", base), session("s3", "c3", base))
	now := base.Add(time.Second)
	lease := 10 * time.Second
	req := bridge.ClaimRequest{Now: now, Lease: lease, Owner: "w1"}
	enqueueClaimed := func(it bridge.OutboxItem, req bridge.ClaimRequest) (got bridge.OutboxItem, claimed bool) {
		t.Helper()
		update(t, s, func(ctx context.Context, tx bridge.Tx) error {
			var err error
			got, claimed, err = tx.EnqueueClaimed(ctx, it, req)
			return err
		})
		return got, claimed
	}

	// Alone in its lane (c1's user lane holds an item, its desk lane none).
	before := enqueue(t, s, item("s1", "c1", bridge.KindUserSend, 1))
	got, claimed := enqueueClaimed(item("s1", "c1", bridge.KindDeskOpen, 0), req)
	if !claimed || got.ID <= before[0] || got.Claim == "" || got.Attempts != 1 || got.Lane != bridge.LaneDesk || got.Kind != bridge.KindDeskOpen {
		t.Fatalf("EnqueueClaimed alone = %+v claimed %v, want it claimed with a token and Attempts 1", got, claimed)
	}
	var owner string
	var until int64
	if err := s.DB().QueryRowContext(t.Context(), "SELECT claim_owner, claimed_until FROM outbox WHERE id = $1", got.ID).Scan(&owner, &until); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "owner and lease", []any{owner, until}, []any{"w1", now.Add(lease).UnixMilli()})
	mustEqual(t, "claim during the lease", claimIDs(t, s, now, 10, lease), []int64{before[0]})

	// A pending item in the lane: enqueued behind it, unclaimed.
	behind, claimed := enqueueClaimed(item("s1", "c1", bridge.KindDeskSend, 2), bridge.ClaimRequest{Now: now, Lease: lease, Owner: "w2"})
	if claimed || behind.Claim != "" || behind.Attempts != 0 {
		t.Fatalf("EnqueueClaimed behind a pending item = %+v claimed %v, want unclaimed", behind, claimed)
	}
	// The claimed item's token records its outcome; then the lane moves on.
	update(t, s, func(ctx context.Context, tx bridge.Tx) error { return tx.CompleteOutbox(ctx, got.ID, got.Claim) })
	mustEqual(t, "claim after the open completed", claimIDs(t, s, now.Add(lease+time.Second), 10, lease), []int64{before[0], behind.ID})

	// Its lease runs out like any claim's: another worker takes it, and the
	// first token is spent.
	c2, claimed := enqueueClaimed(item("s2", "c2", bridge.KindDeskOpen, 0), req)
	if !claimed {
		t.Fatal("EnqueueClaimed in an empty lane was not claimed")
	}
	later := now.Add(lease + time.Millisecond)
	taken := claim(t, s, bridge.ClaimRequest{Now: later, Limit: 1, Lease: lease, Owner: "w2"})
	if len(taken) != 1 || taken[0].ID != c2.ID || taken[0].Claim == c2.Claim || taken[0].Attempts != 2 {
		t.Fatalf("claim after the lease = %+v, want item %d under a new token with Attempts 2", taken, c2.ID)
	}
	err := s.Update(t.Context(), func(tx bridge.Tx) error { return tx.CompleteOutbox(t.Context(), c2.ID, c2.Claim) })
	wantErr(t, "CompleteOutbox(chained token after the lease)", err, bridge.ErrLeaseLost)

	// Not due yet, or its destination throttled: unclaimed.
	notDue := item("s3", "c3", bridge.KindDeskOpen, 0)
	notDue.NextAttemptAt = now.Add(time.Second)
	if it, claimed := enqueueClaimed(notDue, req); claimed || it.Claim != "" {
		t.Fatalf("EnqueueClaimed not due = %+v claimed %v, want unclaimed", it, claimed)
	}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		return tx.SetThrottle(ctx, bridge.LaneUser, now.Add(time.Minute))
	})
	if it, claimed := enqueueClaimed(item("s3", "c3", bridge.KindUserSend, 3), req); claimed || it.Claim != "" {
		t.Fatalf("EnqueueClaimed to a throttled lane = %+v claimed %v, want unclaimed", it, claimed)
	}
}

// testOutboxRelease: a process takes back its own claims at once; another
// owner's claims stay leased.
func testOutboxRelease(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base), session("s2", "c2", base))
	ids := enqueue(t, s, item("s1", "c1", bridge.KindDeskSend, 1), item("s2", "c2", bridge.KindDeskSend, 2))
	now := base.Add(time.Second)
	a := claim(t, s, bridge.ClaimRequest{Now: now, Limit: 1, Lease: time.Hour, Owner: "host/1"})
	b := claim(t, s, bridge.ClaimRequest{Now: now, Limit: 1, Lease: time.Hour, Owner: "host/2"})
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("claims = %+v, %+v", a, b)
	}
	n, err := s.ReleaseOutboxClaims(t.Context(), "host/1")
	if err != nil || n != 1 {
		t.Fatalf("ReleaseOutboxClaims = %d, %v; want 1", n, err)
	}
	mustEqual(t, "claim after release", claimIDs(t, s, now, 10, time.Hour), []int64{ids[0]})
	err = s.Update(t.Context(), func(tx bridge.Tx) error { return tx.CompleteOutbox(t.Context(), ids[0], a[0].Claim) })
	wantErr(t, "CompleteOutbox(released claim)", err, bridge.ErrLeaseLost)
	if n, err := s.ReleaseOutboxClaims(t.Context(), ""); err != nil || n != 0 {
		t.Fatalf("ReleaseOutboxClaims(\"\") = %d, %v; want 0", n, err)
	}
}

func complete(t *testing.T, s *Store, ids ...int64) {
	t.Helper()
	claims := make([]string, len(ids))
	for i, id := range ids {
		claims[i] = claimOf(t, s, id)
	}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for i, id := range ids {
			if err := tx.CompleteOutbox(ctx, id, claims[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func testOutboxLaneOrder(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base), session("s2", "c2", base))
	ids := enqueue(t, s,
		item("s1", "c1", bridge.KindDeskSend, 1), // 0: c1/desk head
		item("s1", "c1", bridge.KindUserSend, 2), // 1: c1/user head
		item("s1", "c1", bridge.KindDeskSend, 3), // 2: c1/desk second
		item("s2", "c2", bridge.KindDeskOpen, 0), // 3: c2/desk head
		item("s1", "c1", bridge.KindDeskSend, 4), // 4: c1/desk third
		item("s1", "c1", bridge.KindUserSend, 5), // 5: c1/user second
	)
	now := base.Add(time.Second)
	lease := 30 * time.Second

	// Lanes are independent; only heads are claimable.
	mustEqual(t, "first claim", claimIDs(t, s, now, 10, lease), []int64{ids[0], ids[1], ids[3]})
	mustEqual(t, "claim while heads are leased", claimIDs(t, s, now, 10, lease), []int64{})

	// The second item of a lane waits for the first to be done.
	complete(t, s, ids[0])
	mustEqual(t, "claim after c1/desk head done", claimIDs(t, s, now, 10, lease), []int64{ids[2]})

	// A dead item stops blocking its lane.
	tok := claimOf(t, s, ids[2])
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		return tx.FailOutbox(ctx, ids[2], tok, "permanent: 400")
	})
	mustEqual(t, "claim after c1/desk second dead", claimIDs(t, s, now, 10, lease), []int64{ids[4]})

	complete(t, s, ids[1])
	mustEqual(t, "claim limit 1", claimIDs(t, s, now, 1, lease), []int64{ids[5]})

	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		st, err := tx.OutboxStats(ctx)
		mustEqual(t, "OutboxStats", st, map[string]int{"pending": 3, "done": 2, "dead": 1})
		return err
	})
}

func testOutboxLeaseAndRetry(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base))
	ids := enqueue(t, s, item("s1", "c1", bridge.KindUserSend, 1), item("s1", "c1", bridge.KindUserSend, 2))
	now := base.Add(time.Second)
	lease := 10 * time.Second

	items, err := s.ClaimOutbox(t.Context(), bridge.ClaimRequest{Now: now, Limit: 10, Lease: lease, Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != ids[0] || items[0].Attempts != 1 {
		t.Fatalf("first claim = %+v, want item %d with Attempts 1", items, ids[0])
	}
	want := item("s1", "c1", bridge.KindUserSend, 1)
	want.ID, want.Attempts, want.Claim = ids[0], 1, items[0].Claim
	if items[0].Claim == "" {
		t.Fatal("claimed item has no claim token")
	}
	mustEqual(t, "claimed item", items[0], want)

	// The lease holds until it runs out (strictly after now+lease).
	mustEqual(t, "claim during the lease", claimIDs(t, s, now.Add(5*time.Second), 10, lease), []int64{})
	mustEqual(t, "claim at the lease's end", claimIDs(t, s, now.Add(lease), 10, lease), []int64{})
	items, err = s.ClaimOutbox(t.Context(), bridge.ClaimRequest{Now: now.Add(lease + time.Millisecond), Limit: 10, Lease: lease, Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != ids[0] || items[0].Attempts != 2 {
		t.Fatalf("claim after the lease ran out = %+v, want item %d again with Attempts 2", items, ids[0])
	}

	// Retry releases the lease and schedules the next attempt; the lane stays
	// blocked until then.
	now = now.Add(lease + time.Millisecond)
	next := now.Add(time.Minute)
	tok := claimOf(t, s, ids[0])
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		return tx.RetryOutbox(ctx, ids[0], tok, bridge.OutboxRetry{Next: next, LastErr: "teams: send: HTTP 503"})
	})
	mustEqual(t, "claim before the retry is due", claimIDs(t, s, next.Add(-time.Millisecond), 10, lease), []int64{})
	items, err = s.ClaimOutbox(t.Context(), bridge.ClaimRequest{Now: next, Limit: 10, Lease: lease, Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != ids[0] || items[0].Attempts != 3 ||
		items[0].LastError != "teams: send: HTTP 503" || !items[0].NextAttemptAt.Equal(next) {
		t.Fatalf("claim when the retry is due = %+v, want item %d, Attempts 3, the last error and next time", items, ids[0])
	}
	complete(t, s, ids[0])
	mustEqual(t, "claim after done", claimIDs(t, s, next, 10, lease), []int64{ids[1]})
}

func testOutboxMisc(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base))
	// Not due yet; payload and lane round-trip; an empty lane is derived.
	later := item("s1", "c1", bridge.KindBotHandback, 0)
	later.Payload = json.RawMessage(`{"reason":"user_restarted","restart":true}`)
	later.NextAttemptAt = base.Add(time.Hour)
	noLane := item("s1", "c1", bridge.KindDeskLeave, 0)
	noLane.Lane = ""
	ids := enqueue(t, s, later, noLane)
	mustEqual(t, "claim before due", claimIDs(t, s, base, 10, time.Minute), []int64{ids[1]})
	complete(t, s, ids[1])
	items, err := s.ClaimOutbox(t.Context(), bridge.ClaimRequest{Now: base.Add(time.Hour), Limit: 10, Lease: time.Minute, Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != ids[0] {
		t.Fatalf("claim when due = %+v", items)
	}
	p, err := items[0].DecodePayload()
	if err != nil || p.Reason != bridge.ReasonUserRestarted || !p.Restart || items[0].Lane != bridge.LaneBot {
		t.Fatalf("claimed payload %+v (%v), lane %q", p, err, items[0].Lane)
	}
	if got := claimIDs(t, s, base, 0, time.Minute); len(got) != 0 {
		t.Fatalf("claim with limit 0 = %v", got)
	}

	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		wantErr(t, "CompleteOutbox(missing)", tx.CompleteOutbox(ctx, 999_999, "x"), bridge.ErrNotFound)
		wantErr(t, "RetryOutbox(missing)", tx.RetryOutbox(ctx, 999_999, "x", bridge.OutboxRetry{Next: base}), bridge.ErrNotFound)
		wantErr(t, "FailOutbox(missing)", tx.FailOutbox(ctx, 999_999, "x", "x"), bridge.ErrNotFound)
		if err := tx.Enqueue(ctx); err != nil {
			t.Fatalf("Enqueue() = %v", err)
		}
		return nil
	})
}

// Several workers claim from many lanes at once: no item is claimed twice,
// every item ends done, and each lane completes in insertion order.
func testOutboxConcurrentWorkers(t *testing.T, s *Store) {
	const (
		convs   = 12
		perLane = 8
		workers = 4
	)
	lanes := []bridge.OutboxKind{bridge.KindUserSend, bridge.KindDeskSend}
	var sessions []bridge.Session
	for c := range convs {
		sessions = append(sessions, session(bridge.SessionID(fmt.Sprintf("s%02d", c)), bridge.ConversationID(fmt.Sprintf("c%02d", c)), base))
	}
	createSessions(t, s, sessions...)
	// Interleave lanes, a few transactions.
	var items []bridge.OutboxItem
	for i := range perLane {
		for c := range convs {
			for _, k := range lanes {
				items = append(items, item(sessions[c].ID, sessions[c].Conversation, k, int64(i)))
			}
		}
	}
	var ids []int64
	for chunk := range slices.Chunk(items, 40) {
		ids = append(ids, enqueue(t, s, chunk...)...)
	}
	laneOf := func(it bridge.OutboxItem) string { return string(it.Conversation) + "/" + string(it.Lane) }
	wantOrder := map[string][]int64{}
	for i, it := range items {
		wantOrder[laneOf(it)] = append(wantOrder[laneOf(it)], ids[i])
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var (
		mu      sync.Mutex
		claimed = map[int64]int{}
		order   = map[string][]int64{}
		done    atomic.Int64
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			for done.Load() < int64(len(items)) {
				if ctx.Err() != nil {
					errs <- fmt.Errorf("worker %d: timed out with %d of %d done", w, done.Load(), len(items))
					return
				}
				got, err := s.ClaimOutbox(ctx, bridge.ClaimRequest{Now: time.Now(), Limit: 5, Lease: time.Hour, Owner: "test"})
				if err != nil {
					errs <- fmt.Errorf("worker %d: claim: %w", w, err)
					return
				}
				if len(got) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				for _, it := range got {
					claimed[it.ID]++
				}
				mu.Unlock()
				for _, it := range got {
					err := s.Update(ctx, func(tx bridge.Tx) error {
						if err := tx.CompleteOutbox(ctx, it.ID, it.Claim); err != nil {
							return err
						}
						// Recorded before commit: the lane's next item cannot
						// be claimed until this commit.
						mu.Lock()
						order[laneOf(it)] = append(order[laneOf(it)], it.ID)
						mu.Unlock()
						return nil
					})
					if err != nil {
						errs <- fmt.Errorf("worker %d: complete %d: %w", w, it.ID, err)
						return
					}
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("item %d claimed %d times", id, n)
		}
	}
	mustEqual(t, "items claimed", len(claimed), len(items))
	mustEqual(t, "per-lane completion order", order, wantOrder)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		st, err := tx.OutboxStats(ctx)
		mustEqual(t, "OutboxStats", st, map[string]int{"pending": 0, "done": len(items), "dead": 0})
		return err
	})
}

// Two transactions enqueueing to one lane commit in id order: the second
// waits for the first, so a later id can never become visible (and be
// dispatched) before an earlier one.
func testOutboxEnqueueSerializesLane(t *testing.T, s *Store) {
	createSessions(t, s, session("s1", "c1", base))
	ctx := t.Context()
	firstIn, release := make(chan struct{}), make(chan struct{})
	firstDone, secondDone := make(chan error, 1), make(chan error, 1)
	go func() {
		firstDone <- s.Update(ctx, func(tx bridge.Tx) error {
			if err := tx.Enqueue(ctx, item("s1", "c1", bridge.KindUserSend, 1)); err != nil {
				return err
			}
			close(firstIn)
			<-release
			return nil
		})
	}()
	<-firstIn
	go func() {
		secondDone <- s.Update(ctx, func(tx bridge.Tx) error {
			return tx.Enqueue(ctx, item("s1", "c1", bridge.KindUserSend, 2))
		})
	}()
	select {
	case err := <-secondDone:
		close(release)
		t.Fatalf("second enqueue to the lane committed (%v) while the first was open", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := <-secondDone; err != nil {
		t.Fatal(err)
	}
	items, err := s.ClaimOutbox(ctx, bridge.ClaimRequest{Now: base.Add(time.Second), Limit: 10, Lease: time.Minute, Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 {
		t.Fatalf("claim = %+v, want the lane's head only", items)
	}
	if p, _ := items[0].DecodePayload(); p.MessageID != 1 {
		t.Fatalf("lane head is message %d, want the first transaction's (1)", p.MessageID)
	}
}

func testReviews(t *testing.T, s *Store) {
	ctx := t.Context()
	rec := func(i int) bridge.ReviewRecord {
		return bridge.ReviewRecord{
			SessionID: bridge.SessionID(fmt.Sprintf("s%d", i)), StartedAt: base.Add(time.Duration(i) * time.Hour),
			UserKey: "k", TenantID: "tenant-1", Reason: "user_asked", Intent: "vpn_issue", Confidence: 0.42,
			BotTurns: []bridge.Turn{{Role: "user", Text: "vpn broken", Intent: "vpn_issue", Confidence: 0.42, At: base}},
		}
	}
	var recs []bridge.ReviewRecord
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		_, err := tx.Review(ctx, "s0")
		wantErr(t, "Review before Put", err, bridge.ErrNotFound)
		for i := range 5 {
			recs = append(recs, rec(i))
			if err := tx.PutReview(ctx, recs[i]); err != nil {
				return err
			}
		}
		got, err := tx.Review(ctx, "s1")
		mustEqual(t, "Review", got, recs[1])
		return err
	})
	// Replace: the outcome is added when the session ends.
	recs[1].EndedAt = recs[1].StartedAt.Add(10 * time.Minute)
	recs[1].CloseReason = bridge.ReasonAgentClosed
	recs[1].HumanTurns = []bridge.Turn{{Role: "agent", Author: "Bo", Text: "fixed", At: base}}
	recs[1].DurationMilli = 600_000
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if err := tx.PutReview(ctx, recs[1]); err != nil {
			return err
		}
		got, err := tx.Review(ctx, "s1")
		mustEqual(t, "Review after replace", got, recs[1])
		return err
	})
	// Sub-millisecond StartedAt is stored at ms precision.
	odd := rec(9)
	odd.StartedAt = base.Add(30*time.Minute + 1500*time.Microsecond)
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if err := tx.PutReview(ctx, odd); err != nil {
			return err
		}
		got, err := tx.Review(ctx, "s9")
		mustEqual(t, "Review StartedAt", got.StartedAt, base.Add(30*time.Minute+time.Millisecond))
		return err
	})

	stream := func(from, to time.Time) []bridge.SessionID {
		t.Helper()
		var ids []bridge.SessionID
		if err := s.Reviews(ctx, from, to, func(r bridge.ReviewRecord) error {
			ids = append(ids, r.SessionID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	mustEqual(t, "Reviews [1h, 3h)", stream(base.Add(time.Hour), base.Add(3*time.Hour)), []bridge.SessionID{"s1", "s2"})
	mustEqual(t, "Reviews [0, 1h)", stream(base, base.Add(time.Hour)), []bridge.SessionID{"s0", "s9"})
	mustEqual(t, "Reviews from just after s1", stream(base.Add(time.Hour+time.Microsecond), base.Add(3*time.Hour)), []bridge.SessionID{"s2"})
	mustEqual(t, "Reviews to just after s2", stream(base.Add(time.Hour), base.Add(2*time.Hour+time.Microsecond)), []bridge.SessionID{"s1", "s2"})
	mustEqual(t, "Reviews of an empty range", len(stream(base.Add(10*time.Hour), base.Add(20*time.Hour))), 0)

	stop := errors.New("enough")
	calls := 0
	err := s.Reviews(ctx, base, base.Add(24*time.Hour), func(bridge.ReviewRecord) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 { //nolint:errorlint // returned unchanged
		t.Fatalf("Reviews with a failing callback = %v after %d calls, want the callback's error after 1", err, calls)
	}

	n, err := s.DeleteReviewsBefore(ctx, base.Add(2*time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("DeleteReviewsBefore(2h) = %d, %v; want 3 (s0, s9, s1)", n, err)
	}
	mustEqual(t, "Reviews after delete", stream(time.Time{}, base.Add(24*time.Hour)), []bridge.SessionID{"s2", "s3", "s4"})
	n, err = s.DeleteReviewsBefore(ctx, base.Add(2*time.Hour))
	if err != nil || n != 0 {
		t.Fatalf("second DeleteReviewsBefore = %d, %v; want 0", n, err)
	}
}
