package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/review"
)

const digestChannel = "19:5b1f0c2d3e4a4b6c8d9e0f1a2b3c4d5e@thread.tacv2"

// TestWeeklyDigestToTeamsChannel runs the service on PostgreSQL: one replica
// without HANDOFF_REVIEW_TEAMS_CHANNEL (no digest loop, nothing posted), then
// two replicas with it whose schedule is already due. Once both have looked
// at the week (their logs say so), the previous ISO week's digest has been
// posted once to the channel through the fake Bot
// Connector's Create Conversation (a new channel post), with the week's
// count, reasons, clusters and the link to the inbox.
func TestWeeklyDigestToTeamsChannel(t *testing.T) {
	w := newWorld(t, worldOpts{dbURL: pgSchema(t, "digest-e2e"), extra: map[string]string{"HANDOFF_LOG_LEVEL": "info"}})
	a := w.current()
	if a.parts.digest != nil {
		t.Fatal("a digest loop runs without HANDOFF_REVIEW_TEAMS_CHANNEL")
	}
	for _, l := range a.loops {
		if l.name == "review-digest" {
			t.Fatal("review-digest is in the loop table without HANDOFF_REVIEW_TEAMS_CHANNEL")
		}
	}

	// The previous week's handoffs.
	from, _, week := review.PreviousISOWeek(time.Now(), time.UTC)
	ctx := context.Background()
	err := a.store.Update(ctx, func(tx bridge.Tx) error {
		for i, u := range []string{"my new phone has no authenticator", "authenticator gone after new phone", "printer jams every time"} {
			r := bridge.ReviewRecord{SessionID: bridge.SessionID(fmt.Sprintf("digest-%d", i)), StartedAt: from.Add(time.Duration(i+1) * time.Hour),
				Reason: "fallback", Intent: "password_reset", Confidence: 0.41,
				BotTurns: []bridge.Turn{{Role: "user", Text: u, Intent: "password_reset", Confidence: 0.41}}}
			if err := tx.PutReview(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	env := maps.Clone(w.env)
	env["HANDOFF_REVIEW_TEAMS_CHANNEL"] = digestChannel
	env["HANDOFF_REVIEW_TEAMS_SERVICE_URL"] = w.conn.ServiceURL()
	env["HANDOFF_REVIEW_SCHEDULE"] = "* * * * *" // due since Monday 00:00 of this week
	env["HANDOFF_PUBLIC_URL"] = "https://handoff.example.com"
	env["HANDOFF_LOG_LEVEL"] = "info"
	// Each replica's log (debug: the digest's decision for the week) goes
	// to its own buffer, so the test can wait until both have looked.
	logs := []*lockedBuffer{{}, {}}
	for _, buf := range logs {
		r, _, _ := launchLogged(t, env, nil, slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
		if r.parts.digest == nil {
			t.Fatal("no digest loop with HANDOFF_REVIEW_TEAMS_CHANNEL set")
		}
	}
	sent, err := w.conn.WaitFor(digestChannel, 1, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Both replicas look at the week as they start (it is due): one posts,
	// the other finds it posted or claimed. Only then is the count final
	// (the next look is HANDOFF_REVIEW_SCHEDULE's next week, or a retry in
	// 10 minutes).
	looked := func(log string) bool {
		return strings.Contains(log, "review: weekly digest posted") || strings.Contains(log, "review: digest was posted already") ||
			strings.Contains(log, "review: digest is being posted by another replica")
	}
	deadline := time.Now().Add(20 * time.Second)
	for !looked(logs[0].String()) || !looked(logs[1].String()) {
		if time.Now().After(deadline) {
			t.Fatalf("a replica never looked at the week's digest:\n--- replica 1\n%s\n--- replica 2\n%s", logs[0], logs[1])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(w.conn.Sent(digestChannel)); n != 1 {
		t.Fatalf("%d digest posts from three replicas (one without the setting), want 1", n)
	}
	if n := strings.Count(logs[0].String()+logs[1].String(), "review: weekly digest posted"); n != 1 {
		t.Errorf("%d replicas say they posted the digest, want 1", n)
	}
	if len(sent[0].Attachments) != 1 {
		t.Fatalf("post attachments: %+v", sent[0].Attachments)
	}
	card := string(sent[0].Attachments[0].Content)
	for _, want := range []string{"week " + week, "**3** handoffs", "Top reasons", "fallback 3", "The bot guessed password_reset at 0.41",
		`"type":"Action.OpenUrl"`, "https://handoff.example.com/review?from=" + from.Format("2006-01-02")} {
		if !strings.Contains(card, want) {
			t.Errorf("digest card lacks %q:\n%s", want, card)
		}
	}
}
