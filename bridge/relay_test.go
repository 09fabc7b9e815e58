package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
)

// fakeBot answers "bot: <text>", and hands off when the text asks for an agent.
type fakeBot struct {
	mu        sync.Mutex
	received  map[bridge.ConversationID][]string
	handbacks map[bridge.ConversationID][]bridge.Handback
	failSends int
	hook      func(ctx context.Context, in bridge.BotInput) error // called first, unlocked
}

func (b *fakeBot) Send(ctx context.Context, in bridge.BotInput) ([]bridge.BotReply, error) {
	if b.hook != nil {
		if err := b.hook(ctx, in); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failSends > 0 {
		b.failSends--
		return nil, errors.New("rasa: 503")
	}
	if b.received == nil {
		b.received = map[bridge.ConversationID][]string{}
	}
	b.received[in.Conversation] = append(b.received[in.Conversation], in.Text)
	if strings.Contains(in.Text, "agent") {
		return []bridge.BotReply{{Text: "Let me get a human.", Handoff: &bridge.HandoffSignal{Reason: "user_asked"}}}, nil
	}
	return []bridge.BotReply{{Text: "bot: " + in.Text}}, nil
}

func (b *fakeBot) Context(context.Context, bridge.ConversationID) (bridge.BotContext, error) {
	return bridge.BotContext{LatestIntent: "talk_to_human", Confidence: 0.93}, nil
}

func (b *fakeBot) Handback(_ context.Context, conv bridge.ConversationID, hb bridge.Handback) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.handbacks == nil {
		b.handbacks = map[bridge.ConversationID][]bridge.Handback{}
	}
	b.handbacks[conv] = append(b.handbacks[conv], hb)
	return nil
}

// fakeDesk opens numbered chats and records what is posted.
type fakeDesk struct {
	mu        sync.Mutex
	n         int
	opened    map[bridge.AgentChatID]bridge.Handoff
	posted    map[bridge.AgentChatID][]string
	left      map[bridge.AgentChatID]int
	confirmed []int // DeskMessage.Confirmed of each post, in order
	failSend  bool
	failLeave bool
	failOpen  bool
	sendHook  func(ctx context.Context, text string) error // called first, unlocked
	leaveHook func(ctx context.Context) error
}

func (d *fakeDesk) Open(_ context.Context, h bridge.Handoff) (bridge.DeskChat, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failOpen {
		return bridge.DeskChat{}, bridge.Permanent(errors.New("servicenow: 403 queue unavailable"))
	}
	d.n++
	id := bridge.AgentChatID(fmt.Sprintf("chat-%d", d.n))
	if d.opened == nil {
		d.opened, d.posted, d.left = map[bridge.AgentChatID]bridge.Handoff{}, map[bridge.AgentChatID][]string{}, map[bridge.AgentChatID]int{}
	}
	d.opened[id] = h
	return bridge.DeskChat{ID: id, Data: "data of " + string(id)}, nil
}

func (d *fakeDesk) Send(ctx context.Context, dc bridge.DeskChat, m bridge.DeskMessage) error {
	if d.sendHook != nil {
		if err := d.sendHook(ctx, m.Text); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dc.Data != "data of "+string(dc.ID) {
		return bridge.Permanent(fmt.Errorf("send to %s without its desk data (got %q)", dc.ID, dc.Data))
	}
	if d.failSend {
		return errors.New("servicenow: 500")
	}
	d.posted[dc.ID] = append(d.posted[dc.ID], m.Text)
	d.confirmed = append(d.confirmed, m.Confirmed)
	return nil
}

func (d *fakeDesk) Leave(ctx context.Context, dc bridge.DeskChat) error {
	if d.leaveHook != nil {
		if err := d.leaveHook(ctx); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dc.Data != "data of "+string(dc.ID) {
		return bridge.Permanent(fmt.Errorf("leave %s without its desk data (got %q)", dc.ID, dc.Data))
	}
	if d.failLeave {
		return fmt.Errorf("servicenow: leave: %w", bridge.ErrChatClosed)
	}
	d.left[dc.ID]++
	return nil
}

// fakeUser records what Teams would show.
type fakeUser struct {
	mu   sync.Mutex
	got  map[bridge.ConversationID][]string
	fail error
	hook func(ctx context.Context, m bridge.UserMessage) error // called first, unlocked
}

func (u *fakeUser) Send(ctx context.Context, ref bridge.ConversationRef, m bridge.UserMessage) (string, error) {
	if u.hook != nil {
		if err := u.hook(ctx, m); err != nil {
			return "", err
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fail != nil {
		return "", u.fail
	}
	if u.got == nil {
		u.got = map[bridge.ConversationID][]string{}
	}
	u.got[ref.Conversation] = append(u.got[ref.Conversation], m.Text)
	return "id", nil
}

func (u *fakeUser) Typing(context.Context, bridge.ConversationRef) error { return nil }

func (u *fakeUser) lines(c bridge.ConversationID) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got[c]...)
}

type harness struct {
	t     *testing.T
	st    *store.Store
	bot   *fakeBot
	desk  *fakeDesk
	user  *fakeUser
	relay *bridge.Relay
	disp  *bridge.Dispatcher
	seq   int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "relay.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, st: st, bot: &fakeBot{}, desk: &fakeDesk{}, user: &fakeUser{}}
	h.relay = bridge.NewRelay(st, h.bot, h.desk, h.user, nil, bridge.RelayConfig{})
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	return h
}

func (h *harness) say(conv bridge.ConversationID, text string) {
	h.t.Helper()
	h.seq++
	a := bridge.UserActivity{Kind: bridge.ActivityMessage, ID: fmt.Sprintf("act-%d", h.seq), Text: text,
		Ref: bridge.ConversationRef{Conversation: conv, ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u", UserName: "Abel Tuter"}}
	if err := h.relay.UserActivity(context.Background(), a); err != nil {
		h.t.Fatal(err)
	}
	h.drain()
}

// drain dispatches until nothing is due, waiting out short retry backoffs.
func (h *harness) drain() {
	h.t.Helper()
	ctx := context.Background()
	for i := 0; i < 500; i++ {
		if err := h.disp.DrainOnce(ctx); err != nil {
			h.t.Fatal(err)
		}
		if h.pending() == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond) // an item is waiting out its retry backoff
	}
	h.t.Fatal("outbox did not drain")
}

func (h *harness) agent(chat bridge.AgentChatID, id, text string, end bridge.CloseReason) {
	h.t.Helper()
	ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: chat, ExternalID: id, Author: "Beth", Text: text, At: time.Now(), EndReason: end}
	if err := h.relay.AgentEvents(context.Background(), chat, []bridge.AgentEvent{ev}, true); err != nil {
		h.t.Fatal(err)
	}
	h.drain()
}

// ended delivers the desk's own end of the chat (a queue state, no text).
func (h *harness) ended(chat bridge.AgentChatID, reason bridge.CloseReason) {
	h.t.Helper()
	ev := bridge.AgentEvent{Kind: bridge.AgentEnded, Chat: chat, ExternalID: "state:" + string(chat), At: time.Now(), System: true, EndReason: reason}
	if err := h.relay.AgentEvents(context.Background(), chat, []bridge.AgentEvent{ev}, true); err != nil {
		h.t.Fatal(err)
	}
	h.drain()
}

func (h *harness) session(conv bridge.ConversationID) bridge.Session {
	h.t.Helper()
	var s bridge.Session
	err := h.st.Update(context.Background(), func(tx bridge.Tx) error {
		ss, err := tx.SessionsInStates(context.Background(), bridge.States...)
		for _, x := range ss {
			if x.Conversation == conv {
				s = x // the newest
			}
		}
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func TestRelayLifecycle(t *testing.T) {
	texts := bridge.DefaultTexts()
	tests := []struct {
		name       string
		end        func(h *harness, chat bridge.AgentChatID)
		wantReason bridge.CloseReason
		wantLine   string
		restart    bool
	}{
		{"agent closes", func(h *harness, chat bridge.AgentChatID) {
			h.agent(chat, "sys-close", "Beth has closed the support session", bridge.ReasonAgentClosed)
		}, bridge.ReasonAgentClosed, texts.AgentClosed, false},
		{"agent leaves", func(h *harness, chat bridge.AgentChatID) {
			h.agent(chat, "sys-left", "Beth has left the support session", bridge.ReasonAgentLeft)
		}, bridge.ReasonAgentLeft, texts.AgentLeft, false},
		{"desk closes (state 7)", func(h *harness, chat bridge.AgentChatID) {
			h.ended(chat, bridge.ReasonDeskClosed)
		}, bridge.ReasonDeskClosed, texts.DeskClosed, false},
		{"desk abandons (state 8)", func(h *harness, chat bridge.AgentChatID) {
			h.ended(chat, bridge.ReasonDeskAbandoned)
		}, bridge.ReasonDeskAbandoned, texts.DeskAbandoned, false},
		{"user ends", func(h *harness, chat bridge.AgentChatID) { h.say("conv", " /END_CHAT ") }, bridge.ReasonUserEnded, texts.UserEnded, false},
		{"user restarts", func(h *harness, chat bridge.AgentChatID) { h.say("conv", "/restart") }, bridge.ReasonUserRestarted, texts.UserRestart, true},
		{"desk fails mid-chat", func(h *harness, chat bridge.AgentChatID) {
			h.desk.failSend = true
			h.say("conv", "are you there?")
		}, bridge.ReasonRelayError, "Summary: support chat chat-1", false},
		{"desk fails and leave fails", func(h *harness, chat bridge.AgentChatID) {
			h.desk.failSend, h.desk.failLeave = true, true
			h.say("conv", "are you there?")
		}, bridge.ReasonRelayError, "Summary: support chat chat-1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.say("conv", "hello")
			h.say("conv", "I want an agent")
			s := h.session("conv")
			if s.State != bridge.StateQueued || s.AgentChatID != "chat-1" {
				t.Fatalf("after handoff: state %s chat %q", s.State, s.AgentChatID)
			}
			if tr := h.desk.opened["chat-1"].Transcript; len(tr) < 3 || tr[0].Text != "hello" {
				t.Fatalf("transcript given to the agent: %+v", tr)
			}
			h.say("conv", "my laptop is broken") // queued: goes to the agent
			h.agent("chat-1", "a1", "Hi, I'm Beth", "")
			if s := h.session("conv"); s.State != bridge.StateLive {
				t.Fatalf("after agent's first message: %s", s.State)
			}
			h.agent("chat-1", "a1", "Hi, I'm Beth", "") // duplicate delivery: no-op
			h.say("conv", "it won't boot")
			h.agent("chat-1", "a2", "Try holding power for 10s", "")
			tt.end(h, "chat-1")

			s = h.session("conv")
			if s.State != bridge.StateClosed || s.CloseReason != tt.wantReason {
				t.Fatalf("ended in %s/%s; want closed/%s", s.State, s.CloseReason, tt.wantReason)
			}
			got := h.user.lines("conv")
			want := []string{"bot: hello", "Let me get a human.", texts.Connecting, "Hi, I'm Beth", "Try holding power for 10s"}
			if len(got) < len(want)+2 {
				t.Fatalf("user saw %q", got)
			}
			for i, w := range want {
				if got[i] != w {
					t.Fatalf("user line %d = %q, want %q (all: %q)", i, got[i], w, got)
				}
			}
			// The ending notice and the bot-back notice come at once; a
			// failed leave adds its line after them.
			tail := got[len(got)-2:]
			if h.desk.failLeave {
				if got[len(got)-1] != texts.LeaveFailed {
					t.Fatalf("last line %q, want the leave-failed notice", got[len(got)-1])
				}
				tail = got[len(got)-3 : len(got)-1]
			}
			if !strings.Contains(tail[0], tt.wantLine) {
				t.Fatalf("ending line %q does not contain %q (all: %q)", tail[0], tt.wantLine, got)
			}
			if tail[1] != texts.BotBack {
				t.Fatalf("line after the ending %q, want the bot-back notice", tail[1])
			}
			posted := h.desk.posted["chat-1"]
			if len(posted) < 2 || posted[0] != "my laptop is broken" || posted[1] != "it won't boot" {
				t.Fatalf("agent got %q", posted)
			}
			// Each post names how many of the bridge's posts the desk
			// confirmed before it.
			for i, n := range h.desk.confirmed {
				if n != i {
					t.Fatalf("post %d carried Confirmed %d, want %d (all %v)", i, n, i, h.desk.confirmed)
				}
			}
			for _, r := range h.bot.received["conv"] {
				if strings.Contains(r, "laptop") || strings.Contains(r, "boot") || strings.Contains(r, "there?") || strings.HasPrefix(r, "/") {
					t.Fatalf("bot received a message meant for the agent: %q", r)
				}
			}
			// The agent's chat hears that the employee is gone when the
			// employee ended it, never when the agent or the desk did (nor
			// when the desk is failing).
			noted := slices.Contains(posted, texts.EmployeeLeft)
			if want := tt.wantReason == bridge.ReasonUserEnded || tt.wantReason == bridge.ReasonUserRestarted; noted != want {
				t.Fatalf("note to the agent %v, want %v: agent got %q", noted, want, posted)
			}
			if noted && (posted[len(posted)-1] != texts.EmployeeLeft || h.desk.left["chat-1"] != 1) {
				t.Fatalf("agent got %q, left %d times: want the note last, then one leave", posted, h.desk.left["chat-1"])
			}
			hb := h.bot.handbacks["conv"]
			if len(hb) != 1 || hb[0].Reason != tt.wantReason || hb[0].Restart != tt.restart {
				t.Fatalf("handbacks %+v", hb)
			}
			// The bot owns the conversation again.
			h.say("conv", "thanks")
			if got := h.user.lines("conv"); got[len(got)-1] != "bot: thanks" {
				t.Fatalf("after handback the bot did not answer: %q", got)
			}
			if s := h.session("conv"); s.State != bridge.StateBot {
				t.Fatalf("new session state %s", s.State)
			}
		})
	}
}

func TestRelayOpenFailsEndsSession(t *testing.T) {
	h := newHarness(t)
	h.desk.failOpen = true
	h.say("conv", "agent please")
	s := h.session("conv")
	if s.State != bridge.StateClosed || s.CloseReason != bridge.ReasonRelayError {
		t.Fatalf("state %s/%s", s.State, s.CloseReason)
	}
	got := h.user.lines("conv")
	if !strings.Contains(strings.Join(got, "\n"), bridge.DefaultTexts().DeskDown) {
		t.Fatalf("user was not told the desk is down: %q", got)
	}
}

func TestRelayMessageWhileOpeningIsRelayed(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// Two messages arrive before the dispatcher runs: the second must reach the
	// agent once the chat exists, never the bot.
	for i, text := range []string{"agent please", "it's urgent"} {
		a := bridge.UserActivity{Kind: bridge.ActivityMessage, ID: fmt.Sprint("m", i), Text: text,
			Ref: bridge.ConversationRef{Conversation: "c2", ServiceURL: "https://smba.example/", ConversationType: "personal"}}
		if err := h.relay.UserActivity(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	h.drain()
	if got := h.desk.posted["chat-1"]; len(got) != 1 || got[0] != "it's urgent" {
		t.Fatalf("agent got %q", got)
	}
	if got := h.bot.received["c2"]; len(got) != 1 {
		t.Fatalf("bot got %q", got)
	}
}

func TestRelayGroupChatGetsPoliteAnswer(t *testing.T) {
	h := newHarness(t)
	a := bridge.UserActivity{Kind: bridge.ActivityMessage, ID: "g1", Text: "agent please",
		Ref: bridge.ConversationRef{Conversation: "19:group", ServiceURL: "https://smba.example/", ConversationType: "groupChat"}}
	if err := h.relay.UserActivity(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	h.drain()
	if got := h.user.lines("19:group"); len(got) != 1 || got[0] != bridge.DefaultTexts().GroupChat {
		t.Fatalf("group chat got %q", got)
	}
	if len(h.bot.received) != 0 {
		t.Fatal("group chat message reached the bot")
	}
}

func TestRelayUserBlockedEndsSession(t *testing.T) {
	h := newHarness(t)
	h.say("conv", "agent please")
	h.user.fail = fmt.Errorf("teams: %w", bridge.ErrUserUnreachable)
	h.agent("chat-1", "a1", "Hello?", "")
	s := h.session("conv")
	if s.State != bridge.StateClosed || s.CloseReason != bridge.ReasonUserBlocked {
		t.Fatalf("state %s/%s", s.State, s.CloseReason)
	}
	if h.desk.left["chat-1"] != 1 {
		t.Fatal("the bridge did not leave the chat")
	}
}

func TestRelaySweepTimeouts(t *testing.T) {
	tests := []struct {
		name       string
		agentJoins bool
		advance    time.Duration
		want       bridge.CloseReason // "" = still open
	}{
		{"queued past the queue timeout", false, 11 * time.Minute, bridge.ReasonQueueTimeout},
		{"queued within the queue timeout", false, 9 * time.Minute, ""},
		{"live past the idle timeout", true, 31 * time.Minute, bridge.ReasonIdleTimeout},
		{"live within the idle timeout", true, 29 * time.Minute, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			var mu sync.Mutex
			now := time.Now()
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			h.relay = bridge.NewRelay(h.st, h.bot, h.desk, h.user, nil, bridge.RelayConfig{
				QueueTimeout: 10 * time.Minute, IdleTimeout: 30 * time.Minute, Now: clock})
			h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond})
			h.say("conv", "agent please")
			if tt.agentJoins {
				h.agent("chat-1", "a1", "Hi", "")
			}
			mu.Lock()
			now = now.Add(tt.advance)
			mu.Unlock()
			n, err := h.relay.Sweep(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			h.drain()
			s := h.session("conv")
			if tt.want == "" {
				if n != 0 || !s.HumanOwned() {
					t.Fatalf("swept %d, state %s; want the session left open", n, s.State)
				}
				return
			}
			if n != 1 || s.State != bridge.StateClosed || s.CloseReason != tt.want {
				t.Fatalf("swept %d, %s/%s; want 1, closed/%s", n, s.State, s.CloseReason, tt.want)
			}
			if h.desk.left["chat-1"] != 1 || len(h.bot.handbacks["conv"]) != 1 {
				t.Fatalf("left %d times, %d handbacks; want one each", h.desk.left["chat-1"], len(h.bot.handbacks["conv"]))
			}
			// A timeout is not the agent's doing: the agent's chat hears
			// that the employee is gone before the bridge leaves.
			if p := h.desk.posted["chat-1"]; len(p) == 0 || p[len(p)-1] != bridge.DefaultTexts().EmployeeLeft {
				t.Fatalf("agent got %q, want the employee-left note last", p)
			}
		})
	}
}

// TestRelayEmptyAgentMessageIsNotSent: a desk row with no text (an
// attachment-only message) is stored but not sent, since Teams refuses empty
// activities; it still counts as the agent joining.
func TestRelayEmptyAgentMessageIsNotSent(t *testing.T) {
	h := newHarness(t)
	h.say("conv", "agent please")
	before := len(h.user.lines("conv"))
	h.agent("chat-1", "a-empty", "  \n", "")
	if got := h.user.lines("conv"); len(got) != before {
		t.Fatalf("an empty agent message was sent: %q", got[before:])
	}
	if s := h.session("conv"); s.State != bridge.StateLive {
		t.Fatalf("state %s, want live", s.State)
	}
	h.agent("chat-1", "a2", "Hi", "")
	if got := h.user.lines("conv"); got[len(got)-1] != "Hi" {
		t.Fatalf("the next agent message did not arrive: %q", got)
	}
}
