package slack

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/slack/slacktest"
)

// manifestGrants reads the bot scopes and bot events manifest.yml asks for.
func manifestGrants(t *testing.T) (scopes, events []string) {
	t.Helper()
	m, err := slacktest.ReadManifest("manifest.yml")
	if err != nil {
		t.Fatal(err)
	}
	return m.OAuth.Scopes.Bot, m.Settings.Events.Bot
}

// privateWorld is a fake workspace whose support channel is private, with
// the bot's grants given, and the desk and its Events API receiver.
func privateWorld(t *testing.T, scopes, events []string) (*slacktest.Server, *Client, *recordingSink) {
	t.Helper()
	fake := slacktest.New(slacktest.Options{Channel: "C0PRIVATE1", Private: true, Scopes: scopes, BotEvents: events,
		RetryDelays: []time.Duration{}})
	t.Cleanup(fake.Close)
	fake.AddUser("U0AGENT001", "Beth A.")
	desk, err := New(Config{Token: fake.Token(), Channel: fake.Channel(), APIURL: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{}
	h, err := NewHandler(HandlerConfig{SigningSecret: fake.SigningSecret(), OrderWindow: -1}, desk, sink, sink)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /events", h.ServeEvents)
	mux.HandleFunc("POST /interactive", h.ServeInteractive)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	fake.SetTargets(srv.URL+"/events", srv.URL+"/interactive")
	return fake, desk, sink
}

// A handoff in a private support channel works with exactly the grants of
// manifest.yml (groups:history, message.groups): the parent, the employee's
// messages in the thread, an agent's reply back, and the ending. Without
// those grants Slack says what is missing, and an app that is not in the
// private channel is told channel_not_found, as Slack does.
func TestPrivateChannelThread(t *testing.T) {
	scopes, events := manifestGrants(t)
	for _, want := range []string{"groups:history", "channels:history", "chat:write", "users:read"} {
		if !slices.Contains(scopes, want) {
			t.Errorf("manifest.yml lacks the bot scope %s", want)
		}
	}
	for _, want := range []string{"message.groups", "message.channels"} {
		if !slices.Contains(events, want) {
			t.Errorf("manifest.yml lacks the bot event %s", want)
		}
	}
	ctx := context.Background()

	t.Run("with the manifest's grants", func(t *testing.T) {
		fake, desk, sink := privateWorld(t, scopes, events)
		chat, err := desk.Open(ctx, bridge.Handoff{Session: "s1", UserName: "Megan Bowen", Reason: "user_asked"})
		if err != nil {
			t.Fatal(err)
		}
		_, ts, _ := SplitChatID(chat.ID)
		if err := desk.Send(ctx, chat, bridge.DeskMessage{Key: "s1/1", Author: "Megan Bowen", Text: "my laptop is broken"}); err != nil {
			t.Fatal(err)
		}
		// A retried send reads the private thread (groups:history) first.
		if err := desk.Send(ctx, chat, bridge.DeskMessage{Key: "s1/1", Author: "Megan Bowen", Text: "my laptop is broken", Retry: true}); err != nil {
			t.Fatal(err)
		}
		if n := len(fake.Thread(ts)); n != 1 {
			t.Errorf("the thread holds %d posts, want the employee's message once", n)
		}
		p, err := fake.Reply("U0AGENT001", ts, "which model?")
		if err != nil || p.Status != http.StatusOK {
			t.Fatalf("agent reply in the private thread: %+v %v", p, err)
		}
		_, evs := sink.snapshot()
		if len(evs) != 2 || evs[1].Text != "which model?" || evs[1].Chat != chat.ID {
			t.Fatalf("stored %+v, want the joined line and the reply", evs)
		}
		if err := desk.LeaveWithOutcome(ctx, chat, bridge.ReasonAgentClosed); err != nil {
			t.Fatal(err)
		}
		if pm, _ := fake.Parent(ts); !strings.Contains(fmtBlocksMaps(pm.Blocks), "Ended") {
			t.Errorf("the parent does not show the outcome: %s", fmtBlocksMaps(pm.Blocks))
		}
	})

	t.Run("without groups:history", func(t *testing.T) {
		_, desk, _ := privateWorld(t, slices.DeleteFunc(slices.Clone(scopes), func(s string) bool { return s == "groups:history" }), events)
		chat, err := desk.Open(ctx, bridge.Handoff{Session: "s1", UserName: "Megan Bowen"})
		if err != nil {
			t.Fatal(err)
		}
		err = desk.Send(ctx, chat, bridge.DeskMessage{Key: "s1/1", Author: "Megan Bowen", Text: "hi", Retry: true})
		if !errors.Is(err, bridge.ErrUnauthorized) || !strings.Contains(err.Error(), "groups:history") {
			t.Errorf("a retried send without groups:history: %v, want missing_scope naming groups:history", err)
		}
	})

	t.Run("without message.groups", func(t *testing.T) {
		fake, desk, sink := privateWorld(t, scopes, slices.DeleteFunc(slices.Clone(events), func(s string) bool { return s == "message.groups" }))
		chat, err := desk.Open(ctx, bridge.Handoff{Session: "s1", UserName: "Megan Bowen"})
		if err != nil {
			t.Fatal(err)
		}
		_, ts, _ := SplitChatID(chat.ID)
		if p, _ := fake.Reply("U0AGENT001", ts, "hello?"); p.Status != 0 {
			t.Errorf("a reply in a private channel was delivered without message.groups: %+v", p)
		}
		if _, evs := sink.snapshot(); len(evs) != 0 {
			t.Errorf("stored %+v", evs)
		}
	})

	t.Run("app not in the private channel", func(t *testing.T) {
		fake, desk, _ := privateWorld(t, scopes, events)
		fake.SetMember(false)
		_, err := desk.Open(ctx, bridge.Handoff{Session: "s1", UserName: "Megan Bowen"})
		if err == nil || !strings.Contains(err.Error(), "channel_not_found") || !bridge.IsPermanent(err) {
			t.Errorf("open in a private channel the app is not in: %v, want a permanent channel_not_found", err)
		}
	})
}

func fmtBlocksMaps(bs []map[string]any) string {
	out := make([]block, len(bs))
	for i, b := range bs {
		out[i] = b
	}
	return fmtBlocks(out)
}
