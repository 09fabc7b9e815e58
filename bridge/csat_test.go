package bridge_test

import (
	"context"
	"slices"
	"strings"
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

// TestCSATRoundTrip: after an agent-handled chat the employee is offered a
// rating, taps 4 and adds a comment; both land on the review record, the
// bridge answers, and neither reaches the bot. A chat no agent joined offers
// no rating; a rating after the expiry is refused.
func TestCSATRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	h := newHarness(t)
	h.relay = bridge.NewRelay(h.st, h.bot, h.desk, h.user, recordingReviewer{}, bridge.RelayConfig{Now: clock,
		CSAT: bridge.CSATConfig{Expiry: time.Hour}})
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	const conv = "conv-csat"
	h.say(conv, "talk to an agent")
	s := h.session(conv)
	h.agent(s.AgentChatID, "m1", "Hi, Beth here.", "")
	h.agent(s.AgentChatID, "m2", "Beth has closed the support session", bridge.ReasonAgentClosed)
	lines := h.user.lines(conv)
	if !slices.Contains(lines, bridge.DefaultCSATTexts.Prompt) {
		t.Fatalf("no rating offered after an agent-handled chat: %q", lines)
	}

	h.say(conv, "/csat 4")
	h.say(conv, "/comment quick and friendly, my secret is safe")
	rec := h.review(s.ID)
	if rec.CSAT == nil || rec.CSAT.Rating != 4 || rec.CSAT.Comment != "quick and friendly, my [redacted] is safe" || !rec.CSAT.At.Equal(now) {
		t.Fatalf("CSAT on the record = %+v", rec.CSAT)
	}
	lines = h.user.lines(conv)
	for _, want := range []string{"Thanks for rating the chat 4/5. To add a comment, write /comment followed by what you want to tell us.",
		bridge.DefaultCSATTexts.Comment} {
		if !slices.Contains(lines, want) {
			t.Errorf("the employee was not told %q: %q", want, lines)
		}
	}
	for _, got := range h.bot.received[conv] {
		if strings.HasPrefix(got, "/csat") || strings.HasPrefix(got, "/comment") {
			t.Errorf("the bot received the rating %q", got)
		}
	}

	// A changed mind within the hour replaces the rating; after it, no more.
	h.say(conv, "/csat 5")
	if r := h.review(s.ID); r.CSAT.Rating != 5 {
		t.Errorf("second rating = %d, want 5", r.CSAT.Rating)
	}
	now = now.Add(2 * time.Hour)
	h.say(conv, "/csat 1")
	if r := h.review(s.ID); r.CSAT.Rating != 5 {
		t.Errorf("a rating after the expiry was stored: %d", r.CSAT.Rating)
	}
	if l := h.user.lines(conv); l[len(l)-1] != bridge.DefaultCSATTexts.Expired {
		t.Errorf("last line %q, want the expiry notice", l[len(l)-1])
	}

	// No agent joined: no rating offered, and a rating is answered without
	// reaching the bot.
	const other = "conv-no-agent"
	h.say(other, "talk to an agent")
	h.say(other, "/end_chat")
	if slices.Contains(h.user.lines(other), bridge.DefaultCSATTexts.Prompt) {
		t.Error("a rating was offered for a chat no agent joined")
	}
	h.say(other, "/csat 3")
	if l := h.user.lines(other); l[len(l)-1] != bridge.DefaultCSATTexts.NoRating {
		t.Errorf("last line %q, want the no-rating notice", l[len(l)-1])
	}
	for _, got := range h.bot.received[other] {
		if strings.HasPrefix(got, "/csat") {
			t.Errorf("the bot received %q", got)
		}
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
