package main

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// TestDemoVAInBrowser runs `handoff demo --desk va` in two headless Chromium
// tabs: the handoff goes through the Virtual Agent Bot Integration API (the
// fake's VA side), the employee sees the queue position and estimated wait
// from the wait-time spinner, the agent accepts in the console, messages go
// both ways, the agent's typing reaches Teams, the employee's typing reaches
// the agent, and the agent's close ends the chat.
func TestDemoVAInBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	dir := artifactDir(t)

	log := slog.New(slog.NewTextHandler(demoTestLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := startDemo(context.Background(), demoOptions{Addr: "127.0.0.1:0", BridgeAddr: "127.0.0.1:0",
		Desk: "va", PollWait: 10 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("stop the demo: %v", err)
		}
	})
	if d.opts.Delivery != "webhook" {
		t.Errorf("--desk va delivery %q, want webhook", d.opts.Delivery)
	}
	emp := newTab(t, "va-employee", chrome, dir)
	agent := newTab(t, "va-agent", chrome, dir)
	tx := bridge.DefaultTexts()
	const user = "Megan Bowen"

	emp.open(d.URL + "/employee?user=" + url.QueryEscape(user))
	emp.waitText(".msg-notice", tx.Welcome)
	emp.say("#text", "#send", "talk to live agent")
	emp.waitText(".msg-notice .bubble", tx.Connecting)
	// The VA's wait-time spinner, as a queue notice.
	emp.waitText(".msg-notice .bubble", "You are in the queue, estimated wait")
	emp.screenshot("queued")

	agent.open(d.URL + "/agent")
	agent.waitText("#queue .queued .requester", user)
	group := vaGroup(t, d)
	agent.do("accept", chromedp.Click(chromedp.CSS("#queue .queued .accept")))
	agent.waitText("#chats article.open .badge.state", "Work in Progress")
	emp.waitText(".msg-agent .bubble", snowtest.DefaultGreeting)
	emp.waitText("#status", "Chatting with")

	emp.say("#text", "#send", "my VPN drops every hour")
	agent.waitText("#chats article.open .dmsg-requester .bubble", "my VPN drops every hour")
	agent.say("#chats article.open .reply-text", "#chats article.open form.reply button", "Which client version?")
	emp.waitText(".msg-agent .bubble", "Which client version?")

	// Typing both ways.
	emu := teamstest.NewUser(user)
	conv := d.channel.ConversationID(emu)
	if err := d.sn.AgentTyping(group); err != nil {
		t.Fatal(err)
	}
	eventuallyVA(t, "the agent's typing reaches Teams", func() bool {
		return slices.ContainsFunc(d.conn.Sent(conv), func(s teamstest.Sent) bool { return s.Type == "typing" })
	})
	if _, err := d.channel.Post(context.Background(), d.channel.Typing(emu)); err != nil {
		t.Fatal(err)
	}
	eventuallyVA(t, "the employee's typing reaches the agent (TYPING)", func() bool {
		c, _ := d.sn.VAConversation(group)
		return c.Typing > 0
	})
	emp.screenshot("live")
	agent.screenshot("live")

	agent.do("close", chromedp.Click(chromedp.CSS("#chats article.open .close-chat")))
	emp.waitText(".msg-notice .bubble", tx.AgentClosed)
	emp.waitText(".msg-notice .bubble", tx.BotBack)

	c, ok := d.sn.VAConversation(group)
	if !ok || !slices.Contains(c.Actions, "AGENT") || !slices.Contains(c.Actions, "") || c.Viewing == 0 {
		t.Errorf("the chat did not run through the Virtual Agent API: %+v", c)
	}
	if log := d.sn.VALog(); len(log) != 0 {
		t.Errorf("the instance dropped requests: %q", log)
	}
}

// vaGroup returns the group of the demo's only VA conversation.
func vaGroup(t *testing.T, d *demo) string {
	t.Helper()
	var group string
	eventuallyVA(t, "the VA conversation", func() bool {
		for _, c := range d.sn.Chats() {
			if _, ok := d.sn.VAConversation(c.Group); ok {
				group = c.Group
				return true
			}
		}
		return false
	})
	return group
}

// eventuallyVA polls cond every 50 ms for up to 30 s.
func eventuallyVA(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
