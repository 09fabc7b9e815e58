package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// TestDemoSlack runs `handoff demo --desk slack` over its pages: the employee
// asks for an agent, the agent takes the handoff and answers on the
// Slack-like page, and Close hands the employee back to the bot.
func TestDemoSlack(t *testing.T) {
	log := slog.New(slog.NewTextHandler(demoTestLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := startDemo(context.Background(), demoOptions{Addr: "127.0.0.1:0", BridgeAddr: "127.0.0.1:0",
		Delivery: "poll", Desk: "slack", PollWait: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	c := demoClient{t: t, base: d.URL}
	tx := bridge.DefaultTexts()
	const user = "Megan Bowen"
	if _, body := c.get("/"); !strings.Contains(body, d.slack.UIURL()) {
		t.Errorf("the start page does not link the Slack page")
	}
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(d.slack.UIURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	act := func(path string, form url.Values) {
		t.Helper()
		resp, err := http.PostForm(d.slack.UIURL()+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s %v: %d %s", path, form, resp.StatusCode, out.Error)
		}
	}
	page := get("")
	if !strings.Contains(page, "Beth Anglin") || !strings.Contains(page, "No handoffs yet") {
		t.Fatalf("the Slack page lacks the agents or the empty channel:\n%s", page)
	}

	if code, _ := c.get("/employee?user=Megan+Bowen"); code != 200 { // opening the chat installs the bot
		t.Fatalf("employee page: %d", code)
	}
	c.waitLine(user, "notice", tx.Welcome)
	c.post("/employee/api/send", map[string]string{"user": user, "text": "talk to live agent"})
	c.waitLine(user, "notice", tx.Connecting)
	var parents = d.slack.Parents()
	for deadline := time.Now().Add(30 * time.Second); len(parents) == 0 && time.Now().Before(deadline); parents = d.slack.Parents() {
		time.Sleep(50 * time.Millisecond)
	}
	if len(parents) != 1 {
		t.Fatalf("%d parent messages in the channel, want 1", len(parents))
	}
	ts := parents[0].TS
	channel := get("channel")
	for _, want := range []string{user, "user_asked", `data-action="handoff_take"`, `data-action="handoff_close"`} {
		if !strings.Contains(channel, want) {
			t.Errorf("the channel shows no %q:\n%s", want, channel)
		}
	}
	agent := url.Values{"agent": {"U0DEMOAG01"}, "thread": {ts}}
	take := url.Values{"action": {"handoff_take"}}
	for k, v := range agent {
		take[k] = v
	}
	act("click", take)
	c.waitLine(user, "notice", "Beth Anglin joined the chat.") // a desk system line

	c.post("/employee/api/send", map[string]string{"user": user, "text": "my VPN drops every hour"})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(get("channel"), "my VPN drops every hour") {
		if time.Now().After(deadline) {
			t.Fatal("the employee's message never reached the thread")
		}
		time.Sleep(50 * time.Millisecond)
	}
	reply := url.Values{"text": {"Which VPN client version do you have?"}}
	for k, v := range agent {
		reply[k] = v
	}
	act("reply", reply)
	c.waitLine(user, "agent", "Which VPN client version do you have?")

	closeIt := url.Values{"action": {"handoff_close"}}
	for k, v := range agent {
		closeIt[k] = v
	}
	act("click", closeIt)
	c.waitLine(user, "notice", tx.AgentClosed)
	c.waitLine(user, "notice", tx.BotBack)
	deadline = time.Now().Add(30 * time.Second)
	for ch := get("channel"); !strings.Contains(ch, "Ended"); ch = get("channel") {
		if time.Now().After(deadline) {
			t.Fatalf("the parent never showed the outcome:\n%s", ch)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ch := get("channel"); strings.Contains(ch, `data-action="handoff_take"`) {
		t.Errorf("the ended handoff still offers Take:\n%s", ch)
	}
}
