package teams

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/handoffhq/handoff/bridge"
)

const testChannel = "19:3a8ba17d4c5e4b2f8a1b2c3d4e5f6a7b@thread.tacv2"

// TestPostToChannel posts a card to a channel through the fake connector:
// the request has the documented ConversationParameters shape (the keys of
// teamstest/testdata/create_conversation_channel.json), the card carries the
// facts and the open-URL link, and the answer's thread id comes back.
func TestPostToChannel(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	card := bridge.Card{Title: "Digest", Lines: []string{"**3** handoffs"}, Facts: []bridge.Fact{{Title: "Top reasons", Value: "fallback 2"}},
		Links: []bridge.Link{{Title: "Open the review inbox", URL: "https://bridge.example.com/review?from=2026-11-09"}}}
	id, err := f.client.PostToChannel(ctx, ChannelRef{ChannelID: testChannel, ServiceURL: f.conn.ServiceURL(), TenantID: testTenant, BotID: "28:" + testAppID}, card)
	if err != nil {
		t.Fatal(err)
	}
	sent := f.conn.Sent(testChannel)
	if len(sent) != 1 {
		t.Fatalf("channel got %d posts, want 1", len(sent))
	}
	if want := testChannel + ";messageid=" + sent[0].ID; id != want {
		t.Errorf("thread id = %q, want %q", id, want)
	}
	if len(sent[0].Attachments) != 1 || sent[0].Attachments[0].ContentType != ContentTypeAdaptiveCard {
		t.Fatalf("post attachments = %+v", sent[0].Attachments)
	}
	var ac struct {
		Actions []struct{ Type, Title, URL string }
	}
	if err := json.Unmarshal(sent[0].Attachments[0].Content, &ac); err != nil {
		t.Fatal(err)
	}
	if len(ac.Actions) != 1 || ac.Actions[0].Type != "Action.OpenUrl" || ac.Actions[0].URL != card.Links[0].URL {
		t.Errorf("card actions = %+v, want one Action.OpenUrl to the inbox", ac.Actions)
	}
	for _, s := range []string{"Top reasons", "fallback 2", "**3** handoffs"} {
		if !strings.Contains(string(sent[0].Attachments[0].Content), s) {
			t.Errorf("card lacks %q", s)
		}
	}

	// Our request has the documented shape: the same keys as the example.
	raw, err := os.ReadFile("teamstest/testdata/create_conversation_channel.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(channelConversation{IsGroup: true, TenantID: testTenant})
	if err != nil {
		t.Fatal(err)
	}
	var ours map[string]json.RawMessage
	_ = json.Unmarshal(body, &ours)
	delete(doc, "bot") // omitted when no bot id is known
	if got, want := slices.Sorted(maps.Keys(ours)), slices.Sorted(maps.Keys(doc)); !slices.Equal(got, want) {
		t.Errorf("request keys = %v, documented %v", got, want)
	}
}

func TestPostToChannelRefused(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	for _, bad := range []string{"", "a:1xyz", testChannel + ";messageid=17", "19:abc@unq.gbl.spaces"} {
		_, err := f.client.PostToChannel(ctx, ChannelRef{ChannelID: bad, ServiceURL: f.conn.ServiceURL(), TenantID: testTenant}, bridge.Card{Title: "x"})
		if err == nil || !bridge.IsPermanent(err) {
			t.Errorf("channel %q: err = %v, want a permanent error", bad, err)
		}
	}
	_, err := f.client.PostToChannel(ctx, ChannelRef{ChannelID: testChannel, ServiceURL: "https://evil.example.com/", TenantID: testTenant}, bridge.Card{Title: "x"})
	if err == nil || !bridge.IsPermanent(err) {
		t.Errorf("off-list service URL: err = %v, want permanent", err)
	}
	f.conn.Block(testChannel)
	_, err = f.client.PostToChannel(ctx, ChannelRef{ChannelID: testChannel, ServiceURL: f.conn.ServiceURL(), TenantID: testTenant}, bridge.Card{Title: "x"})
	if !errors.Is(err, bridge.ErrUserUnreachable) {
		t.Errorf("bot removed from the team: err = %v, want ErrUserUnreachable", err)
	}
	if n := len(f.conn.Sent(testChannel)); n != 0 {
		t.Errorf("%d posts stored, want 0", n)
	}
}
