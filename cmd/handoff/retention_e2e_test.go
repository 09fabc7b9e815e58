package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// TestMessageRetentionEndToEnd runs a live chat through the service, ends
// it, and then runs the weekly job of the running service as if the days
// had passed: within HANDOFF_MESSAGE_RETENTION (30 days) the chat and its
// messages stay (done outbox rows go after a day); past it the session (with
// the employee's name and e-mail) and its messages are gone, while the
// review record stays for HANDOFF_REVIEW_RETENTION.
func TestMessageRetentionEndToEnd(t *testing.T) {
	const wait = 30 * time.Second
	w := newWorld(t, worldOpts{})
	u := teamstest.NewUser("Retention Employee")
	group := handOff(w, u)
	if _, err := w.sn.Say(group, agentName, "Your VPN profile is renewed."); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, "Your VPN profile is renewed.", wait)
	w.say(u, "/end_chat")
	s := w.waitClosed(u, wait)
	w.waitUser(u, bridge.DefaultTexts().BotBack, wait)
	// Back with the bot: this conversation's outbox rows from now on are
	// not the closed session's, so only the done-row pruning removes them.
	w.say(u, "how do I reset my password?")
	w.waitUser(u, "password", wait)

	ctx := context.Background()
	a := w.current()
	type counts struct {
		session       bool
		messages      int
		done, pending int
		review        bool
	}
	look := func() (c counts) {
		t.Helper()
		err := a.store.Update(ctx, func(tx bridge.Tx) error {
			_, err := tx.Session(ctx, s.ID)
			if err != nil && !errors.Is(err, bridge.ErrNotFound) {
				return err
			}
			c.session = err == nil
			ms, err := tx.Messages(ctx, s.ID, 0)
			if err != nil {
				return err
			}
			c.messages = len(ms)
			stats, err := tx.OutboxStats(ctx)
			if err != nil {
				return err
			}
			c.done, c.pending = stats["done"], stats["pending"]
			_, err = tx.Review(ctx, s.ID)
			if err != nil && !errors.Is(err, bridge.ErrNotFound) {
				return err
			}
			c.review = err == nil
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	deadline := time.Now().Add(wait)
	c := look()
	for ; c.pending != 0 && time.Now().Before(deadline); c = look() {
		time.Sleep(20 * time.Millisecond) // the ending's deliveries; a session with pending work is kept
	}
	if !c.session || c.messages == 0 || c.done == 0 || !c.review || c.pending != 0 {
		t.Fatalf("before the retention: %+v, want the session, its messages, done outbox rows and the review record", c)
	}

	// Two days later: the done outbox rows (older than a day) are pruned,
	// the chat is kept.
	run, err := a.parts.weekly.RunOnce(ctx, time.Now().Add(2*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if after := look(); !after.session || after.messages != c.messages || !after.review || after.done != 0 || run.PrunedOutbox != int64(c.done) {
		t.Errorf("2 days later (%d done outbox rows pruned): %+v, want the chat kept and the %d done outbox rows gone", run.PrunedOutbox, after, c.done)
	}
	run, err = a.parts.weekly.RunOnce(ctx, time.Now().Add(29*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if after := look(); !after.session || after.messages != c.messages || !after.review || run.PrunedSessions != 0 {
		t.Errorf("29 days later (run %+v): %+v, want the chat kept", run, after)
	}
	run, err = a.parts.weekly.RunOnce(ctx, time.Now().Add(31*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	after := look()
	if after.session || after.messages != 0 {
		t.Errorf("31 days later: %+v, want the session and its messages gone", after)
	}
	if !after.review {
		t.Error("the review record went with the messages; it is kept for HANDOFF_REVIEW_RETENTION")
	}
	if run.PrunedSessions < 1 || run.PrunedMessages < int64(c.messages) {
		t.Errorf("the run reports %d sessions and %d messages pruned; want at least 1 and %d", run.PrunedSessions, run.PrunedMessages, c.messages)
	}
}
