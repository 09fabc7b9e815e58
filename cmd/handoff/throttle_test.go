package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// TestDeskRateLimitKeepsChatLive (issue 11.1): mid-chat the instance's
// per-user rate limit allows one request per 4 s and answers 429 with
// Retry-After otherwise, far longer than two attempts 50 ms apart would
// last. The session stays live, the employee is told once that delivery is
// delayed, and every message reaches the agent once, in order.
func TestDeskRateLimitKeepsChatLive(t *testing.T) {
	const wait = 90 * time.Second
	w := newWorld(t, worldOpts{delivery: "webhook"})
	u := teamstest.NewUser("Rate Limited Employee")
	w.say(u, "talk to live agent")
	w.waitUser(u, bridge.DefaultTexts().Connecting, wait)
	group := w.chatOf(u, wait)
	if err := w.sn.Accept(group, agentName); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, snowtest.DefaultGreeting, wait)

	w.sn.SetRateLimit(snowtest.RateLimit{Limit: 1, Window: 4 * time.Second})
	var said []string
	for i := 1; i <= 3; i++ {
		m := fmt.Sprintf("limited question %d", i)
		w.say(u, m)
		said = append(said, m)
	}
	w.waitAgent(group, said[len(said)-1], wait)
	w.sn.SetRateLimit(snowtest.RateLimit{})

	if s := w.session(u); s.State != bridge.StateLive {
		t.Fatalf("session %s/%s after the rate limit, want live", s.State, s.CloseReason)
	}
	var got []string
	for _, g := range w.agentGot(group) {
		if strings.HasPrefix(g, "limited question") {
			got = append(got, g)
		}
	}
	if !slices.Equal(got, said) {
		t.Fatalf("agent got %q, want each message once in order: %q", got, said)
	}
	delayed := 0
	for _, l := range w.userLines(u) {
		if l == bridge.DefaultTexts().Delayed {
			delayed++
		}
	}
	if delayed != 1 {
		t.Fatalf("the employee was told %d times that delivery is delayed, want once", delayed)
	}
}

// TestSlackRateLimitKeepsChatLive (issues 11.1, 17): mid-chat Slack answers
// chat.postMessage with HTTP 429 "ratelimited" and Retry-After, twice. The
// Slack desk returns bridge.ThrottledError, so the dispatcher reschedules the
// item for the time Slack named without spending an attempt, records the
// desk's throttle in outbox_throttles, and tells the employee once that
// delivery is delayed; every message still reaches the thread once, in order,
// and the chat stays live.
func TestSlackRateLimitKeepsChatLive(t *testing.T) {
	const wait = 60 * time.Second
	const retryAfter = 2 // seconds
	w := newWorld(t, worldOpts{desk: "slack"})
	w.slack.AddUser(slackAgent, agentName)
	u := teamstest.NewUser("Rate Limited Slack Employee")
	w.say(u, "talk to live agent")
	w.waitUser(u, bridge.DefaultTexts().Connecting, wait)
	ts := w.slackParentOf(u, wait).TS
	w.slackClick(ts, "handoff_take")
	w.waitUser(u, agentName+" joined the chat.", wait)

	posts := w.slack.Calls()["chat.postMessage"]
	w.slack.SetRetryAfter(retryAfter)
	w.slack.Fail("chat.postMessage", "ratelimited", 2)
	before := time.Now()
	var said []string
	for i := 1; i <= 3; i++ {
		m := fmt.Sprintf("limited slack question %d", i)
		w.say(u, m)
		said = append(said, m)
	}
	w.waitSlack(ts, said[len(said)-1], wait)
	took := time.Since(before)

	if s := w.session(u); s.State != bridge.StateLive {
		t.Fatalf("session %s/%s after the rate limit, want live", s.State, s.CloseReason)
	}
	var got []string
	for _, g := range w.slackGot(ts) {
		if i := strings.Index(g, "limited slack question"); i >= 0 {
			got = append(got, g[i:])
		}
	}
	if !slices.Equal(got, said) {
		t.Fatalf("thread got %q, want each message once in order: %q", got, said)
	}
	if n := w.slack.Calls()["chat.postMessage"] - posts; n != len(said)+2 {
		t.Errorf("chat.postMessage called %d times for %d messages and 2 rate-limited answers", n, len(said))
	}
	if took < 2*retryAfter*time.Second {
		t.Errorf("all messages arrived after %s: the two rate-limited posts were retried before Retry-After (%d s each)", took, retryAfter)
	}
	throttled := int64(0)
	for k, n := range w.current().parts.dispatcher.Stats.ThrottledCounts() {
		if bridge.LaneOf(k) == bridge.LaneDesk {
			throttled += n
		}
	}
	if throttled != 2 {
		t.Errorf("the dispatcher counted %d throttled desk attempts, want 2", throttled)
	}
	err := w.current().store.Update(context.Background(), func(tx bridge.Tx) error {
		until, err := tx.Throttle(context.Background(), bridge.LaneDesk, time.Time{})
		if err != nil {
			return err
		}
		if until.Before(before.Add(retryAfter * time.Second)) {
			t.Errorf("outbox_throttles holds %v for the desk, want at least Retry-After (%d s) after %v", until, retryAfter, before)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	delayed := 0
	for _, l := range w.userLines(u) {
		if l == bridge.DefaultTexts().Delayed {
			delayed++
		}
	}
	if delayed != 1 {
		t.Fatalf("the employee was told %d times that delivery is delayed, want once", delayed)
	}
}
