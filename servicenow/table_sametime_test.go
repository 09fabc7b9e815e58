package servicenow_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

const (
	connectMessagesRoute = "GET /api/now/connect/conversations/{group}/messages"
	// initialResponse is the fake queue's initial agent response.
	initialResponse = "Thank you for contacting support. We are looking into your question now and will be with you shortly."
)

func texts(evs []bridge.AgentEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Text
	}
	return out
}

// TestBatchSameSecondReadOnce: a chat whose newest second holds two rows
// (the bridge's opening rows, an agent's join notice and greeting) needs
// the Connect messages API once to order them; the Table API returns those
// rows again at the cursor on every later poll, and they must not cost that
// read again. Idle polls cost the batch reads only.
func TestBatchSameSecondReadOnce(t *testing.T) {
	for _, n := range []int{1, 5, 120} {
		t.Run(fmt.Sprintf("chats=%d", n), func(t *testing.T) {
			in := newFake(t, snowtest.Options{Now: t0})
			c := newClient(t, in, modeConfig("batch"))
			relay := &memRelay{}
			for i := range n {
				chat := openChat(t, c, fmt.Sprintf("s-%d", i))
				relay.add(fmt.Sprintf("s-%d", i), chat)
				if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
					t.Fatal(err)
				}
				if _, err := in.Say(string(chat), "Beth Anglin", "Hi, I'm Beth"); err != nil {
					t.Fatal(err)
				}
			}
			p := newPoller(t, "batch", c, relay)
			ctx := context.Background()
			if err := p.PollOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if got := in.Requests()[connectMessagesRoute]; got != n {
				t.Fatalf("first poll: %d messages API reads, want %d (one per chat with rows in one second)", got, n)
			}
			for tick := range 3 {
				in.ResetRequests()
				in.Advance(3 * time.Second)
				if err := p.PollOnce(ctx); err != nil {
					t.Fatal(err)
				}
				if got := in.Requests()[connectMessagesRoute]; got != 0 {
					t.Errorf("idle poll %d: %d messages API reads, want 0 (requests %v)", tick+1, got, in.Requests())
				}
			}
			for _, s := range relay.sessions {
				if got := texts(relay.session(s.chat).delivered); fmt.Sprint(got) != fmt.Sprint([]string{initialResponse, "Hi, I'm Beth"}) {
					t.Errorf("chat %s: delivered %q, want the queue's first response and the greeting, once each", s.chat, got)
				}
			}
		})
	}
}

// TestBatchSameSecondNewRow: a new row in the second of rows whose ms times
// are already known is still ordered by the messages API: it arrives once,
// after them.
func TestBatchSameSecondNewRow(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0.Truncate(time.Second)})
	c := newClient(t, in, modeConfig("batch"))
	relay := &memRelay{}
	chat := openChat(t, c, "s-1")
	relay.add("s-1", chat)
	in.Advance(2 * time.Second)
	if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"first", "second"} {
		in.Advance(100 * time.Millisecond)
		if _, err := in.Say(string(chat), "Beth Anglin", text); err != nil {
			t.Fatal(err)
		}
	}
	p := newPoller(t, "batch", c, relay)
	ctx := context.Background()
	if err := p.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	in.Advance(500 * time.Millisecond) // the same second
	if _, err := in.Say(string(chat), "Beth Anglin", "third"); err != nil {
		t.Fatal(err)
	}
	in.ResetRequests()
	if err := p.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := in.Requests()[connectMessagesRoute]; got != 1 {
		t.Errorf("%d messages API reads for a new row in a known second, want 1", got)
	}
	if got := texts(relay.session(chat).delivered); fmt.Sprint(got) != fmt.Sprint([]string{initialResponse, "first", "second", "third"}) {
		t.Errorf("delivered %q, want the queue's first response, first, second, third, once each, in order", got)
	}
}
