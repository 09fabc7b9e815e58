package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// cardUser is a fakeUser whose channel has cards and a member list.
type cardUser struct {
	fakeUser
	cmu      sync.Mutex
	cards    []cardOp // every send and update, in order
	nextID   int
	gone     bool // UpdateCard answers ErrCardGone
	email    string
	emailErr error
	block    bool // UserEmail waits for its context to end
	lookups  int
	messages []bridge.UserMessage
}

type cardOp struct {
	update bool
	id     string
	card   bridge.Card
}

func (u *cardUser) Send(ctx context.Context, ref bridge.ConversationRef, m bridge.UserMessage) (string, error) {
	u.cmu.Lock()
	u.messages = append(u.messages, m)
	u.cmu.Unlock()
	return u.fakeUser.Send(ctx, ref, m)
}

func (u *cardUser) SendCard(_ context.Context, _ bridge.ConversationRef, c bridge.Card) (string, error) {
	u.cmu.Lock()
	defer u.cmu.Unlock()
	u.nextID++
	id := fmt.Sprintf("card-%d", u.nextID)
	u.cards = append(u.cards, cardOp{id: id, card: c})
	return id, nil
}

func (u *cardUser) UpdateCard(_ context.Context, _ bridge.ConversationRef, id string, c bridge.Card) error {
	u.cmu.Lock()
	defer u.cmu.Unlock()
	if u.gone {
		return fmt.Errorf("teams: update card: HTTP 404: %w", bridge.ErrCardGone)
	}
	u.cards = append(u.cards, cardOp{update: true, id: id, card: c})
	return nil
}

func (u *cardUser) UserEmail(ctx context.Context, _ bridge.ConversationRef) (string, error) {
	u.cmu.Lock()
	u.lookups++
	block, email, err := u.block, u.email, u.emailErr
	u.cmu.Unlock()
	if block {
		<-ctx.Done()
		return "", ctx.Err()
	}
	return email, err
}

func (u *cardUser) ops() []cardOp {
	u.cmu.Lock()
	defer u.cmu.Unlock()
	return slices.Clone(u.cards)
}

func newCardHarness(t *testing.T, cfg bridge.RelayConfig) (*harness, *cardUser) {
	h := newHarness(t)
	cu := &cardUser{}
	h.relay = bridge.NewRelay(h.st, h.bot, h.desk, cu, nil, cfg)
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	return h, cu
}

func cardText(c bridge.Card) string { return c.Title + " | " + strings.Join(c.Lines, " | ") }

func hasEndButton(c bridge.Card) bool {
	return slices.ContainsFunc(c.Buttons, func(b bridge.Button) bool { return b.Payload == "/end_chat" })
}

// TestStatusCard follows the card through a handoff: sent when it starts
// (waiting, with the queue position once the desk gives it), updated in
// place when the agent joins and when the employee ends the chat with the
// card's End chat button, which disappears then.
func TestStatusCard(t *testing.T) {
	h, cu := newCardHarness(t, bridge.RelayConfig{})
	h.say("conv", "talk to agent")
	ops := cu.ops()
	if len(ops) != 1 || ops[0].update || !strings.Contains(cardText(ops[0].card), "Waiting for an agent") || !hasEndButton(ops[0].card) {
		t.Fatalf("after the handoff started: %+v", ops)
	}
	chat := h.session("conv").AgentChatID
	if got := h.session("conv").StatusCardID; got != "card-1" {
		t.Fatalf("StatusCardID = %q", got)
	}
	ev := bridge.AgentEvent{Kind: bridge.AgentWaiting, Chat: chat, ExternalID: "position:2", QueuePosition: 2, EstimatedWait: 3 * time.Minute, At: time.Now()}
	for range 3 { // every poll reports the same place: the card changes once
		if err := h.relay.AgentEvents(context.Background(), chat, []bridge.AgentEvent{ev}, false); err != nil {
			t.Fatal(err)
		}
		h.drain()
	}
	h.agent(chat, "m1", "Hi, Beth here.", "")
	h.say("conv", "/end_chat") // what the End chat button sends
	ops = cu.ops()
	want := []struct {
		update bool
		text   string
		button bool
	}{
		{false, "Waiting for an agent…", true},
		{true, "You're number 2 in the queue. | Estimated wait: about 3 min.", true},
		{true, "Connected to Beth", true},
		{true, "Chat ended | You have ended the chat with the agent.", false},
	}
	if len(ops) != len(want) {
		t.Fatalf("card operations = %+v, want %d", ops, len(want))
	}
	for i, w := range want {
		if ops[i].update != w.update || !strings.Contains(cardText(ops[i].card), w.text) || hasEndButton(ops[i].card) != w.button {
			t.Errorf("card op %d = %+v (%s), want update=%v text %q button=%v", i, ops[i], cardText(ops[i].card), w.update, w.text, w.button)
		}
		if w.update && ops[i].id != "card-1" {
			t.Errorf("card op %d updated %q, want card-1", i, ops[i].id)
		}
	}
	// The agent's message shows who is speaking; the notices are notices.
	for _, m := range cu.messages {
		if m.Text == "Hi, Beth here." && m.Author != "Beth" {
			t.Errorf("agent message author = %q", m.Author)
		}
		if strings.HasPrefix(m.Text, "I'm connecting") && (!m.Notice || m.Author != "") {
			t.Errorf("connecting notice = %+v", m)
		}
	}
	// The agent heard that the employee left, before the bridge left.
	h.desk.mu.Lock()
	posted, left := h.desk.posted[chat], h.desk.left[chat]
	h.desk.mu.Unlock()
	if len(posted) == 0 || posted[len(posted)-1] != "The employee left the chat." || left != 1 {
		t.Errorf("agent chat got %q, left %d times", posted, left)
	}
}

// TestStatusCardFallback: when Teams refuses the update (the card was
// deleted or is too old), a new card is sent and becomes the one updated.
func TestStatusCardFallback(t *testing.T) {
	h, cu := newCardHarness(t, bridge.RelayConfig{})
	h.say("conv", "talk to agent")
	cu.cmu.Lock()
	cu.gone = true
	cu.cmu.Unlock()
	h.agent(h.session("conv").AgentChatID, "m1", "Hello", "")
	ops := cu.ops()
	if len(ops) != 2 || ops[1].update || !strings.Contains(cardText(ops[1].card), "Connected to Beth") {
		t.Fatalf("card operations = %+v", ops)
	}
	if got := h.session("conv").StatusCardID; got != "card-2" {
		t.Fatalf("StatusCardID = %q, want the new card", got)
	}
}

// TestAgentClosesNoNote: the agent's own close leaves no "employee left"
// note in the agent's chat.
func TestAgentClosesNoNote(t *testing.T) {
	h, _ := newCardHarness(t, bridge.RelayConfig{})
	h.say("conv", "talk to agent")
	chat := h.session("conv").AgentChatID
	h.agent(chat, "m1", "Hello", "")
	h.agent(chat, "sys", "Beth has closed the support session", bridge.ReasonAgentClosed)
	h.desk.mu.Lock()
	defer h.desk.mu.Unlock()
	if slices.Contains(h.desk.posted[chat], "The employee left the chat.") {
		t.Fatalf("agent chat got %q", h.desk.posted[chat])
	}
}

// TestEndChatOutsideHandoff: /end_chat (or the End chat button, pressed
// again) with no live chat open is answered by the bridge and never
// reaches the bot; before this fix the bot read it and handed off.
func TestEndChatOutsideHandoff(t *testing.T) {
	h, cu := newCardHarness(t, bridge.RelayConfig{})
	h.say("conv", "/end_chat")
	h.say("conv", "/END_CHAT ")
	h.bot.mu.Lock()
	got := h.bot.received["conv"]
	h.bot.mu.Unlock()
	if len(got) != 0 {
		t.Fatalf("the bot received %q", got)
	}
	if lines := cu.lines("conv"); !slices.Equal(lines, []string{"You're not in a live chat.", "You're not in a live chat."}) {
		t.Fatalf("the user saw %q", lines)
	}
	if s := h.session("conv"); s.State != bridge.StateBot {
		t.Fatalf("state = %s", s.State)
	}
}

// TestOneWelcome: Teams sends installationUpdate and conversationUpdate on a
// personal install; the employee is greeted once per conversation, also
// when the bot is installed again later.
func TestOneWelcome(t *testing.T) {
	h, cu := newCardHarness(t, bridge.RelayConfig{})
	ref := bridge.ConversationRef{Conversation: "conv", ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u"}
	for _, id := range []string{"installationUpdate-1", "conversationUpdate-1", "installationUpdate-2"} {
		if err := h.relay.UserActivity(context.Background(), bridge.UserActivity{Kind: bridge.ActivityInstall, ID: id, Ref: ref}); err != nil {
			t.Fatal(err)
		}
		h.drain()
	}
	if lines := cu.lines("conv"); len(lines) != 1 || !strings.HasPrefix(lines[0], "Hi! I'm the virtual assistant") {
		t.Fatalf("welcomes = %q", lines)
	}
	// Another conversation is greeted on its own.
	ref.Conversation = "conv2"
	if err := h.relay.UserActivity(context.Background(), bridge.UserActivity{Kind: bridge.ActivityInstall, ID: "i", Ref: ref}); err != nil {
		t.Fatal(err)
	}
	h.drain()
	if lines := cu.lines("conv2"); len(lines) != 1 {
		t.Fatalf("welcomes in conv2 = %q", lines)
	}
}

// TestLocalisedTexts: a German user gets the German texts and card; a text
// a catalogue leaves out falls back to English.
func TestLocalisedTexts(t *testing.T) {
	de := bridge.DefaultLocales()["de"]
	de.BotBack = "" // a catalogue without this key
	h, cu := newCardHarness(t, bridge.RelayConfig{Locales: map[string]bridge.Texts{"de": de}})
	act := func(id, text string) {
		a := bridge.UserActivity{Kind: bridge.ActivityMessage, ID: id, Text: text, Ref: bridge.ConversationRef{Conversation: "conv",
			ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u", UserName: "Jana", Locale: "de-DE"}}
		if err := h.relay.UserActivity(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		h.drain()
	}
	act("a1", "talk to agent")
	act("a2", "/end_chat")
	lines := cu.lines("conv")
	for _, want := range []string{de.Connecting, de.UserEnded, bridge.DefaultTexts().BotBack} {
		if !slices.Contains(lines, want) {
			t.Errorf("the German user did not see %q; saw %q", want, lines)
		}
	}
	ops := cu.ops()
	if len(ops) == 0 || ops[0].card.Title != "Live-Chat mit dem Support" || ops[0].card.Buttons[0].Title != "Chat beenden" {
		t.Errorf("German card = %+v", ops)
	}
	if got := h.relay.TextsFor("de-AT").Welcome; got != de.Welcome {
		t.Errorf("de-AT welcome = %q", got)
	}
	if got := h.relay.TextsFor("fr-FR").Welcome; got != bridge.DefaultTexts().Welcome {
		t.Errorf("fr-FR welcome = %q, want English", got)
	}
}

// TestEmployeeEmail: the e-mail from the member list reaches the agent and
// is cached on the conversation reference; a failed or hanging lookup never
// stops the chat from opening.
func TestEmployeeEmail(t *testing.T) {
	tests := []struct {
		name      string
		email     string
		err       error
		block     bool
		wantEmail string
	}{
		{"found", "abel.tuter@example.com", nil, false, "abel.tuter@example.com"},
		{"unknown user (404)", "", fmt.Errorf("teams: member: %w", bridge.ErrNotFound), false, ""},
		{"lookup hangs", "", nil, true, ""},
		{"lookup fails", "", errors.New("teams: HTTP 500"), false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, cu := newCardHarness(t, bridge.RelayConfig{LookupTimeout: 200 * time.Millisecond})
			cu.email, cu.emailErr, cu.block = tc.email, tc.err, tc.block
			h.say("conv", "talk to agent")
			chat := h.session("conv").AgentChatID
			if chat == "" {
				t.Fatal("the desk chat did not open")
			}
			h.desk.mu.Lock()
			got := h.desk.opened[chat].UserEmail
			h.desk.mu.Unlock()
			if got != tc.wantEmail {
				t.Fatalf("agent got e-mail %q, want %q", got, tc.wantEmail)
			}
			if tc.wantEmail == "" {
				return
			}
			// A second handoff in the conversation uses the cached e-mail.
			h.say("conv", "/end_chat")
			h.say("conv", "agent again")
			cu.cmu.Lock()
			n := cu.lookups
			cu.cmu.Unlock()
			if n != 1 {
				t.Fatalf("%d lookups, want 1 (cached on the conversation reference)", n)
			}
		})
	}
}

// TestLostFileNotice: a file Teams gave no link for is not silently dropped:
// the employee is told, and the text of the message still reaches the agent.
func TestLostFileNotice(t *testing.T) {
	h, cu := newCardHarness(t, bridge.RelayConfig{})
	h.say("conv", "talk to agent")
	chat := h.session("conv").AgentChatID
	ref := bridge.ConversationRef{Conversation: "conv", ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u"}
	for _, a := range []bridge.UserActivity{
		{Kind: bridge.ActivityMessage, ID: "f1", Text: "here is a screenshot", LostFiles: []string{"pasted.png"}, Ref: ref},
		{Kind: bridge.ActivityMessage, ID: "f2", LostFiles: []string{"other.png"}, Ref: ref},
	} {
		if err := h.relay.UserActivity(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		h.drain()
	}
	lines := strings.Join(cu.lines("conv"), "\n")
	for _, name := range []string{"pasted.png", "other.png"} {
		if !strings.Contains(lines, "Your file "+name+" could not be passed on to the agent.") {
			t.Errorf("no notice for %s in %q", name, lines)
		}
	}
	h.desk.mu.Lock()
	defer h.desk.mu.Unlock()
	if !slices.Contains(h.desk.posted[chat], "here is a screenshot") || len(h.desk.posted[chat]) != 1 {
		t.Errorf("agent got %q", h.desk.posted[chat])
	}
}

// TestBlockedUserNoteToAgent: when Teams refuses writes (the employee
// removed or blocked the bot), the agent's chat hears that the employee is
// gone before the bridge leaves it.
func TestBlockedUserNoteToAgent(t *testing.T) {
	h, cu := newCardHarness(t, bridge.RelayConfig{})
	h.say("conv", "talk to agent")
	chat := h.session("conv").AgentChatID
	cu.fakeUser.mu.Lock()
	cu.fakeUser.fail = fmt.Errorf("teams: send: %w", bridge.ErrUserUnreachable)
	cu.fakeUser.mu.Unlock()
	h.agent(chat, "m1", "Are you still there?", "")
	if s := h.session("conv"); s.CloseReason != bridge.ReasonUserBlocked {
		t.Fatalf("session = %s %s, want ended as user_blocked", s.State, s.CloseReason)
	}
	h.desk.mu.Lock()
	defer h.desk.mu.Unlock()
	if p := h.desk.posted[chat]; len(p) == 0 || p[len(p)-1] != "The employee left the chat." || h.desk.left[chat] != 1 {
		t.Fatalf("agent chat got %q, left %d", p, h.desk.left[chat])
	}
}

// TestQueueWait: a desk that gives only an estimated wait (the Virtual
// Agent's wait-time spinner) updates the waiting card with it, once per
// distinct wait; a channel without cards gets the same lines as a notice.
func TestQueueWait(t *testing.T) {
	wait := func(h *harness, chat bridge.AgentChatID, id string, d time.Duration) {
		t.Helper()
		ev := bridge.AgentEvent{Kind: bridge.AgentWaiting, Chat: chat, ExternalID: id, EstimatedWait: d, At: time.Now()}
		if err := h.relay.AgentEvents(context.Background(), chat, []bridge.AgentEvent{ev}, false); err != nil {
			t.Fatal(err)
		}
		h.drain()
	}
	t.Run("card", func(t *testing.T) {
		h, cu := newCardHarness(t, bridge.RelayConfig{})
		h.say("conv", "talk to agent")
		chat := h.session("conv").AgentChatID
		wait(h, chat, "spinner:8 Seconds", 8*time.Second)
		wait(h, chat, "spinner:8 Seconds", 8*time.Second) // a repeated callback
		wait(h, chat, "spinner:240 Seconds", 4*time.Minute)
		ops := cu.ops()
		want := []string{"Waiting for an agent…", "Waiting for an agent… | Estimated wait: about 1 min.", "Waiting for an agent… | Estimated wait: about 4 min."}
		if len(ops) != len(want) {
			t.Fatalf("card operations %+v, want %d", ops, len(want))
		}
		for i, w := range want {
			if got := strings.Join(ops[i].card.Lines, " | "); got != w || !hasEndButton(ops[i].card) {
				t.Errorf("card %d = %q, want %q with End chat", i, got, w)
			}
			if strings.Contains(cardText(ops[i].card), "number") {
				t.Errorf("card %d shows a queue position the desk did not give: %s", i, cardText(ops[i].card))
			}
		}
		for _, m := range cu.messages {
			if strings.Contains(m.Text, "wait") {
				t.Errorf("the wait was also sent as a message: %q", m.Text)
			}
		}
	})
	t.Run("no card", func(t *testing.T) {
		h := newHarness(t)
		h.say("conv", "talk to agent")
		chat := h.session("conv").AgentChatID
		wait(h, chat, "spinner:8 Seconds", 8*time.Second)
		wait(h, chat, "spinner:8 Seconds", 8*time.Second)
		n := 0
		for _, l := range h.user.lines("conv") {
			if l == "Estimated wait: about 1 min." {
				n++
			}
		}
		if n != 1 {
			t.Errorf("wait notices %d, want 1: %q", n, h.user.lines("conv"))
		}
	})
}

// TestDeskLinesLocalised: the lines a desk has the bridge write for it (a
// desk with no join notice of its own announces the agent; an edited agent
// message is marked) come from the catalogue in the employee's language, not
// from the desk's English text; without a translation they are English.
func TestDeskLinesLocalised(t *testing.T) {
	for _, tc := range []struct {
		locale, joined, edited string
	}{
		{"de-DE", "Beth ist dem Chat beigetreten.", "(bearbeitet) Versuchen Sie es jetzt"},
		{"en-US", "Beth joined the chat.", "(edited) Versuchen Sie es jetzt"},
		{"fr-FR", "Beth joined the chat.", "(edited) Versuchen Sie es jetzt"},
	} {
		t.Run(tc.locale, func(t *testing.T) {
			h, cu := newCardHarness(t, bridge.RelayConfig{Locales: bridge.DefaultLocales()})
			a := bridge.UserActivity{Kind: bridge.ActivityMessage, ID: "a1", Text: "talk to agent", Ref: bridge.ConversationRef{Conversation: "conv",
				ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u", UserName: "Jana", Locale: tc.locale}}
			if err := h.relay.UserActivity(context.Background(), a); err != nil {
				t.Fatal(err)
			}
			h.drain()
			chat := h.session("conv").AgentChatID
			evs := []bridge.AgentEvent{
				{Kind: bridge.AgentJoined, Chat: chat, Author: "Beth", At: time.Now()},
				{Kind: bridge.AgentMessage, Chat: chat, ExternalID: "joined:t1", Author: "Beth", Text: "Beth joined the chat.", System: true, Joined: true, At: time.Now()},
				{Kind: bridge.AgentMessage, Chat: chat, ExternalID: "m1", Author: "Beth", Text: "Try it now", At: time.Now()},
				{Kind: bridge.AgentMessage, Chat: chat, ExternalID: "edit:m1", Author: "Beth", Text: "Versuchen Sie es jetzt", Edited: true, At: time.Now()},
			}
			if err := h.relay.AgentEvents(context.Background(), chat, evs, false); err != nil {
				t.Fatal(err)
			}
			h.drain()
			lines := cu.lines("conv")
			for _, want := range []string{tc.joined, "Try it now", tc.edited} {
				if !slices.Contains(lines, want) {
					t.Errorf("the employee did not see %q; saw %q", want, lines)
				}
			}
			if tc.locale == "de-DE" && slices.Contains(lines, "Beth joined the chat.") {
				t.Errorf("the German employee saw the desk's English line: %q", lines)
			}
		})
	}
}
