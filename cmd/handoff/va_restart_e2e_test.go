package main

import (
	"testing"
	"time"

	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// TestVARestartEndToEnd: the Virtual Agent desk keeps what every request of
// a chat repeats (the callback nonce, the employee's e-mail) with the
// session, not in the process, so a chat opened before a restart goes on
// after it: the employee's next message still carries the e-mail and the
// nonce, and the instance's callbacks, which echo the latest request's
// clientVariables, are still accepted and reach the employee.
func TestVARestartEndToEnd(t *testing.T) {
	const wait = 30 * time.Second
	w := newWorld(t, worldOpts{delivery: "webhook", desk: "va"})
	u := teamstest.NewUser("Restart Va")
	const email = "restart.va@example.com"
	w.conn.AddMember(teamstest.Member{ID: u.ID, Name: u.Name, Email: email})
	w.say(u, "talk to live agent")
	group := w.chatOf(u, wait)
	if err := w.sn.Accept(group, agentName); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, snowtest.DefaultGreeting, wait)
	before, _ := w.sn.VAConversation(group)
	nonce := before.ClientVariables["nonce"]
	if nonce == nil || before.EmailID != email {
		t.Fatalf("the chat opened without nonce or e-mail: %+v", before)
	}

	w.halt()
	w.start() // a new process on the same database

	w.say(u, "still here after the restart")
	w.waitAgent(group, "still here after the restart", wait)
	after, _ := w.sn.VAConversation(group)
	if after.LastEmailID != email || after.ClientVariables["nonce"] != nonce {
		t.Errorf("after the restart the message carried emailId %q and clientVariables %v, want %q and the chat's nonce",
			after.LastEmailID, after.ClientVariables, email)
	}
	if _, err := w.sn.Say(group, agentName, "good, I can see you"); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, "good, I can see you", wait)
	if log := w.sn.VALog(); len(log) != 0 {
		t.Errorf("the instance dropped requests: %q", log)
	}
	w.say(u, "/end_chat")
	w.waitClosed(u, wait)
}
