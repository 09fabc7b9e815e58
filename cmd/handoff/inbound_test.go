package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// /api/messages takes bodies up to HANDOFF_MAX_BODY, not a fixed 256 KiB.
func TestAPIMessagesHonoursMaxBody(t *testing.T) {
	text := strings.Repeat("a", 300<<10) // a 300 KB message
	tests := []struct {
		maxBody string
		want    int
	}{
		{"1048576", http.StatusOK},
		{"262144", http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.maxBody, func(t *testing.T) {
			w := newWorld(t, worldOpts{extra: map[string]string{"HANDOFF_MAX_BODY": tt.maxBody}})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			u := teamstest.NewUser("Max Body " + tt.maxBody)
			status, err := w.ch().Post(ctx, w.ch().Message(u, text))
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.want {
				t.Fatalf("300 KB activity under HANDOFF_MAX_BODY=%s: status %d, want %d", tt.maxBody, status, tt.want)
			}
		})
	}
}

// A signed activity replayed after its handoff closed is a no-op: no new
// session, no second ServiceNow chat, Rasa does not see it again. The same for
// /end_chat. Activities are remembered per conversation, not per session.
func TestReplayedActivityAfterCloseIsNoOp(t *testing.T) {
	w := newWorld(t, worldOpts{})
	const wait = 30 * time.Second
	ctx := context.Background()
	u := teamstest.NewUser("Replay Target")
	conv := w.ch().ConversationID(u)

	// post sends a with the given token and wants 200.
	post := func(a teamstest.Activity, token string) {
		t.Helper()
		code, err := w.ch().PostWithAuth(ctx, a, teamstest.Bearer(token))
		if err != nil || code != http.StatusOK {
			t.Fatalf("post %q: %d %v", a.Text, code, err)
		}
	}
	token := w.ch().Token(teamstest.TokenValid) // valid for an hour: a replay may reuse it
	handoff := w.ch().Message(u, "talk to live agent")
	post(handoff, token)
	w.waitUser(u, bridge.DefaultTexts().Connecting, wait)
	group := w.chatOf(u, wait)
	if err := w.sn.Accept(group, agentName); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, snowtest.DefaultGreeting, wait)
	end := w.ch().Message(u, "/end_chat")
	post(end, token)
	w.waitClosed(u, wait)
	w.waitUser(u, bridge.DefaultTexts().BotBack, wait)

	sessions := func() []bridge.Session {
		t.Helper()
		var out []bridge.Session
		err := w.current().store.Update(ctx, func(tx bridge.Tx) error {
			ss, err := tx.SessionsInStates(ctx, bridge.States...)
			for _, s := range ss {
				if string(s.Conversation) == conv {
					out = append(out, s)
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	chats, linesBefore := len(w.sn.Chats()), len(w.userLines(u))

	post(handoff, token) // the replays: same bodies, same still-valid token
	post(end, token)
	if ss := sessions(); len(ss) != 1 || ss[0].State != bridge.StateClosed {
		t.Fatalf("after the replays the conversation has sessions %+v, want only the closed one", ss)
	}

	// A new message goes through the same lanes after anything the replays
	// could have queued: once its answer is shown, every effect would be too.
	post(w.ch().Message(u, "hello"), token)
	w.waitUser(u, "IT helpdesk bot", wait)
	if got := len(w.sn.Chats()); got != chats {
		t.Errorf("ServiceNow chats: %d, want %d (the replay opened another)", got, chats)
	}
	seen := 0
	for _, e := range w.rasa.Events(conv) {
		if e.Name() == "user" && e["text"] == "talk to live agent" {
			seen++
		}
	}
	if seen != 1 {
		t.Errorf("Rasa saw \"talk to live agent\" %d times, want 1", seen)
	}
	if extra := w.userLines(u)[linesBefore:]; len(extra) != 1 {
		t.Errorf("the employee saw %q after the replays, want only the bot's answer to hello", extra)
	}
}
