package main

import (
	"context"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// TestDemoSlackInBrowser runs `handoff demo --desk slack` in two headless
// Chromium tabs: the employee hands off on the employee page, the agent
// presses Take on the Slack-like page, replies in the thread, the employee
// sees the reply and answers, the agent types #handback in the thread, the
// employee is back with the bot and the parent message shows the outcome.
// Everything is done by clicks and keystrokes in the two pages.
func TestDemoSlackInBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	dir := artifactDir(t)

	log := slog.New(slog.NewTextHandler(demoTestLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := startDemo(context.Background(), demoOptions{Addr: "127.0.0.1:0", BridgeAddr: "127.0.0.1:0",
		Desk: "slack", PollWait: 10 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("stop the demo: %v", err)
		}
	})
	emp := newTab(t, "slack-employee", chrome, dir)
	agent := newTab(t, "slack-agent", chrome, dir)
	tx := bridge.DefaultTexts()
	const user = "Megan Bowen"

	emp.open(d.URL + "/employee?user=" + url.QueryEscape(user))
	emp.waitText(".msg-notice", tx.Welcome)
	emp.say("#text", "#send", "talk to live agent")
	emp.waitText(".msg-notice .bubble", tx.Connecting)

	agent.open(d.slack.UIURL())
	agent.waitText(".thread", user)
	agent.waitText(".thread button", "Take")
	agent.screenshot("parent")
	agent.clickText(".thread button", "Take")
	emp.waitText(".bubble", "joined the chat")
	agent.waitText(".thread .context", "Taken by")
	if n := agent.count(".thread button", "Take"); n != 0 {
		t.Errorf("the parent still offers Take after it was taken (%d)", n)
	}

	agent.clickText(".thread .reply-here", "Reply in thread")
	agent.waitText("#to", "Replying in the thread")
	agent.say("#text", "#composer button", "Which VPN client version?")
	emp.waitText(".msg-agent .bubble", "Which VPN client version?")
	emp.say("#text", "#send", "version 5.2, it drops every hour")
	agent.waitText(".thread .replies pre", user+": version 5.2, it drops every hour") // posted by the app, with the employee's name
	agent.screenshot("thread")

	agent.say("#text", "#composer button", "#handback")
	emp.waitText(".msg-notice .bubble", tx.BotBack)
	agent.waitText(".thread .context", "Ended")
	if n := agent.count(".thread button", "Close"); n != 0 {
		t.Errorf("the ended parent still offers Close (%d)", n)
	}
	emp.screenshot("back-with-bot")
	agent.screenshot("ended")
	if n := emp.count(".msg-agent .bubble", "Which VPN client version?"); n != 1 {
		t.Errorf("the employee saw the agent's reply %d times, want once", n)
	}
}
