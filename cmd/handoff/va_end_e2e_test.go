package main

import (
	"slices"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// TestVAEndSignalsEndToEnd: with the service's own wiring (the end phrases
// of HANDOFF_SERVICENOW_END_PHRASES, here the default), a Virtual Agent
// chat goes on after the idle reminder, which the employee is shown, and
// ends on "The support session was closed.", which the employee is told as
// the agent's close, not shown as a desk line.
func TestVAEndSignalsEndToEnd(t *testing.T) {
	const wait = 30 * time.Second
	tx := bridge.DefaultTexts()
	w := newWorld(t, worldOpts{delivery: "webhook", desk: "va"})
	u := teamstest.NewUser("Va Ends")
	w.say(u, "talk to live agent")
	group := w.chatOf(u, wait)
	if err := w.sn.Accept(group, agentName); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, snowtest.DefaultGreeting, wait)
	const reminder = "The conversation is timing out, are you still there?"
	if _, err := w.sn.SystemMessage(group, reminder); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, reminder, wait)
	if s := w.session(u); s.State != bridge.StateLive {
		t.Fatalf("after the idle reminder the session is %s, want live", s.State)
	}
	const closed = "The support session was closed."
	if _, err := w.sn.SystemMessage(group, closed); err != nil {
		t.Fatal(err)
	}
	s := w.waitClosed(u, wait)
	if s.CloseReason != bridge.ReasonAgentClosed {
		t.Errorf("closed as %s, want agent_closed", s.CloseReason)
	}
	w.waitUser(u, tx.AgentClosed, wait)
	if slices.ContainsFunc(w.userLines(u), func(l string) bool { return l == closed || l == "ℹ️ "+closed }) {
		t.Errorf("the desk's closing line was shown as a message: %q", w.userLines(u))
	}
}
