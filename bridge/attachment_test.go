package bridge_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
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

// TestAgentFilesReachUser: an agent's message with files reaches the user
// port once, with its text, author and only the usable files; a file whose
// link cannot be shown (not http(s), too long) does not fail the send: the
// employee gets a notice naming it, after the agent's message, and the
// session stays live. How a channel draws the files is its adapter's test
// (teams: TestClientAttachmentLinks, end to end: cmd/handoff TestFilesEndToEnd).
func TestAgentFilesReachUser(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var sent []bridge.UserMessage
	h.user.hook = func(_ context.Context, m bridge.UserMessage) error {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, m)
		return nil
	}
	const conv = "a:1files"
	h.say(conv, "agent please")
	chat := h.session(conv).AgentChatID
	usable := bridge.Attachment{Name: "vpn-guide.pdf", ContentType: "application/pdf", URL: "https://acme.service-now.com/api/now/attachment/615ea769c0a80166001cf5f2367302f5/file", Size: 462_000}
	ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: chat, ExternalID: "msg-files", Author: "Beth Anglin", Text: "Here you go", At: time.Now(),
		Attachments: []bridge.Attachment{
			usable,
			{Name: "script.js", ContentType: "text/javascript", URL: "javascript:alert(1)"},
			{Name: "huge-link.png", ContentType: "image/png", URL: "https://files.example/" + strings.Repeat("x", bridge.MaxAttachmentURL)},
		}}
	mu.Lock()
	sent = nil
	mu.Unlock()
	for range 2 { // a repeated delivery of the same desk message changes nothing
		if err := h.relay.AgentEvents(context.Background(), chat, []bridge.AgentEvent{ev}, true); err != nil {
			t.Fatal(err)
		}
		h.drain()
	}
	mu.Lock()
	defer mu.Unlock()
	agentAt, notices := -1, 0
	for i, m := range sent {
		if strings.Contains(m.Text, "Here you go") {
			if agentAt >= 0 {
				t.Errorf("the agent's message was sent twice: %+v", sent)
			}
			agentAt = i
			if m.Author != "Beth Anglin" {
				t.Errorf("author %q, want Beth Anglin", m.Author)
			}
			if len(m.Attachments) != 1 || m.Attachments[0] != usable {
				t.Errorf("attachments %+v, want only the usable file", m.Attachments)
			}
		}
		for _, name := range []string{"script.js", "huge-link.png"} {
			if strings.Contains(m.Text, "The agent sent the file "+name+", but it cannot be shown here.") {
				notices++
				if !m.Notice {
					t.Errorf("notice for %s is not marked as a notice", name)
				}
				if agentAt < 0 {
					t.Errorf("notice for %s came before the agent's message: %+v", name, sent)
				}
			}
		}
	}
	if agentAt < 0 || notices != 2 {
		t.Fatalf("sent %+v: want the agent's message and one notice per unusable file", sent)
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
