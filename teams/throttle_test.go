package teams

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
)

// TestDispatchThrottledByConnector (issue 11.1, Teams connector): the Bot
// Connector (teamstest) answers 429 with Retry-After for 3 s, longer than
// this client waits in place (MaxRetryAfter 500 ms) and longer than two
// attempts would last. Driven by the real dispatcher, the session stays
// live and every message reaches the employee once, in order, after the
// limit lifts.
func TestDispatchThrottledByConnector(t *testing.T) {
	f := newClientFixture(t, func(c *ClientConfig) { c.MaxRetryAfter = 500 * time.Millisecond; c.MaxRetries = 2 })
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "throttle.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const conv = "a:1throttled"
	now := time.Now()
	s := bridge.Session{ID: "s1", Conversation: conv, State: bridge.StateLive, AgentChatID: "chat-1", CreatedAt: now, UpdatedAt: now}
	var want []string
	err = st.Update(ctx, func(tx bridge.Tx) error {
		if err := tx.PutConversationRef(ctx, f.ref(conv)); err != nil {
			return err
		}
		if err := tx.CreateSession(ctx, s); err != nil {
			return err
		}
		for i := 1; i <= 3; i++ {
			m := bridge.Message{SessionID: s.ID, Source: bridge.SourceAgent, ExternalID: fmt.Sprint("sys-", i),
				Author: "Beth", Text: fmt.Sprint("answer ", i), SentAt: now, CreatedAt: now}
			if _, err := tx.InsertMessage(ctx, &m); err != nil {
				return err
			}
			want = append(want, m.Text)
			if err := tx.Enqueue(ctx, bridge.NewOutboxItem(s.ID, s.Conversation, bridge.KindUserSend, bridge.OutboxPayload{MessageID: m.ID}, now)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.conn.ThrottleFor(conv, 3*time.Second)
	relay := bridge.NewRelay(st, nil, nil, f.client, nil, bridge.RelayConfig{})
	d := bridge.NewDispatcher(relay, bridge.DispatchConfig{MaxAttempts: 2, BaseBackoff: 10 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); d.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	sent, err := f.conn.WaitFor(conv, 3, 30*time.Second)
	if err != nil {
		t.Fatalf("messages after the throttle: %v", err)
	}
	var got []string
	for _, m := range sent {
		_, text, _ := ReadMessage(m.Text) // without the agent's name line
		got = append(got, text)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("employee got %q, want each message once in order: %q", got, want)
	}
	err = st.Update(ctx, func(tx bridge.Tx) error {
		s, err := tx.Session(ctx, s.ID)
		if err == nil && s.State != bridge.StateLive {
			t.Errorf("session %s/%s after the throttle, want live", s.State, s.CloseReason)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
