package store

import (
	"context"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store/storetest"
)

// TestConcurrentSessionWritesKeepEachOther: on PostgreSQL two transactions
// read one session, change different fields and commit one after the other.
// Both changes must survive. A whole-row write let the later one put back
// the earlier one's field: a status card commit erased the desk chat id the
// desk open had just stored, so the session stayed queued and was never
// polled again (TestThreeReplicasOnPostgres: an employee never got the
// desk's greeting under load). SQLite runs one writer at a time, so the
// interleaving cannot happen there.
func TestConcurrentSessionWritesKeepEachOther(t *testing.T) {
	t.Parallel()
	storetest.DatabaseURL(t)
	s := openPostgres(t)
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	sess := bridge.Session{ID: "s1", Conversation: "c1", State: bridge.StateQueued, QueuedAt: now, CreatedAt: now, UpdatedAt: now}
	if err := s.Update(ctx, func(tx bridge.Tx) error { return tx.CreateSession(ctx, sess) }); err != nil {
		t.Fatal(err)
	}

	// The status card's commit reads the session, then waits while the desk
	// open's commit stores the chat id, then writes the card id.
	read, write := make(chan struct{}), make(chan struct{})
	cardDone := make(chan error, 1)
	go func() {
		cardDone <- s.Update(ctx, func(tx bridge.Tx) error {
			cur, err := tx.Session(ctx, "s1")
			if err != nil {
				return err
			}
			close(read)
			<-write
			cur.StatusCardID = "card-1"
			return tx.UpdateSession(ctx, cur, cur.State)
		})
	}()
	<-read
	err := s.Update(ctx, func(tx bridge.Tx) error {
		cur, err := tx.Session(ctx, "s1")
		if err != nil {
			return err
		}
		cur.AgentChatID, cur.DeskData, cur.UpdatedAt = "chat-1", `{"n":1}`, now.Add(time.Second)
		return tx.UpdateSession(ctx, cur, cur.State)
	})
	close(write)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-cardDone; err != nil {
		t.Fatal(err)
	}
	got := readSession(t, s, "s1")
	if got.AgentChatID != "chat-1" || got.DeskData != `{"n":1}` || got.StatusCardID != "card-1" || got.State != bridge.StateQueued {
		t.Fatalf("session after both commits: chat %q, desk data %q, card %q, state %s; want chat-1, {\"n\":1}, card-1, queued (neither write may undo the other)",
			got.AgentChatID, got.DeskData, got.StatusCardID, got.State)
	}

	// A write that changes nothing still checks the state.
	err = s.Update(ctx, func(tx bridge.Tx) error {
		cur, err := tx.Session(ctx, "s1")
		if err != nil {
			return err
		}
		return tx.UpdateSession(ctx, cur, bridge.StateLive)
	})
	wantErr(t, "unchanged write against the wrong state", err, bridge.ErrConflict)

	// A session read in a list is diffed against that read too: the sweep
	// ends a session it listed without undoing a concurrent card write.
	read, write = make(chan struct{}), make(chan struct{})
	endDone := make(chan error, 1)
	go func() {
		endDone <- s.Update(ctx, func(tx bridge.Tx) error {
			ss, err := tx.SessionsInStates(ctx, bridge.StateQueued)
			if err != nil {
				return err
			}
			close(read)
			<-write
			cur := ss[0]
			cur.State, cur.CloseReason = bridge.StateClosing, bridge.ReasonQueueTimeout
			return tx.UpdateSession(ctx, cur, bridge.StateQueued)
		})
	}()
	<-read
	err = s.Update(ctx, func(tx bridge.Tx) error {
		cur, err := tx.Session(ctx, "s1")
		if err != nil {
			return err
		}
		cur.StatusCardID = "card-2"
		return tx.UpdateSession(ctx, cur, cur.State)
	})
	close(write)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-endDone; err != nil {
		t.Fatal(err)
	}
	got = readSession(t, s, "s1")
	if got.State != bridge.StateClosing || got.StatusCardID != "card-2" || got.AgentChatID != "chat-1" {
		t.Fatalf("after the sweep: state %s, card %q, chat %q; want closing, card-2, chat-1", got.State, got.StatusCardID, got.AgentChatID)
	}
}

func readSession(t *testing.T, s *Store, id bridge.SessionID) (got bridge.Session) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	if err := s.View(ctx, func(tx bridge.Tx) (err error) { got, err = tx.Session(ctx, id); return err }); err != nil {
		t.Fatal(err)
	}
	return got
}
