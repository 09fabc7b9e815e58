package bridge_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// keyBot records every BotInput and fails the first failFirst calls as a
// timeout would.
type keyBot struct {
	fakeBot
	mu        sync.Mutex
	inputs    []bridge.BotInput
	failFirst int
}

func (b *keyBot) Send(ctx context.Context, in bridge.BotInput) ([]bridge.BotReply, error) {
	b.mu.Lock()
	b.inputs = append(b.inputs, in)
	fail := len(b.inputs) <= b.failFirst
	b.mu.Unlock()
	if fail {
		return nil, context.DeadlineExceeded
	}
	return b.fakeBot.Send(ctx, in)
}

// The bot is given the activity id as the message key, and a retry says so,
// so the bot can tell an answered message from a new one.
func TestBotSendCarriesKeyAndRetry(t *testing.T) {
	h := newHarness(t)
	bot := &keyBot{failFirst: 1}
	h.relay = bridge.NewRelay(h.st, bot, h.desk, h.user, nil, bridge.RelayConfig{})
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 3, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	h.say("a:1", "hello") // activity act-1
	bot.mu.Lock()
	defer bot.mu.Unlock()
	if len(bot.inputs) != 2 {
		t.Fatalf("bot called %d times, want 2 (a failed attempt and its retry)", len(bot.inputs))
	}
	for i, want := range []bool{false, true} {
		in := bot.inputs[i]
		if in.Key != "act-1" || in.Retry != want {
			t.Errorf("attempt %d: Key %q Retry %v, want act-1 %v", i+1, in.Key, in.Retry, want)
		}
	}
	if got := h.user.lines("a:1"); len(got) != 1 || got[0] != "bot: hello" {
		t.Fatalf("user saw %q", got)
	}
}
