package slack

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/slack/slacktest"
)

func fakeDesk(t *testing.T) (*Client, *slacktest.Server) {
	t.Helper()
	f := slacktest.New(slacktest.Options{})
	t.Cleanup(f.Close)
	c, err := New(Config{Token: f.Token(), Channel: f.Channel(), APIURL: f.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

// A retried Open adopts the parent an earlier attempt posted (found by the
// session in its metadata) instead of posting a second one.
func TestOpenRetryAdoptsEarlierParent(t *testing.T) {
	c, f := fakeDesk(t)
	ctx := context.Background()
	h := bridge.Handoff{Session: "s1", UserName: "Megan Bowen", Reason: "user_asked"}
	first, err := c.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	h.Retry = true
	again, err := c.Open(ctx, h)
	if err != nil || again.ID != first.ID {
		t.Fatalf("retry opened %s (%v), want the earlier %s", again, err, first)
	}
	if n := len(f.Parents()); n != 1 {
		t.Fatalf("%d parents, want 1", n)
	}
	other, err := c.Open(ctx, bridge.Handoff{Session: "s2", UserName: "Alex Wilber", Retry: true})
	if err != nil || other.ID == first.ID || len(f.Parents()) != 2 {
		t.Fatalf("another session's retry: %s %v, parents %d", other, err, len(f.Parents()))
	}
}

// Leaving twice (a retried leave) tells the thread once and leaves the parent
// showing the outcome without buttons; a thread that is gone is ErrChatClosed.
func TestLeaveWithOutcomeOnce(t *testing.T) {
	c, f := fakeDesk(t)
	ctx := context.Background()
	chat, err := c.Open(ctx, bridge.Handoff{Session: "s1", UserName: "Megan Bowen"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.LeaveWithOutcome(ctx, chat, bridge.ReasonUserEnded); err != nil {
			t.Fatal(err)
		}
	}
	_, ts, _ := SplitChatID(chat.ID)
	var lines []string
	for _, m := range f.Thread(ts) {
		lines = append(lines, m.Text)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "The employee ended the chat") {
		t.Errorf("thread %q, want one outcome line", lines)
	}
	p, _ := f.Parent(ts)
	if got := fmtBlocksAny(p.Blocks); strings.Contains(got, actionTake) || strings.Contains(got, actionClose) || !strings.Contains(got, "Ended") {
		t.Errorf("parent %s", got)
	}
	if err := c.Leave(ctx, bridge.DeskChat{ID: ChatID(f.Channel(), "1.000001")}); !errors.Is(err, bridge.ErrChatClosed) {
		t.Errorf("leave of an unknown thread: %v, want ErrChatClosed", err)
	}
}

// A rate-limited post surfaces as bridge.ThrottledError with Slack's
// Retry-After, so the dispatcher reschedules without spending an attempt.
func TestSendRateLimited(t *testing.T) {
	c, f := fakeDesk(t)
	now := time.Now()
	c.now = func() time.Time { return now }
	chat, err := c.Open(context.Background(), bridge.Handoff{Session: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	f.SetRetryAfter(7)
	f.Fail("chat.postMessage", "ratelimited", 1)
	err = c.Send(context.Background(), chat, bridge.DeskMessage{Key: "k1", Text: "hi", Author: "Megan"})
	th, ok := bridge.Throttled(err)
	if !ok || !th.Until.Equal(now.Add(7*time.Second)) || bridge.IsPermanent(err) {
		t.Fatalf("err %v, want throttled for 7s", err)
	}
	if err := c.Send(context.Background(), chat, bridge.DeskMessage{Key: "k1", Text: "hi", Author: "Megan", Retry: true}); err != nil {
		t.Fatal(err)
	}
	_, ts, _ := SplitChatID(chat.ID)
	if th := f.Thread(ts); len(th) != 1 || th[0].Text != "*Megan:* hi" {
		t.Errorf("thread %+v", th)
	}
}

func fmtBlocksAny(bs []map[string]any) string {
	out := make([]block, len(bs))
	for i, b := range bs {
		out[i] = b
	}
	return fmtBlocks(out)
}
