package servicenow_test

import (
	"context"
	"testing"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// TestNoteBeforeLeave: when the bridge leaves a chat for a reason the agent
// did not cause, it posts a note to the agent first (a desk.note through
// Send) and then leaves; both desks show the note in the chat before it
// closes.
func TestNoteBeforeLeave(t *testing.T) {
	const note = "The employee left the chat."
	ctx := context.Background()
	t.Run("connect", func(t *testing.T) {
		in := newFake(t, snowtest.Options{Now: t0})
		c := newClient(t, in, nil)
		chat := openChat(t, c, "s-1")
		if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
			t.Fatal(err)
		}
		if err := c.Send(ctx, dc(chat), bridge.DeskMessage{Key: "s-1/note/9", Text: note, Confirmed: 0}); err != nil {
			t.Fatal(err)
		}
		if err := c.Leave(ctx, dc(chat)); err != nil {
			t.Fatal(err)
		}
		ch, _ := in.Chat(string(chat))
		msgs := in.Messages(string(chat))
		if !ch.State.Closed() || countText(in, chat, note) != 1 || msgs[len(msgs)-1].Text == "" {
			t.Errorf("state %v, messages %+v: want the note once, then the chat closed", ch.State, msgs)
		}
	})
	t.Run("va", func(t *testing.T) {
		in := newFake(t, snowtest.Options{})
		in.EnableVA(snowtest.VAOptions{Token: vaToken})
		v := newVA(t, in, nil)
		chat, err := v.Open(ctx, vaHandoff)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := findVA(t, in, chat.ID)
		if err := in.Accept(c.Group, "Beth Anglin"); err != nil {
			t.Fatal(err)
		}
		if err := v.Send(ctx, chat, bridge.DeskMessage{Key: "s-1/note/9", Text: note}); err != nil {
			t.Fatal(err)
		}
		if err := v.Leave(ctx, chat); err != nil {
			t.Fatal(err)
		}
		_, conv := findVA(t, in, chat.ID)
		if countText(in, bridge.AgentChatID(c.Group), note) != 1 || !conv.Ended {
			t.Errorf("note stored %d times, ended %v: want the note once, then END_CONVERSATION", countText(in, bridge.AgentChatID(c.Group), note), conv.Ended)
		}
	})
}
