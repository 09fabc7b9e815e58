package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// TestDemoVAInBrowser runs `handoff demo --desk va` in two headless Chromium
// tabs: the handoff goes through the Virtual Agent Bot Integration API (the
// fake's VA side), the employee's status card shows the estimated wait from
// the wait-time spinner and is updated in place (waiting → connected →
// ended, its End chat button gone at the end), the agent accepts in the
// console, messages go both ways, the agent typing in the console shows
// "<agent> is typing…" on the employee page, the employee typing shows
// "<employee> is typing…" in the console, and the agent's close ends the
// chat. Everything is done by clicks and keystrokes in the two pages.
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
	// The status card: waiting, then the VA's wait-time spinner ("120
	// Seconds": one place × the fake's 2 minutes) on the same card.
	emp.waitText(".msg-card .card-title", tx.CardTitle)
	emp.waitText(".msg-card .card-line", tx.CardWaiting)
	emp.waitText(".msg-card .card-line", fmt.Sprintf(tx.CardWait, 2))
	emp.waitText(".msg-card .card-btn", tx.CardEndButton)
	if n := emp.count(".bubble", "Routing you to a live agent"); n != 0 {
		t.Errorf("the spinner's message was shown although its wait is on the card (%d)", n)
	}
	emp.screenshot("queued")

	agent.open(d.URL + "/agent")
	agent.waitText("#queue .queued .requester", user)
	group := vaGroup(t, d)
	agent.do("accept", chromedp.Click(chromedp.CSS("#queue .queued .accept")))
	agent.waitText("#chats article.open .badge.state", "Work in Progress")
	emp.waitText(".msg-agent .bubble", snowtest.DefaultGreeting)
	emp.waitText("#status", "Chatting with")
	emp.waitText(".msg-card .card-line", "Connected to Beth Anglin")
	emp.waitText(".msg-card .card-btn", tx.CardEndButton)

	emp.say("#text", "#send", "my VPN drops every hour")
	agent.waitText("#chats article.open .dmsg-requester .bubble", "my VPN drops every hour")
	agent.say("#chats article.open .reply-text", "#chats article.open form.reply button", "Which client version?")
	emp.waitText(".msg-agent .bubble", "Which client version?")

	// Typing both ways, typed in the pages: the agent's keystrokes reach
	// Teams as a typing activity, the employee's reach the agent as TYPING.
	agent.do("type without sending", chromedp.SendKeys(chromedp.CSS("#chats article.open .reply-text"), "Let me check"))
	emp.waitText("#typing", "Beth Anglin is typing…")
	agent.do("send", chromedp.Click(chromedp.CSS("#chats article.open form.reply button")))
	emp.waitText(".msg-agent .bubble", "Let me check")
	emp.waitGone("#typing:not([hidden])")
	emp.do("type without sending", chromedp.SendKeys(chromedp.CSS("#text"), "It is 5.1"))
	agent.waitText("#chats article.open .typing", user+" is typing…")
	emp.do("send", chromedp.Click(chromedp.CSS("#send")))
	agent.waitText("#chats article.open .dmsg-requester .bubble", "It is 5.1")
	agent.waitGone("#chats article.open .typing")
	if c, _ := d.sn.VAConversation(group); c.Typing == 0 || c.Viewing == 0 {
		t.Errorf("typing did not go through the Virtual Agent API (TYPING %d, VIEWING %d)", c.Typing, c.Viewing)
	}
	emp.screenshot("live")
	agent.screenshot("live")

	agent.do("close", chromedp.Click(chromedp.CSS("#chats article.open .close-chat")))
	emp.waitText(".msg-notice .bubble", tx.AgentClosed)
	emp.waitText(".msg-notice .bubble", tx.BotBack)
	emp.waitText(".msg-card .card-line", tx.CardEnded)
	if n := emp.count(".msg-card .card-btn", tx.CardEndButton); n != 0 {
		t.Errorf("the ended card still has its End chat button (%d)", n)
	}
	if n := emp.count(".msg-card .card-title", tx.CardTitle); n != 1 {
		t.Errorf("%d status cards, want one updated in place", n)
	}
	emp.screenshot("ended")

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
