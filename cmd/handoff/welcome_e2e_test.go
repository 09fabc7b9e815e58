package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// TestOneWelcomeEndToEnd: a personal install sends installationUpdate and
// conversationUpdate (the bot added), both signed, to the real service; the
// fake Bot Connector shows the employee one welcome, also after a second
// install and a repeated delivery, and another employee gets their own.
// The bot's answer to a message sent afterwards goes through the same lane
// of the outbox, so once it has arrived a second welcome would have too.
func TestOneWelcomeEndToEnd(t *testing.T) {
	w := newWorld(t, worldOpts{delivery: "poll"})
	welcome := bridge.DefaultTexts().Welcome
	post := func(a teamstest.Activity) {
		t.Helper()
		if code, err := w.ch().Post(context.Background(), a); err != nil || code != 200 {
			t.Fatalf("post %s: %d %v", a.Type, code, err)
		}
	}
	count := func(u teamstest.User) int {
		n := 0
		for _, l := range w.userLines(u) {
			if strings.Contains(l, welcome) {
				n++
			}
		}
		return n
	}
	u, v := teamstest.NewUser("Welcome Once"), teamstest.NewUser("Welcome Too")
	install := w.ch().InstallationUpdate(u, "add")
	post(install)
	post(w.ch().ConversationUpdate(u))
	post(install) // Teams delivers the same activity again
	post(w.ch().InstallationUpdate(u, "add"))
	post(w.ch().ConversationUpdate(v))
	w.say(u, "hello")
	w.say(v, "hello")
	w.waitUser(u, "IT helpdesk bot", 30*time.Second)
	w.waitUser(v, "IT helpdesk bot", 30*time.Second)
	for _, x := range []teamstest.User{u, v} {
		if n := count(x); n != 1 {
			t.Errorf("%s saw %d welcomes, want 1: %q", x.Name, n, w.userLines(x))
		}
		if l := w.userLines(x); len(l) == 0 || !strings.Contains(l[0], welcome) {
			t.Errorf("%s: the welcome is not the first line: %q", x.Name, l)
		}
	}
}
