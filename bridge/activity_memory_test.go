package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Activity ids are remembered per conversation for ActivityMemory; an
// activity older than that is dropped, since its record may be pruned.
func TestRelayActivityMemory(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	now := time.Now()
	act := func(conv bridge.ConversationID, id, text string, at time.Time) bridge.UserActivity {
		return bridge.UserActivity{Kind: bridge.ActivityMessage, ID: id, Text: text, At: at,
			Ref: bridge.ConversationRef{Conversation: conv, ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u", UserName: "Abel Tuter"}}
	}
	steps := []struct {
		name string
		a    bridge.UserActivity
		want []string // what the bot has received in the conversation afterwards
	}{
		{"first delivery", act("a:1", "m-1", "one", now), []string{"one"}},
		{"same id again", act("a:1", "m-1", "one", now), []string{"one"}},
		{"same id, other text", act("a:1", "m-1", "changed", now), []string{"one"}},
		{"new id", act("a:1", "m-2", "two", now), []string{"one", "two"}},
		{"older than the memory", act("a:1", "m-3", "ancient", now.Add(-bridge.DefaultActivityMemory-time.Minute)), []string{"one", "two"}},
		{"just inside the memory", act("a:1", "m-4", "recent", now.Add(-bridge.DefaultActivityMemory+time.Hour)), []string{"one", "two", "recent"}},
	}
	for _, st := range steps {
		if err := h.relay.UserActivity(ctx, st.a); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		h.drain()
		h.bot.mu.Lock()
		got := append([]string(nil), h.bot.received["a:1"]...)
		h.bot.mu.Unlock()
		if len(got) != len(st.want) || (len(got) > 0 && got[len(got)-1] != st.want[len(st.want)-1]) {
			t.Fatalf("%s: the bot received %q, want %q", st.name, got, st.want)
		}
	}
	// The same id in another conversation is another activity.
	if err := h.relay.UserActivity(ctx, act("a:2", "m-1", "elsewhere", now)); err != nil {
		t.Fatal(err)
	}
	h.drain()
	h.bot.mu.Lock()
	defer h.bot.mu.Unlock()
	if got := h.bot.received["a:2"]; len(got) != 1 {
		t.Fatalf("other conversation: the bot received %q", got)
	}
}
