package bridge_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// recordingReviewer keeps a minimal review record per handoff.
type recordingReviewer struct{}

func (recordingReviewer) Start(s bridge.Session, sig bridge.HandoffSignal, _ bridge.BotContext, at time.Time) bridge.ReviewRecord {
	return bridge.ReviewRecord{SessionID: s.ID, StartedAt: at, Reason: sig.Reason}
}

func (recordingReviewer) Finish(r bridge.ReviewRecord, s bridge.Session, _ []bridge.Message, at time.Time) bridge.ReviewRecord {
	r.EndedAt, r.CloseReason = at, s.CloseReason
	return r
}

func (recordingReviewer) CleanText(s string) string {
	return strings.ReplaceAll(s, "secret", "[redacted]")
}

// submit taps a rating card button: a card submit carrying the button's
// data (and the comment field's value), as the channel delivers it.
func (h *harness) submit(conv bridge.ConversationID, b bridge.Button, comment string) {
	h.t.Helper()
	h.seq++
	data := maps.Clone(b.Data)
	data[bridge.CSATCommentKey] = comment
	a := bridge.UserActivity{Kind: bridge.ActivityMessage, ID: fmt.Sprintf("act-%d", h.seq), Submit: data,
		Ref: bridge.ConversationRef{Conversation: conv, ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u", UserName: "Abel Tuter"}}
	if err := h.relay.UserActivity(context.Background(), a); err != nil {
		h.t.Fatal(err)
	}
	h.drain()
}

// csatOps are the card operations on the rating card (not the status card).
func csatOps(cu *cardUser) []cardOp {
	var out []cardOp
	for _, op := range cu.ops() {
		if op.card.Title == bridge.DefaultTexts().CSATTitle {
			out = append(out, op)
		}
	}
	return out
}

// TestCSATRoundTrip: after an agent-handled chat the employee gets a rating
// card (five buttons whose data carries the session, and a comment field);
// a tap with a comment lands on the review record (comment redacted), the
// card turns into the thank-you in place, and nothing reaches the bot or the
// agent. A typed "/csat 5" in a later live chat is an ordinary message the
// agent gets. A chat no agent joined offers no card; a card left unanswered
// turns into its expired state (no buttons) when the sweep passes its expiry,
// and a late tap changes nothing.
func TestCSATRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	h, cu := newCardHarness(t, bridge.RelayConfig{Now: clock, CSAT: bridge.CSATConfig{Expiry: time.Hour}})
	h.relay = bridge.NewRelay(h.st, h.bot, h.desk, cu, recordingReviewer{}, bridge.RelayConfig{Now: clock, CSAT: bridge.CSATConfig{Expiry: time.Hour}})
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	tx := bridge.DefaultTexts()
	const conv = "conv-csat"
	h.say(conv, "talk to an agent")
	s := h.session(conv)
	h.agent(s.AgentChatID, "m1", "Hi, Beth here.", "")
	h.agent(s.AgentChatID, "m2", "Beth has closed the support session", bridge.ReasonAgentClosed)
	ops := csatOps(cu)
	if len(ops) != 1 || ops[0].update || len(ops[0].card.Buttons) != 5 || ops[0].card.Input == nil || ops[0].card.Input.ID != bridge.CSATCommentKey {
		t.Fatalf("rating card after an agent-handled chat: %+v", ops)
	}
	four := ops[0].card.Buttons[3]
	if four.Title != "4 ★" || four.Data[bridge.CSATSessionKey] != string(s.ID) || four.Data[bridge.CSATRatingKey] != "4" || four.Payload != "" {
		t.Fatalf("the 4 button = %+v, want data with the session and rating 4 and no text payload", four)
	}

	h.submit(conv, four, "quick and friendly, my secret is safe")
	rec := h.review(s.ID)
	if rec.CSAT == nil || rec.CSAT.Rating != 4 || rec.CSAT.Comment != "quick and friendly, my [redacted] is safe" || !rec.CSAT.At.Equal(now) {
		t.Fatalf("CSAT on the record = %+v", rec.CSAT)
	}
	ops = csatOps(cu)
	if len(ops) != 2 || !ops[1].update || ops[1].id != ops[0].id || len(ops[1].card.Buttons) != 0 ||
		!slices.Contains(ops[1].card.Lines, fmt.Sprintf(tx.CSATThanks, 4)) {
		t.Fatalf("after the tap the card is not the thank-you in place: %+v", ops)
	}
	// A second tap on a stale copy of the card changes nothing.
	h.submit(conv, ops[0].card.Buttons[0], "")
	if r := h.review(s.ID); r.CSAT.Rating != 4 {
		t.Errorf("a second tap replaced the rating: %d", r.CSAT.Rating)
	}
	if got := h.bot.received[conv]; slices.ContainsFunc(got, func(m string) bool { return strings.Contains(m, "4") && strings.Contains(m, "csat") }) {
		t.Errorf("the bot received the rating: %q", got)
	}

	// A later live chat: a typed "/csat 5" is text like any other.
	advance(time.Minute) // the new session is the newer one
	h.say(conv, "talk to an agent")
	s2 := h.session(conv)
	h.agent(s2.AgentChatID, "n1", "Hi again.", "")
	h.say(conv, "/csat 5")
	h.desk.mu.Lock()
	got := slices.Clone(h.desk.posted[s2.AgentChatID])
	h.desk.mu.Unlock()
	if !slices.Contains(got, "/csat 5") {
		t.Errorf("the agent did not get the typed /csat 5: %q", got)
	}
	if r := h.review(s.ID); r.CSAT.Rating != 4 {
		t.Errorf("typed text changed the earlier rating to %d", r.CSAT.Rating)
	}

	// The second chat's card is left unanswered: it expires in place.
	h.say(conv, "/end_chat")
	ops = csatOps(cu)
	card2 := ops[len(ops)-1]
	if card2.update || len(card2.card.Buttons) != 5 || card2.card.Buttons[0].Data[bridge.CSATSessionKey] != string(s2.ID) {
		t.Fatalf("second rating card: %+v", card2)
	}
	if _, err := h.relay.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.drain()
	if n := len(csatOps(cu)); n != len(ops) {
		t.Fatalf("a sweep before the expiry changed the card (%d ops, want %d)", n, len(ops))
	}
	advance(time.Hour + time.Second)
	if _, err := h.relay.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.drain()
	ops = csatOps(cu)
	last := ops[len(ops)-1]
	if !last.update || last.id != card2.id || len(last.card.Buttons) != 0 || !slices.Contains(last.card.Lines, tx.CSATExpired) {
		t.Fatalf("after the expiry the card is not expired in place: %+v", last)
	}
	h.submit(conv, card2.card.Buttons[4], "late")
	if r := h.review(s2.ID); r.CSAT != nil {
		t.Errorf("a rating after the expiry was stored: %+v", r.CSAT)
	}

	// No agent joined: no card.
	const other = "conv-no-agent"
	before := len(csatOps(cu))
	h.say(other, "talk to an agent")
	h.say(other, "/end_chat")
	if n := len(csatOps(cu)); n != before {
		t.Error("a rating card was offered for a chat no agent joined")
	}
	// A forged tap for another conversation's session is dropped.
	h.submit(other, four, "")
	if r := h.review(s.ID); r.CSAT.Rating != 4 || r.CSAT.Comment == "" {
		t.Errorf("a tap from another conversation changed the rating: %+v", r.CSAT)
	}
}

func (h *harness) review(id bridge.SessionID) bridge.ReviewRecord {
	h.t.Helper()
	var r bridge.ReviewRecord
	err := h.st.Update(context.Background(), func(tx bridge.Tx) (err error) {
		r, err = tx.Review(context.Background(), id)
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// TestCSATOff: with no expiry (HANDOFF_CSAT_EXPIRY=0s) an agent-handled chat
// ends without a rating card, and a tap on a card from before changes
// nothing.
func TestCSATOff(t *testing.T) {
	now := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	h, cu := newCardHarness(t, bridge.RelayConfig{})
	h.relay = bridge.NewRelay(h.st, h.bot, h.desk, cu, recordingReviewer{}, bridge.RelayConfig{Now: func() time.Time { return now }})
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	const conv = "conv-csat-off"
	h.say(conv, "talk to an agent")
	s := h.session(conv)
	h.agent(s.AgentChatID, "m1", "Hi, Beth here.", "")
	h.agent(s.AgentChatID, "m2", "Beth has closed the support session", bridge.ReasonAgentClosed)
	if ops := csatOps(cu); len(ops) != 0 {
		t.Fatalf("a rating card with CSAT off: %+v", ops)
	}
	if h.session(conv).ID == s.ID && h.session(conv).State != bridge.StateClosed {
		t.Fatalf("the chat did not end: %+v", h.session(conv))
	}
	h.submit(conv, bridge.Button{Data: map[string]string{bridge.SubmitAction: bridge.CSATAction, bridge.CSATSessionKey: string(s.ID), bridge.CSATRatingKey: "5"}}, "")
	if r := h.review(s.ID); r.CSAT != nil {
		t.Errorf("a rating was stored with CSAT off: %+v", r.CSAT)
	}
}
