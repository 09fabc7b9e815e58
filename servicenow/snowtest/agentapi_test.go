package snowtest_test

import (
	"strings"
	"testing"

	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// TestAgentAPI works a chat over the agent endpoints and checks that it ends
// up exactly as one scripted with Accept, Say and CloseChat.
func TestAgentAPI(t *testing.T) {
	beth := snowtest.AgentUser("Beth Anglin", "agent-secret")
	fred := snowtest.AgentUser("Fred Luddy", "fred-secret")
	if beth.UserName != "beth.anglin" {
		t.Fatalf("AgentUser user name %q, want beth.anglin", beth.UserName)
	}
	in := newInstance(t, snowtest.Options{Now: t0, Users: []snowtest.User{
		{UserName: snowtest.DefaultUser, Password: snowtest.DefaultPassword, Name: snowtest.DefaultUserName},
		beth, fred,
		{UserName: "admin", Password: "admin", Name: "System Administrator"},
	}})
	asBeth := "Basic " + basic(beth.UserName, beth.Password)
	asFred := "Basic " + basic(fred.UserName, fred.Password)
	accept := "/api/now/connect/support/queues/" + snowtest.DefaultQueue + "/accept"

	if a := do(t, in, "POST", accept, asBeth, map[string]any{}); a.status != 404 {
		t.Errorf("accept with an empty queue: %d %s, want 404", a.status, a.raw)
	}
	first := openChat(t, in, "first chat")
	second := openChat(t, in, "second chat")

	if a := do(t, in, "POST", accept, "-", map[string]any{}); a.status != 401 {
		t.Errorf("accept without credentials: %d, want 401", a.status)
	}
	if a := do(t, in, "POST", accept, "Basic "+basic("admin", "admin"), map[string]any{}); a.status != 403 {
		t.Errorf("accept by a user who is not an agent: %d %s, want 403", a.status, a.raw)
	}

	// Accept picks the given chat, or the oldest waiting one.
	a := do(t, in, "POST", accept, asBeth, map[string]string{"group": second})
	if a.status != 200 {
		t.Fatalf("accept second: %d %s", a.status, a.raw)
	}
	entry := a.result().(map[string]any)
	if entry["group"] != second || entry["state"] != float64(2) {
		t.Errorf("accepted entry %v, want group %s in state 2", entry, second)
	}
	if a := do(t, in, "POST", accept, asFred, map[string]string{"group": second}); a.status != 409 {
		t.Errorf("accept of a chat already taken: %d %s, want 409", a.status, a.raw)
	}
	if a := do(t, in, "POST", accept, asFred, nil); a.status != 200 || a.result().(map[string]any)["group"] != first {
		t.Errorf("accept next: %d %s, want the first chat", a.status, a.raw)
	}
	c, _ := in.Chat(second)
	if c.AssignedTo != "Beth Anglin" || c.State != snowtest.WorkInProgress {
		t.Errorf("chat after accept: assigned %q state %v", c.AssignedTo, c.State)
	}

	// Messages: the assigned agent writes as the agent; another agent is
	// hidden from the chat like any other user.
	post := "/api/now/connect/conversations/" + second + "/messages"
	a = do(t, in, "POST", post, asBeth, map[string]string{"message": "Let me check"})
	if a.status != 200 {
		t.Fatalf("agent post: %d %s", a.status, a.raw)
	}
	if m := a.result().(map[string]any); m["created_by"] != "beth.anglin" || m["sender_name"] != "Beth Anglin" {
		t.Errorf("agent message %v, want created_by beth.anglin", m)
	}
	if a := do(t, in, "POST", post, asFred, map[string]string{"message": "not mine"}); a.status != 404 {
		t.Errorf("post by an agent not assigned: %d, want 404", a.status)
	}
	if a := do(t, in, "POST", post, asBeth, map[string]string{"message": "  "}); a.status != 400 {
		t.Errorf("empty agent post: %d, want 400", a.status)
	}
	// The requester (the bridge) still posts as itself.
	if a := do(t, in, "POST", post, "", map[string]string{"message": "thanks"}); a.status != 200 {
		t.Errorf("requester post: %d %s", a.status, a.raw)
	}

	// Close: the real closing text and Closed Complete.
	closePath := "/api/now/connect/support/sessions/" + second + "/close"
	if a := do(t, in, "POST", closePath, asBeth, map[string]any{}); a.status != 200 || a.result().(map[string]any)["state"] != float64(3) {
		t.Fatalf("agent close: %d %s", a.status, a.raw)
	}
	ms := in.Messages(second)
	var texts []string
	for _, m := range ms {
		texts = append(texts, m.CreatedBy+": "+m.Text)
	}
	want := []string{
		snowtest.DefaultUser + ": second chat",
		"beth.anglin: " + snowtest.DefaultGreeting,
		"beth.anglin: Let me check",
		snowtest.DefaultUser + ": thanks",
		"system: Beth Anglin has closed the support session",
	}
	if strings.Join(texts, "\n") != strings.Join(want, "\n") {
		t.Errorf("messages:\n%s\nwant:\n%s", strings.Join(texts, "\n"), strings.Join(want, "\n"))
	}
	if a := do(t, in, "POST", post, asBeth, map[string]string{"message": "late"}); a.status != 403 {
		t.Errorf("post to a closed chat: %d, want 403", a.status)
	}
	if a := do(t, in, "POST", closePath, asBeth, nil); a.status != 403 {
		t.Errorf("second close: %d, want 403", a.status)
	}

	// agent_leave: the "has left" text.
	if a := do(t, in, "POST", "/api/now/connect/support/sessions/"+first+"/close", asFred, map[string]bool{"agent_leave": true}); a.status != 200 {
		t.Fatalf("agent leave: %d %s", a.status, a.raw)
	}
	fm := in.Messages(first)
	if last := fm[len(fm)-1]; last.Text != "Fred Luddy has left the support session" || !last.System() {
		t.Errorf("last message %+v, want Fred Luddy's leave", last)
	}
}
