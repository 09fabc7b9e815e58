package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/teams/teamstest"
)

// TestStatusCardFallbackEndToEnd runs the whole bridge against the fake Bot
// Connector: the status card is posted (201), Teams refuses its update with
// 404, so a new card is posted and updated from then on (PUT 200); the agent
// finds the employee's e-mail from the members API in the chat's context.
func TestStatusCardFallbackEndToEnd(t *testing.T) {
	w := newWorld(t, worldOpts{delivery: "poll"})
	u := teamstest.NewUser("Card Fallback")
	w.conn.AddMember(teamstest.Member{ID: u.ID, Name: u.Name, Email: "card.fallback@example.com", UserPrincipalName: "cfb@example.com"})
	conv := w.ch().ConversationID(u)
	w.say(u, "talk to live agent")
	group := w.chatOf(u, 30*time.Second)
	waitCards(t, w.conn, conv, 1, "Waiting for an agent")
	// The chat's first message names the employee with the e-mail Teams'
	// members API gave (an activity carries none).
	if got := w.sn.Messages(group)[0].Text; !strings.Contains(got, "<card.fallback@example.com>") {
		t.Errorf("the agent's first message lacks the employee's e-mail: %q", got)
	}
	w.conn.Fail(conv, teamstest.Fault{Status: http.StatusNotFound, Code: "ActivityNotFoundInConversation", Message: "gone", Times: 1})
	if err := w.sn.Accept(group, "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	cards := waitCards(t, w.conn, conv, 2, "Connected to Beth Anglin")
	if !strings.Contains(string(cards[0].Attachments[0].Content), "Waiting for an agent") {
		t.Errorf("first card changed although its update was refused: %s", cards[0].Attachments[0].Content)
	}
	w.say(u, "/end_chat")
	w.waitClosed(u, 30*time.Second)
	cards = waitCards(t, w.conn, conv, 2, "Chat ended")
	if strings.Contains(string(cards[1].Attachments[0].Content), "End chat") {
		t.Errorf("the ended card still has End chat: %s", cards[1].Attachments[0].Content)
	}
	ups := w.conn.Updates(conv)
	if len(ups) == 0 || ups[len(ups)-1].ID != cards[1].ID {
		t.Errorf("updates %+v, want the new card updated in place", ups)
	}
	if w.conn.CountStatus(conv, http.StatusNotFound) != 1 {
		t.Errorf("%d answers 404, want 1", w.conn.CountStatus(conv, http.StatusNotFound))
	}
}

// waitCards waits until conv has n status cards and the last contains want.
func waitCards(t *testing.T, conn *teamstest.Connector, conv string, n int, want string) []teamstest.Sent {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var cards []teamstest.Sent
		for _, s := range conn.Messages(conv) {
			if len(s.Attachments) == 1 && strings.Contains(string(s.Attachments[0].Content), "Live agent chat") {
				cards = append(cards, s)
			}
		}
		if len(cards) == n && strings.Contains(string(cards[n-1].Attachments[0].Content), want) {
			return cards
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d status cards, the last with %q; have %d: %+v", n, want, len(cards), cards)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
