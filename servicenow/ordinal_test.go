package servicenow_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// countText counts the chat's messages with text.
func countText(in *snowtest.Instance, chat bridge.AgentChatID, text string) int {
	n := 0
	for _, m := range in.Messages(string(chat)) {
		if m.Text == text {
			n++
		}
	}
	return n
}

// TestIdenticalTextsStayTwoMessages: the employee sends "yes", it is posted;
// then "yes" again, whose post fails with 500 three times. The retries count
// the bridge's own messages (one, as confirmed) instead of looking for the
// text, so the second "yes" is posted too: two messages, each once. The same
// holds for an outbox retry (m.Retry) of the second one.
func TestIdenticalTextsStayTwoMessages(t *testing.T) {
	for _, outboxRetry := range []bool{false, true} {
		name := map[bool]string{false: "in-call retries", true: "outbox retry"}[outboxRetry]
		t.Run(name, func(t *testing.T) {
			in := newFake(t, snowtest.Options{Now: t0})
			c := newClient(t, in, func(cfg *servicenow.Config) { cfg.Now = in.Now; cfg.MaxRetries = 4 })
			chat := openChat(t, c, "s-1")
			ctx := context.Background()
			if err := c.Send(ctx, dc(chat), bridge.DeskMessage{Key: "s-1/1", Text: "yes", Confirmed: 0}); err != nil {
				t.Fatal(err)
			}
			in.Advance(5 * time.Second)
			in.InjectFault(snowtest.Fault{Method: http.MethodPost, Path: "/api/now/connect/conversations/", Status: 500, Times: 3})
			second := bridge.DeskMessage{Key: "s-1/2", Text: "yes", Confirmed: 1, FirstTry: in.Now()}
			if outboxRetry {
				c2 := newClient(t, in, func(cfg *servicenow.Config) { cfg.Now = in.Now; cfg.MaxRetries = -1 })
				for range 3 { // three failed calls, each a separate outbox attempt
					if err := c2.Send(ctx, dc(chat), second); err == nil {
						t.Fatal("Send succeeded through the fault")
					}
					second.Retry = true
				}
				if err := c2.Send(ctx, dc(chat), second); err != nil {
					t.Fatal(err)
				}
			} else if err := c.Send(ctx, dc(chat), second); err != nil {
				t.Fatal(err)
			}
			if n := countText(in, chat, "yes"); n != 2 {
				t.Errorf(`"yes" stored %d times, want 2 (one per message)`, n)
			}
			// A retry of the second one once it is there posts nothing.
			second.Retry = true
			if err := c.Send(ctx, dc(chat), second); err != nil {
				t.Fatal(err)
			}
			if n := countText(in, chat, "yes"); n != 2 {
				t.Errorf(`"yes" stored %d times after a retry of a posted message, want 2`, n)
			}
		})
	}
}

// TestSlowCommitPostedOnce: the instance handles the post only after the
// client's timeout (and a little later still). The retry waits for the
// commit to become visible (CommitWait) before deciding, so the message is
// stored once, not twice.
func TestSlowCommitPostedOnce(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, func(cfg *servicenow.Config) {
		cfg.Now = in.Now
		cfg.Timeout = 300 * time.Millisecond
		cfg.CommitWait = 30 * time.Second // generous: the wait ends as soon as the post shows
	})
	chat := openChat(t, c, "s-1")
	in.InjectFault(snowtest.Fault{Method: http.MethodPost, Path: "/api/now/connect/conversations/", CommitAfterGone: true, CommitDelay: 500 * time.Millisecond})
	start := time.Now()
	if err := c.Send(context.Background(), dc(chat), bridge.DeskMessage{Key: "s-1/1", Text: "please call me", FirstTry: in.Now()}); err != nil {
		t.Fatal(err)
	}
	in.WaitLateCommits()
	if n := countText(in, chat, "please call me"); n != 1 {
		t.Errorf("message stored %d times, want once", n)
	}
	t.Logf("send with a slow commit took %v", time.Since(start))
}
