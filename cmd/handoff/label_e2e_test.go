package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// TestAgentLabelAndCSAT runs a live chat in which the agent writes private
// labels between ordinary messages: the labels land on the review record, the
// agent gets an acknowledgment in the desk chat, the employee sees the
// ordinary messages and never a label, and the labels stay out of the human
// turns of the record. A custom prefix works the same way. After the chat the
// employee rates it (CSAT round trip through the real service and the Teams
// and Rasa fakes).
func TestAgentLabelAndCSAT(t *testing.T) {
	for _, tc := range []struct{ name, prefix string }{{"default prefix", ""}, {"custom prefix", "!!"}} {
		t.Run(tc.name, func(t *testing.T) {
			extra := map[string]string{}
			prefix := "#"
			if tc.prefix != "" {
				extra["HANDOFF_REVIEW_LABEL_PREFIX"] = tc.prefix
				prefix = tc.prefix
			}
			w := newWorld(t, worldOpts{extra: extra})
			u := teamstest.NewUser("Lena Label")
			group := handOff(w, u)
			const wait = 30 * time.Second

			for _, text := range []string{
				prefix + "topic reset MFA on new phone",
				"Please open the Authenticator app on the new phone.",
				prefix + "bot-could-have mfa_reset " + prefix + "needed-human",
				prefix + "topic",
				"#hashtag is just text for the employee",
			} {
				if _, err := w.sn.Say(group, agentName, text); err != nil {
					t.Fatal(err)
				}
			}
			w.waitUser(u, "#hashtag is just text", wait)
			w.waitAgent(group, `[handoff, not shown to the employee] Recorded for the bot team: topic "reset MFA on new phone".`, wait)
			w.waitAgent(group, "[handoff, not shown to the employee] Recorded for the bot team: the bot could have handled it as mfa_reset, it needed a human.", wait)
			w.waitAgent(group, "[handoff, not shown to the employee] Label not recorded: write "+prefix+"topic <what the case was>.", wait)
			w.say(u, "/end_chat")
			s := w.waitClosed(u, wait)

			for _, l := range w.userLines(u) {
				if strings.Contains(l, prefix+"topic") || strings.Contains(l, "needed-human") || strings.Contains(l, "not shown to the employee") {
					t.Errorf("the employee saw a label or its acknowledgment: %q", l)
				}
			}
			if !strings.Contains(strings.Join(w.userLines(u), "\n"), "Authenticator app") {
				t.Errorf("the ordinary agent message did not reach the employee: %q", w.userLines(u))
			}

			rec := w.review(s.ID)
			v := rec.Verdict
			if v == nil || v.Topic != "reset MFA on new phone" || v.BotCouldHave != "mfa_reset" || !v.NeededHuman || v.Agent == "" || v.At.IsZero() {
				t.Fatalf("verdict on the record = %+v", v)
			}
			for _, tu := range rec.HumanTurns {
				if strings.HasPrefix(tu.Text, prefix+"topic") || strings.Contains(tu.Text, "needed-human") || strings.Contains(tu.Text, "not shown") {
					t.Errorf("a label is in the human turns: %q", tu.Text)
				}
			}
			// The employee rates the chat on the rating card: a comment and
			// one tap; both land on the record, the card turns into the
			// thank-you in place, and nothing reaches Rasa or the agent.
			conv := w.ch().ConversationID(u)
			card, data := w.ratingCard(conv, "4 ★", wait)
			data[bridge.CSATCommentKey] = "quick, mail me at lena@contoso.com"
			if code, err := w.ch().Post(context.Background(), w.ch().CardSubmit(u, data)); err != nil || code != 200 {
				t.Fatalf("rating submit: %d %v", code, err)
			}
			w.waitCardUpdate(conv, card.ID, "Thanks for rating the chat 4/5.", wait)
			rec = w.review(s.ID)
			if c := rec.CSAT; c == nil || c.Rating != 4 || c.Comment != "quick, mail me at [email]" {
				t.Errorf("CSAT on the record = %+v", c)
			}
			for _, c := range w.rasa.Calls() {
				if strings.Contains(string(c.Body), "handoff.csat") || strings.Contains(string(c.Body), "lena@") {
					t.Errorf("Rasa received the rating: %s %s", c.Path, c.Body)
				}
			}
			if got := strings.Join(w.agentGot(group), "\n"); strings.Contains(got, "handoff.csat") || strings.Contains(got, "mail me") {
				t.Errorf("the agent received the rating: %q", got)
			}

			// In a later live chat a typed "/csat 5" is text for the agent.
			if tc.prefix == "" {
				w.say(u, "talk to live agent")
				deadline := time.Now().Add(wait)
				for (w.session(u).AgentChatID == "" || w.session(u).ID == s.ID) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				group2 := string(w.session(u).AgentChatID)
				if err := w.sn.Accept(group2, agentName); err != nil {
					t.Fatal(err)
				}
				w.say(u, "/csat 5")
				w.waitAgent(group2, "/csat 5", wait)
				if r := w.review(s.ID); r.CSAT == nil || r.CSAT.Rating != 4 {
					t.Errorf("typed /csat 5 changed the earlier rating: %+v", r.CSAT)
				}
			}

			// Two ordinary agent messages (the greeting and the instruction)
			// and the "#hashtag" line count; the labels do not.
			if rec.AgentMessages != 3 {
				t.Errorf("agent messages = %d, want 3 (labels not counted)", rec.AgentMessages)
			}
		})
	}
}

// ratingCard waits for the rating card sent to conv and returns it and the
// submit data of its button titled button.
func (w *world) ratingCard(conv, button string, wait time.Duration) (teamstest.Sent, map[string]any) {
	w.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		for _, s := range w.conn.Sent(conv) {
			for _, a := range s.Attachments {
				var c struct {
					Actions []struct {
						Title string         `json:"title"`
						Data  map[string]any `json:"data"`
					} `json:"actions"`
				}
				if a.ContentType != teams.ContentTypeAdaptiveCard || json.Unmarshal(a.Content, &c) != nil ||
					!strings.Contains(string(a.Content), bridge.DefaultTexts().CSATTitle) {
					continue
				}
				for _, act := range c.Actions {
					if act.Title == button {
						return s, act.Data
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.t.Fatalf("no rating card with a %q button in %s", button, conv)
	return teamstest.Sent{}, nil
}

// waitCardUpdate waits until the card id in conv was updated to show text.
func (w *world) waitCardUpdate(conv, id, text string, wait time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		for _, u := range w.conn.Updates(conv) {
			if u.ID == id && len(u.Attachments) == 1 && strings.Contains(string(u.Attachments[0].Content), text) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.t.Fatalf("card %s in %s was never updated to %q", id, conv, text)
}

// review returns the review record of a session.
func (w *world) review(id bridge.SessionID) bridge.ReviewRecord {
	w.t.Helper()
	var rec bridge.ReviewRecord
	err := w.current().store.Update(context.Background(), func(tx bridge.Tx) (err error) {
		rec, err = tx.Review(context.Background(), id)
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return rec
}
