package bridge_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
)

// countingStore counts the read-write transactions the relay opens.
type countingStore struct {
	*store.Store
	updates atomic.Int64
}

func (s *countingStore) Update(ctx context.Context, fn func(tx bridge.Tx) error) error {
	s.updates.Add(1)
	return s.Store.Update(ctx, fn)
}

// deskRows is a batch feed over a desk whose chats each hold one agent row
// in the cursor's second (returned again on every poll, as the Table API
// does) and, once echo is set, the bridge's own post two seconds later; every
// chat's queue entry says an agent is working on it.
type deskRows struct {
	at   time.Time
	echo atomic.Bool
	news atomic.Pointer[bridge.AgentChatID] // a chat with one more agent row
}

func (d *deskRows) PollMany(_ context.Context, cursors map[bridge.AgentChatID]time.Time) (map[bridge.AgentChatID][]bridge.AgentEvent, error) {
	out := make(map[bridge.AgentChatID][]bridge.AgentEvent, len(cursors))
	for chat, since := range cursors {
		rows := []bridge.AgentEvent{{Kind: bridge.AgentMessage, Chat: chat, ExternalID: "m-" + string(chat), Author: "Beth", Text: "hello", At: d.at}}
		if d.echo.Load() {
			rows = append(rows, bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: chat, ExternalID: "e-" + string(chat), Text: "thanks", At: d.at.Add(2 * time.Second), Echo: true})
		}
		if n := d.news.Load(); n != nil && *n == chat {
			rows = append(rows, bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: chat, ExternalID: "n-" + string(chat), Author: "Beth", Text: "anything else?", At: d.at.Add(3 * time.Second)})
		}
		var evs []bridge.AgentEvent
		for _, ev := range rows {
			if !ev.At.Before(since.Truncate(time.Second)) { // second resolution: the cursor's second comes back
				evs = append(evs, ev)
			}
		}
		evs = append(evs, bridge.AgentEvent{Kind: bridge.AgentJoined, Chat: chat, ExternalID: "joined:" + string(chat), Author: "Beth", At: since})
		out[chat] = evs
	}
	return out, nil
}

// TestPollerIdleRunWritesNothing polls live chats over a real store: a run
// that finds nothing new opens no read-write transaction, also the first run
// of a restarted process, and the cursors of chats whose only new rows are
// the bridge's own posts move in one transaction.
func TestPollerIdleRunWritesNothing(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "relay.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const chats = 40
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	err = st.Update(ctx, func(tx bridge.Tx) error {
		for i := range chats {
			id := bridge.SessionID(fmt.Sprint("s", i))
			if err := tx.CreateSession(ctx, bridge.Session{ID: id, Conversation: bridge.ConversationID(fmt.Sprint("a:c", i)), State: bridge.StateLive,
				AgentChatID: bridge.AgentChatID(fmt.Sprint("chat", i)), CreatedAt: at, QueuedAt: at, LiveAt: at, UpdatedAt: at, LastAgentActivity: at}); err != nil {
				return err
			}
			if err := tx.SetCursor(ctx, id, at.Add(400*time.Millisecond)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: st}
	relay := bridge.NewRelay(cs, &fakeBot{}, &fakeDesk{}, &fakeUser{}, nil, bridge.RelayConfig{})
	desk := &deskRows{at: at}
	p, err := bridge.NewPoller(bridge.PollerConfig{Targets: relay, Sink: relay, Batch: desk, Throttle: relay})
	if err != nil {
		t.Fatal(err)
	}
	poll := func(step string, want int64) {
		t.Helper()
		before := cs.updates.Load()
		if err := p.PollOnce(ctx); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if got := cs.updates.Load() - before; got != want {
			t.Errorf("%s: %d read-write transactions, want %d", step, got, want)
		}
	}
	cursors := func() map[bridge.SessionID]time.Time {
		t.Helper()
		var got map[bridge.SessionID]time.Time
		err := st.View(ctx, func(tx bridge.Tx) error {
			var ids []bridge.SessionID
			for i := range chats {
				ids = append(ids, bridge.SessionID(fmt.Sprint("s", i)))
			}
			got, err = tx.Cursors(ctx, ids)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	restart := func() {
		t.Helper()
		if p, err = bridge.NewPoller(bridge.PollerConfig{Targets: relay, Sink: relay, Batch: desk, Throttle: relay}); err != nil {
			t.Fatal(err)
		}
	}

	poll("first run of the process", chats)
	poll("idle run", 0)
	poll("second idle run", 0)

	// A restarted process (or another replica taking the lease) knows
	// nothing yet: the relay tells from the store that every chat's message
	// and join are stored, so only the cursors move past the bridge's own
	// new post in every chat, in one transaction.
	restart()
	desk.echo.Store(true)
	poll("first run after a restart, the bridge's own post in every chat", 1)
	for id, c := range cursors() {
		if want := at.Add(2 * time.Second); !c.Equal(want) {
			t.Errorf("cursor of %s = %v, want %v (past the echo)", id, c, want)
		}
	}
	poll("idle run after the echoes", 0)

	chat := bridge.AgentChatID("chat7")
	desk.news.Store(&chat)
	poll("a new agent message in one chat", 1)
	if got := cursors()["s7"]; !got.Equal(at.Add(3 * time.Second)) {
		t.Errorf("cursor of s7 = %v, want the new message's time", got)
	}
	poll("idle run after the message", 0)
	restart()
	poll("first run after another restart", 0)
	if st := p.Stats(); st.Errors != 0 {
		t.Errorf("poller errors: %+v", st)
	}
}

// TestRelaySettled checks Relay.Settled against what AgentEvents then does:
// a chat called settled must store nothing when its events are handed over.
func TestRelaySettled(t *testing.T) {
	ctx := t.Context()
	h := newHarness(t)
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	states := map[string]bridge.State{"queued": bridge.StateQueued, "live": bridge.StateLive, "closing": bridge.StateClosing, "closed": bridge.StateClosed}
	err := h.st.Update(ctx, func(tx bridge.Tx) error {
		for name, st := range states {
			if err := tx.CreateSession(ctx, bridge.Session{ID: bridge.SessionID("s-" + name), Conversation: bridge.ConversationID("a:" + name), State: st,
				AgentChatID: bridge.AgentChatID(name), CreatedAt: at, QueuedAt: at, UpdatedAt: at}); err != nil {
				return err
			}
		}
		for _, name := range []string{"queued", "live"} {
			s := bridge.SessionID("s-" + name)
			for _, m := range []bridge.Message{
				{SessionID: s, Source: bridge.SourceAgent, ExternalID: "old", Text: "hello", SentAt: at, CreatedAt: at},
				{SessionID: s, Source: bridge.SourceBridge, ExternalID: "queue:position:3", SentAt: at, CreatedAt: at},
			} {
				if _, err := tx.InsertMessage(ctx, &m); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(id string) bridge.AgentEvent {
		return bridge.AgentEvent{Kind: bridge.AgentMessage, ExternalID: id, Author: "Beth", Text: "hi", At: at}
	}
	joined := bridge.AgentEvent{Kind: bridge.AgentJoined, ExternalID: "joined", Author: "Beth", At: at}
	place := func(n int) bridge.AgentEvent {
		return bridge.AgentEvent{Kind: bridge.AgentWaiting, ExternalID: fmt.Sprint("position:", n), QueuePosition: n, At: at}
	}
	echo := bridge.AgentEvent{Kind: bridge.AgentMessage, ExternalID: "echo", Text: "from the user", At: at, Echo: true}
	tests := []struct {
		chat    string
		events  []bridge.AgentEvent
		settled bool
	}{
		{"live", []bridge.AgentEvent{msg("old"), joined, echo}, true},
		{"live", []bridge.AgentEvent{msg("old"), msg("new")}, false},
		{"live", []bridge.AgentEvent{{Kind: bridge.AgentTyping, At: at}}, false},
		{"live", []bridge.AgentEvent{place(2)}, true},
		{"live", []bridge.AgentEvent{{Kind: bridge.AgentEnded, ExternalID: "state:x", At: at, EndReason: bridge.ReasonAgentClosed}}, false},
		{"queued", []bridge.AgentEvent{msg("old"), place(3)}, true},
		{"queued", []bridge.AgentEvent{place(2)}, false},
		{"queued", []bridge.AgentEvent{joined}, false},
		{"queued", []bridge.AgentEvent{{Kind: bridge.AgentTyping, At: at}}, true},
		{"closing", []bridge.AgentEvent{joined, {Kind: bridge.AgentTyping, At: at}}, true},
		{"closing", []bridge.AgentEvent{msg("new")}, false},
		{"closed", []bridge.AgentEvent{msg("new"), joined}, true},
		{"unknown", []bridge.AgentEvent{msg("new")}, true},
	}
	for i, tc := range tests {
		chat := bridge.AgentChatID(tc.chat)
		got, err := h.relay.Settled(ctx, map[bridge.AgentChatID][]bridge.AgentEvent{chat: tc.events})
		if err != nil {
			t.Fatal(err)
		}
		if got[chat] != tc.settled {
			t.Errorf("case %d (%s chat, %+v): settled %v, want %v", i, tc.chat, tc.events, got[chat], tc.settled)
		}
		if !tc.settled {
			continue
		}
		// Settled means AgentEvents stores nothing: no message, no
		// outbox item, no state change.
		before := snapshot(t, h.st)
		if err := h.relay.AgentEvents(ctx, chat, tc.events, false); err != nil {
			t.Fatal(err)
		}
		if after := snapshot(t, h.st); after != before {
			t.Errorf("case %d (%s chat): settled, but AgentEvents changed the store: %s → %s", i, tc.chat, before, after)
		}
	}
}

// snapshot sums up what the relay can store: messages, outbox items and
// session states.
func snapshot(t *testing.T, st *store.Store) string {
	t.Helper()
	var out string
	err := st.View(t.Context(), func(tx bridge.Tx) error {
		ss, err := tx.SessionsInStates(t.Context(), bridge.States...)
		if err != nil {
			return err
		}
		for _, s := range ss {
			n, err := tx.Messages(t.Context(), s.ID, 0)
			if err != nil {
				return err
			}
			out += fmt.Sprintf("%s:%s:%d ", s.ID, s.State, len(n))
		}
		stats, err := tx.OutboxStats(t.Context())
		out += fmt.Sprint(stats)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
