package servicenow_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// TestEndPhraseOnlyInNotices: an end phrase ends the chat in a system row,
// or in an agent's row that is exactly the desk's end notice; an agent who
// merely mentions it is shown and the chat goes on.
func TestEndPhraseOnlyInNotices(t *testing.T) {
	tests := []struct {
		name   string
		system bool
		text   string
		want   bridge.CloseReason // "" = the chat goes on
	}{
		{name: "agent mentions a colleague leaving", text: "my colleague has left the support session earlier, I'm taking over"},
		{name: "agent quotes the close notice", text: "If you see \"has closed the support session\", just ask again."},
		{name: "agent's own close notice", text: "Beth Anglin has closed the support session.", want: bridge.ReasonAgentClosed},
		{name: "agent's own leave notice", text: "Beth Anglin has left the support session", want: bridge.ReasonAgentLeft},
		{name: "another name's notice in an agent row", text: "Fred Luddy has left the support session"},
		{name: "system notice", system: true, text: "Fred Luddy has left the support session.", want: bridge.ReasonAgentLeft},
	}
	for _, mode := range modes {
		for _, tc := range tests {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				in := newFake(t, snowtest.Options{Now: t0})
				c := newClient(t, in, modeConfig(mode))
				chat := openChat(t, c, "s-1")
				if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
					t.Fatal(err)
				}
				in.Advance(time.Second)
				var err error
				if tc.system {
					_, err = in.SystemMessage(string(chat), tc.text)
				} else {
					_, err = in.Say(string(chat), "Beth Anglin", tc.text)
				}
				if err != nil {
					t.Fatal(err)
				}
				var ended bridge.CloseReason
				shown := false
				for _, e := range pollEvents(t, mode, c, chat, time.Time{}) {
					switch {
					case e.Kind == bridge.AgentEnded:
						ended = e.EndReason
					case e.Kind == bridge.AgentMessage && e.Text == tc.text && e.EndReason == "":
						shown = true
					}
				}
				if ended != tc.want {
					t.Errorf("ended %q, want %q", ended, tc.want)
				}
				if tc.want == "" && !shown {
					t.Error("the agent's text is not shown as an ordinary message")
				}
			})
		}
	}
}

// TestBatchPagingSameSecond: rows of many chats created in one second are
// paged without loss or repetition although the instance orders rows that
// tie on sys_created_on differently from page to page.
func TestBatchPagingSameSecond(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, func(cfg *servicenow.Config) { cfg.BatchLimit = 5 })
	cursors := map[bridge.AgentChatID]time.Time{}
	for i := range 40 {
		cursors[openChat(t, c, fmt.Sprintf("s-%d", i))] = time.Time{}
	}
	res, err := c.PollMany(context.Background(), cursors)
	if err != nil {
		t.Fatal(err)
	}
	for chat := range cursors {
		n := 0
		for _, e := range res[chat] {
			if e.Kind == bridge.AgentMessage {
				n++
			}
		}
		if n != 1 {
			t.Errorf("chat %s: %d messages, want its 1 first message", chat, n)
		}
	}
}

// TestBatchPagingACL: the instance leaves rows the integration user may not
// read out of each page without notice (the page comes back short, while
// X-Total-Count still counts them). Paging goes on to X-Total-Count, so the
// readable rows of later pages still arrive.
func TestBatchPagingACL(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, func(cfg *servicenow.Config) { cfg.BatchLimit = 5 })
	chat := openChat(t, c, "s-1")
	in.Advance(time.Second) // every row in its own second: no re-read through the Connect API
	if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		in.Advance(time.Second)
		if _, err := in.Say(string(chat), "Beth Anglin", fmt.Sprintf("secret %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	in.Advance(time.Second)
	if _, err := in.Say(string(chat), "Beth Anglin", "visible at the end"); err != nil {
		t.Fatal(err)
	}
	in.SetTableACL(func(_, table string, row map[string]string) bool {
		return table != "live_message" || !strings.HasPrefix(row["message"], "secret")
	})
	res, err := c.PollMany(context.Background(), map[bridge.AgentChatID]time.Time{chat: {}})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, e := range res[chat] {
		if e.Kind == bridge.AgentMessage {
			texts = append(texts, e.Text)
		}
	}
	if !slices.Contains(texts, "visible at the end") {
		t.Errorf("got %q: the readable row after pages of hidden rows is missing", texts)
	}
	for _, x := range texts {
		if strings.HasPrefix(x, "secret") {
			t.Errorf("a row the ACL hides was returned: %q", x)
		}
	}
}
