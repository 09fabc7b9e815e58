package bridge_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/handoffhq/handoff/bridge"
)

// outcomeDesk is a desk that can show why a chat ended and records who wrote
// each message it was given.
type outcomeDesk struct {
	*fakeDesk
	mu      sync.Mutex
	reasons []bridge.CloseReason
	authors []string
}

func (d *outcomeDesk) LeaveWithOutcome(ctx context.Context, chat bridge.DeskChat, r bridge.CloseReason) error {
	d.mu.Lock()
	d.reasons = append(d.reasons, r)
	d.mu.Unlock()
	return d.fakeDesk.Leave(ctx, chat)
}

func (d *outcomeDesk) Send(ctx context.Context, chat bridge.DeskChat, m bridge.DeskMessage) error {
	d.mu.Lock()
	d.authors = append(d.authors, m.Author)
	d.mu.Unlock()
	return d.fakeDesk.Send(ctx, chat, m)
}

// A desk implementing DeskOutcome is told the close reason instead of a bare
// leave, and a user message reaches the desk with the employee's name.
func TestRelayDeskOutcomeAndAuthor(t *testing.T) {
	for _, tt := range []struct {
		name string
		end  func(h *harness)
		want bridge.CloseReason
	}{
		{"user ends", func(h *harness) { h.say("conv", "/end_chat") }, bridge.ReasonUserEnded},
		{"agent closes", func(h *harness) { h.agent("chat-1", "a2", "bye", bridge.ReasonAgentClosed) }, bridge.ReasonAgentClosed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			d := &outcomeDesk{fakeDesk: h.desk}
			h.relay = bridge.NewRelay(h.st, h.bot, d, h.user, nil, bridge.RelayConfig{})
			h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 2})
			h.say("conv", "I want an agent")
			h.say("conv", "my laptop is broken")
			h.agent("chat-1", "a1", "Hi, I'm Beth", "")
			tt.end(h)
			if s := h.session("conv"); s.State != bridge.StateClosed {
				t.Fatalf("state %s, want closed", s.State)
			}
			if len(d.reasons) != 1 || d.reasons[0] != tt.want {
				t.Errorf("desk told %v, want [%s]", d.reasons, tt.want)
			}
			if h.desk.left["chat-1"] != 1 {
				t.Errorf("left %d times, want 1", h.desk.left["chat-1"])
			}
			// The user's message carries the employee's name; a bridge note
			// (the "employee left" note when the employee ends) has none.
			users := slices.DeleteFunc(slices.Clone(d.authors), func(a string) bool { return a == "" })
			if len(users) != 1 || users[0] != "Abel Tuter" {
				t.Errorf("desk messages by %q, want the employee's name once", d.authors)
			}
			if notes := len(d.authors) - len(users); notes != map[bridge.CloseReason]int{bridge.ReasonUserEnded: 1}[tt.want] {
				t.Errorf("%d bridge notes to the agent, want 1 only when the employee ended", notes)
			}
		})
	}
}
