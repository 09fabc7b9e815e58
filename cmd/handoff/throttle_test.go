package main

import (
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
