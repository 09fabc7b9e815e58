package bridge_test

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams"
	"github.com/handoffhq/handoff/teams/teamstest"
)

func TestAttachmentLinkProblem(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want string // "" for a usable link, else a part of the problem
	}{
		{"https://acme.service-now.com/api/now/attachment/615e/file", ""},
		{"http://files.example/guide.pdf", ""},
		{"", "no link"},
		{"   ", "no link"},
		{"javascript:alert(1)", "not an http(s) URL"},
		{"ftp://files.example/guide.pdf", "not an http(s) URL"},
		{"file:///etc/passwd", "not an http(s) URL"},
		{"/api/now/attachment/615e/file", "not an http(s) URL"},
		{"https:///no-host", "no host"},
		{"https://files.example/%zz", "not a URL"},
		{"https://files.example/" + strings.Repeat("a", bridge.MaxAttachmentURL), "longer than 2048"},
	} {
		got := bridge.Attachment{URL: tt.url}.LinkProblem()
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("LinkProblem(%.40q) = %q, want %q", tt.url, got, tt.want)
		}
	}
	for _, tt := range []struct {
		a    bridge.Attachment
		want string
	}{
		{bridge.Attachment{Name: " guide.pdf ", ContentType: "application/pdf"}, "guide.pdf"},
		{bridge.Attachment{ContentType: "image/png"}, "image/png"},
		{bridge.Attachment{}, "file"},
		{bridge.Attachment{Name: strings.Repeat("é", 100)}, strings.Repeat("é", 79) + "…"},
	} {
		if got := tt.a.Label(); got != tt.want {
			t.Errorf("Label(%+v) = %q, want %q", tt.a, got, tt.want)
		}
	}
}

// TestAgentFilesReachTeams: an agent's message with files reaches the fake
// Bot Connector through the real Teams client: the text with the agent's
// name, then one link card per usable file (name, type, size). A file whose
// link cannot be shown (not http(s), too long) does not fail the send: the
// employee gets a notice naming it, after the rest of the message, and the
// session stays live.
func TestAgentFilesReachTeams(t *testing.T) {
	issuer := teamstest.NewIssuer()
	t.Cleanup(issuer.Close)
	issuer.AddClient("app-files", "secret")
	conn := teamstest.NewConnector(teamstest.ConnectorConfig{Issuer: issuer})
	t.Cleanup(conn.Close)
	client, err := teams.NewClient(teams.ClientConfig{AppID: "app-files", AppPassword: "secret", TenantID: "tenant-1",
		TokenURL: issuer.TokenURL("{tenant}"), ExtraServiceURLHosts: []string{"127.0.0.1"},
		RetryBaseDelay: time.Millisecond, RetryMaxDelay: 10 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	h.relay = bridge.NewRelay(h.st, h.bot, h.desk, client, nil, bridge.RelayConfig{})
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	const conv = "a:1files"
	ref := bridge.ConversationRef{Conversation: conv, ServiceURL: conn.ServiceURL(), ChannelID: "msteams", ConversationType: "personal",
		TenantID: "tenant-1", BotID: "28:app-files", UserID: "29:u", UserName: "Abel Tuter", Locale: "en-US"}
	if err := h.relay.UserActivity(context.Background(), bridge.UserActivity{Kind: bridge.ActivityMessage, ID: "act-1", Text: "agent please", Ref: ref}); err != nil {
		t.Fatal(err)
	}
	h.drain()
	chat := h.session(conv).AgentChatID
	ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: chat, ExternalID: "msg-files", Author: "Beth Anglin", Text: "Here you go", At: time.Now(),
		Attachments: []bridge.Attachment{
			{Name: "vpn-guide.pdf", ContentType: "application/pdf", URL: "https://acme.service-now.com/api/now/attachment/615ea769c0a80166001cf5f2367302f5/file", Size: 462_000},
			{Name: "script.js", ContentType: "text/javascript", URL: "javascript:alert(1)"},
			{Name: "huge-link.png", ContentType: "image/png", URL: "https://files.example/" + strings.Repeat("x", bridge.MaxAttachmentURL)},
		}}
	for range 2 { // a repeated delivery of the same desk message changes nothing
		if err := h.relay.AgentEvents(context.Background(), chat, []bridge.AgentEvent{ev}, true); err != nil {
			t.Fatal(err)
		}
		h.drain()
	}
	var texts, cards []string
	for _, s := range conn.Messages(conv) {
		switch {
		case len(s.Attachments) == 1 && strings.Contains(string(s.Attachments[0].Content), "📎"):
			cards = append(cards, string(s.Attachments[0].Content))
		case len(s.Attachments) == 0:
			texts = append(texts, s.Text)
		}
	}
	if len(cards) != 1 {
		t.Fatalf("link cards %q, want the one usable file", cards)
	}
	for _, want := range []string{"[vpn-guide.pdf](https://acme.service-now.com/api/now/attachment/615ea769c0a80166001cf5f2367302f5/file)", "application/pdf · 451 KB"} {
		if !strings.Contains(cards[0], want) {
			t.Errorf("link card %s lacks %q", cards[0], want)
		}
	}
	var agentAt, notices = -1, 0
	for i, x := range texts {
		if strings.Contains(x, "Here you go") {
			agentAt = i
		}
		for _, name := range []string{"script.js", "huge-link.png"} {
			if strings.Contains(x, "The agent sent the file "+name+", but it cannot be shown here.") {
				notices++
				if agentAt < 0 {
					t.Errorf("notice for %s came before the agent's message: %q", name, texts)
				}
			}
		}
	}
	if agentAt < 0 || notices != 2 {
		t.Fatalf("texts %q: want the agent's message and one notice per unusable file", texts)
	}
	if s := h.session(conv); s.State != bridge.StateLive {
		t.Fatalf("state %s, want live (an unusable file must not end the chat)", s.State)
	}
}

// FuzzAttachmentLinkProblem: a link the bridge lets through is always an
// absolute http(s) URL with a host, within MaxAttachmentURL.
func FuzzAttachmentLinkProblem(f *testing.F) {
	for _, s := range []string{"https://acme.service-now.com/api/now/attachment/1/file", "javascript:alert(1)", "", "http://[::1]:80/x", "https:///x", "HTTPS://A/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, link string) {
		if (bridge.Attachment{URL: link}).LinkProblem() != "" {
			return
		}
		u, err := url.Parse(link)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(link) > bridge.MaxAttachmentURL {
			t.Fatalf("LinkProblem(%q) = \"\", but it is not a usable link (%v)", link, err)
		}
	})
}
