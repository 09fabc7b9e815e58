package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/slack/slacktest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// slackAgent is the Slack user who answers in the e2e tests.
const slackAgent = "U0AGENT001"

// slackParentOf waits for the parent message posted for u's handoff.
func (w *world) slackParentOf(u teamstest.User, timeout time.Duration) slacktest.Message {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, p := range w.slack.Parents() {
			if strings.Contains(p.Text, u.Name) {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("no Slack parent message was posted for %s", u.Name)
	return slacktest.Message{}
}

// slackGot returns what the bridge posted into the thread.
func (w *world) slackGot(ts string) []string {
	var out []string
	for _, m := range w.slack.Thread(ts) {
		if m.BotID == slacktest.BotID {
			out = append(out, m.Text)
		}
	}
	return out
}

func (w *world) waitSlack(ts, want string, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, g := range w.slackGot(ts) {
			if strings.Contains(g, want) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("the thread never got %q; got %q", want, w.slackGot(ts))
}

// slackReply posts an agent reply and checks Slack's first delivery got 200.
func (w *world) slackReply(ts, text string) slacktest.Posted {
	w.t.Helper()
	p, err := w.slack.Reply(slackAgent, ts, text)
	if err != nil || p.Status != http.StatusOK {
		w.t.Fatalf("reply %q: %d %v", text, p.Status, err)
	}
	return p
}

func (w *world) slackClick(ts, action string) {
	w.t.Helper()
	code, err := w.slack.Click(slackAgent, ts, action)
	if err != nil || code != http.StatusOK {
		w.t.Fatalf("click %s: %d %v", action, code, err)
	}
}

// waitParentTaken waits until the parent message names the agent and no
// longer offers Take.
func (w *world) waitParentTaken(ts string, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	got := ""
	for time.Now().Before(deadline) {
		p, _ := w.slack.Parent(ts)
		if got = blocksText(p.Blocks); !strings.Contains(got, "handoff_take") && strings.Contains(got, "Taken by "+agentName) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("the parent message was not updated after the take:\n%s", got)
}

func blocksText(bs []map[string]any) string {
	b, _ := json.Marshal(bs)
	return string(b)
}

// slackEndings are the ways a Slack handoff ends in the lifecycle test.
func slackEndings() []ending {
	tx := bridge.DefaultTexts()
	return []ending{
		{name: "agent types #handback", reason: bridge.ReasonAgentClosed, line: tx.AgentClosed, act: func(w *world, u teamstest.User, ts string) {
			w.slackReply(ts, "#handback")
		}},
		{name: "agent presses Close", reason: bridge.ReasonAgentClosed, line: tx.AgentClosed, act: func(w *world, u teamstest.User, ts string) {
			w.slackClick(ts, "handoff_close")
		}},
		{name: "user ends", reason: bridge.ReasonUserEnded, line: tx.UserEnded, act: func(w *world, u teamstest.User, ts string) {
			w.say(u, "/end_chat")
		}},
		{name: "user restarts", reason: bridge.ReasonUserRestarted, line: tx.UserRestart, restart: true, act: func(w *world, u teamstest.User, ts string) {
			w.say(u, " /Restart ")
		}},
		// The app cannot post any more, so the thread cannot be told either:
		// the employee hears that the chat could not be located.
		{name: "app removed from the channel mid-chat", reason: bridge.ReasonRelayError, line: tx.LeaveFailed, act: func(w *world, u teamstest.User, ts string) {
			w.slack.FailThread(ts, "not_in_channel")
			w.say(u, "are you still there?")
		}},
	}
}

// runSlackConversation drives one employee through a handoff to Slack: the
// parent message, taking it (button or first reply), three messages each
// way, the ending, and the parent's outcome.
func runSlackConversation(w *world, u teamstest.User, e ending, takeByButton bool) {
	t := w.t
	const wait = 30 * time.Second
	w.say(u, "hello")
	w.waitUser(u, "IT helpdesk bot", wait)
	w.say(u, "how do I reset my password?")
	w.waitUser(u, "password", wait)
	w.say(u, "talk to live agent")
	w.waitUser(u, bridge.DefaultTexts().Connecting, wait)
	parent := w.slackParentOf(u, wait)
	ts := parent.TS
	shown := blocksText(parent.Blocks)
	for _, want := range []string{u.Name, "user_asked", "reset my password", "handoff_take", "handoff_close"} {
		if !strings.Contains(shown, want) {
			t.Errorf("%s: the parent message lacks %q:\n%s", u.Name, want, shown)
		}
	}
	var userSaid, agentSaid []string
	if takeByButton {
		w.slackClick(ts, "handoff_take")
	} else {
		am := "hi, this is " + agentName
		w.slackReply(ts, am)
		agentSaid = append(agentSaid, am)
	}
	w.waitUser(u, agentName+" joined the chat.", wait)
	w.waitParentTaken(ts, wait) // by the button or by the first reply alike
	for i := 1; i <= 3; i++ {
		um := fmt.Sprintf("%s question %d", u.Name, i)
		w.say(u, um)
		w.waitSlack(ts, um, wait)
		userSaid = append(userSaid, um)
		am := fmt.Sprintf("answer %d for %s", i, u.Name)
		p := w.slackReply(ts, am)
		if i == 2 {
			// Slack retries an event it thinks was not answered in time: the
			// retry must not deliver the message again.
			if code, err := w.slack.Redeliver(p.EventID, 1); err != nil || code != http.StatusOK {
				t.Errorf("%s: retried event answered %d %v", u.Name, code, err)
			}
		}
		w.waitUser(u, am, wait)
		agentSaid = append(agentSaid, am)
	}
	if s := w.session(u); s.State != bridge.StateLive {
		t.Errorf("%s: session %s after the agent took it, want live", u.Name, s.State)
	}
	e.act(w, u, ts)
	s := w.waitClosed(u, wait)
	if s.CloseReason != e.reason {
		t.Errorf("%s: closed with %s, want %s", u.Name, s.CloseReason, e.reason)
	}
	if want := bridge.AgentChatID(w.slack.Channel() + ":" + ts); s.AgentChatID != want {
		t.Errorf("%s: session chat %s, want %s", u.Name, s.AgentChatID, want)
	}
	w.waitUser(u, bridge.DefaultTexts().BotBack, wait)
	w.waitUser(u, e.line, wait) // a failed leave adds its line after the ending notices
	lines := w.userLines(u)
	if !strings.Contains(strings.Join(lines, "\n"), e.line) {
		t.Errorf("%s: no ending line %q in %q", u.Name, e.line, lines)
	}
	var seen []string
	joined := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "answer ") || strings.HasPrefix(l, "hi, this is") {
			seen = append(seen, l)
		}
		if strings.Contains(l, "joined the chat") {
			joined++
		}
	}
	if !slices.Equal(seen, agentSaid) {
		t.Errorf("%s: agent messages seen %q, want %q", u.Name, seen, agentSaid)
	}
	if joined != 1 {
		t.Errorf("%s: saw the joined line %d times, want once", u.Name, joined)
	}
	var relayed []string
	for _, g := range w.slackGot(ts) {
		if strings.Contains(g, "question") {
			relayed = append(relayed, g)
			if !strings.HasPrefix(g, "*"+u.Name+":* ") {
				t.Errorf("%s: thread post %q lacks the employee's name", u.Name, g)
			}
		}
	}
	if len(relayed) != len(userSaid) {
		t.Errorf("%s: thread got %q, want one post per %q", u.Name, relayed, userSaid)
	}
	if e.reason != bridge.ReasonRelayError {
		// The parent shows the outcome and no more buttons; the thread is told.
		p, _ := w.slack.Parent(ts)
		if got := blocksText(p.Blocks); strings.Contains(got, "handoff_take") || strings.Contains(got, "handoff_close") || !strings.Contains(got, "Ended") {
			t.Errorf("%s: parent after the end still offers buttons or lacks the outcome:\n%s", u.Name, got)
		}
		got := strings.Join(w.slackGot(ts), "\n")
		if e.reason == bridge.ReasonUserEnded || e.reason == bridge.ReasonUserRestarted {
			if !strings.Contains(got, "The employee ended the chat") {
				t.Errorf("%s: the thread was not told the employee left:\n%s", u.Name, got)
			}
		}
	}
	w.checkHandedBack(u, e)
}

// checkHandedBack checks that Rasa got the handback (and never the human
// stretch) and answers the employee again.
func (w *world) checkHandedBack(u teamstest.User, e ending) {
	t := w.t
	conv := w.ch().ConversationID(u)
	var names []string
	var outcome any
	for _, ev := range w.rasa.Events(conv) {
		names = append(names, ev.Name())
		if ev.Name() == "user" {
			if txt, _ := ev["text"].(string); strings.Contains(txt, "question") {
				t.Errorf("%s: Rasa received %q, which was meant for the agent", u.Name, txt)
			}
		}
		if ev.Name() == "slot" && ev["name"] == "handoff_outcome" {
			outcome = ev["value"]
		}
	}
	if !slices.Contains(names, "resume") || e.restart != slices.Contains(names, "restart") {
		t.Errorf("%s: Rasa events %v (restart wanted: %v)", u.Name, names, e.restart)
	}
	if !e.restart && outcome != string(e.reason) {
		t.Errorf("%s: handoff_outcome slot = %v, want %s", u.Name, outcome, e.reason)
	}
	n := len(w.userLines(u))
	w.say(u, "hello")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && len(w.userLines(u)) == n {
		time.Sleep(20 * time.Millisecond)
	}
	if l := w.userLines(u); len(l) == n || !strings.Contains(l[len(l)-1], "IT helpdesk bot") {
		t.Errorf("%s: the bot did not answer after the handback: %q", u.Name, l[n:])
	}
}

// TestLifecycleEndToEndSlack runs five employees at once against the Slack
// desk, one per ending; some agents take the handoff with the button, others
// by replying first.
func TestLifecycleEndToEndSlack(t *testing.T) {
	w := newWorld(t, worldOpts{desk: "slack"})
	w.slack.AddUser(slackAgent, agentName)
	var wg sync.WaitGroup
	for i, e := range slackEndings() {
		u := teamstest.NewUser(fmt.Sprintf("Employee %d", i+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			runSlackConversation(w, u, e, i%2 == 0)
		}()
	}
	wg.Wait()
	if n := len(w.slack.Parents()); n != 5 {
		t.Errorf("%d parent messages, want one per handoff (5)", n)
	}
	checkReviewExport(t, w)
}

// TestSlackForgedSignatures sends forged, stale, future, unsigned and
// tampered Slack requests to the real service, each naming the thread of a
// live handoff: an agent reply and a Close press. Each gets 401, and nothing
// is stored: the employee sees none of the texts, the session's stored
// messages and outbox are unchanged, and the forged Close did not end the
// chat. The same reply signed with the app's secret is then delivered, so the
// refused requests were aimed where they would have landed.
func TestSlackForgedSignatures(t *testing.T) {
	const wait = 30 * time.Second
	w := newWorld(t, worldOpts{desk: "slack"})
	w.slack.AddUser(slackAgent, agentName)
	u := teamstest.NewUser("Forged Signature Employee")
	w.say(u, "talk to live agent")
	w.waitUser(u, bridge.DefaultTexts().Connecting, wait)
	thread := w.slackParentOf(u, wait).TS
	w.slackClick(thread, "handoff_take")
	w.waitUser(u, agentName+" joined the chat.", wait)
	ctx := context.Background()
	sess := w.session(u)
	stored := func() (msgs []bridge.Message, outbox map[string]int) {
		t.Helper()
		err := w.current().store.Update(ctx, func(tx bridge.Tx) (err error) {
			if msgs, err = tx.Messages(ctx, sess.ID, 0); err != nil {
				return err
			}
			outbox, err = tx.OutboxStats(ctx)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return msgs, outbox
	}
	// Wait until the take's own deliveries are done, so the counts below
	// can only move by what the requests store.
	deadline := time.Now().Add(wait)
	for _, ob := stored(); ob["pending"] != 0 && time.Now().Before(deadline); _, ob = stored() {
		time.Sleep(20 * time.Millisecond)
	}
	msgsBefore, outboxBefore := stored()

	now := time.Now().Unix()
	seq := 0
	reply := func(text string) []byte {
		seq++
		ts := fmt.Sprintf("%d.%06d", now, 900000+seq)
		return []byte(`{"type":"event_callback","event_id":"Ev0FORGED` + strconv.Itoa(seq) + `","event_time":` + strconv.FormatInt(now, 10) +
			`,"event":{"type":"message","channel":"` + w.slack.Channel() + `","user":"` + slackAgent + `","text":"` + text +
			`","ts":"` + ts + `","thread_ts":"` + thread + `","event_ts":"` + ts + `","channel_type":"channel"}}`)
	}
	closePress := []byte(url.Values{"payload": {`{"type":"block_actions","user":{"id":"` + slackAgent + `"},"container":{"type":"message","message_ts":"` +
		thread + `","channel_id":"` + w.slack.Channel() + `"},"channel":{"id":"` + w.slack.Channel() + `"},"actions":[{"action_id":"handoff_close","type":"button","action_ts":"` +
		strconv.FormatInt(now, 10) + `.000001"}]}`}}.Encode())
	secret := w.slack.SigningSecret()
	post := func(path, ctype string, body []byte, ts, sig string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, w.base+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		if ts != "" {
			req.Header.Set("X-Slack-Request-Timestamp", ts)
		}
		if sig != "" {
			req.Header.Set("X-Slack-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const events, interactive, form = "/webhooks/slack", "/webhooks/slack/interactive", "application/x-www-form-urlencoded"
	stamp := func(at int64) string { return strconv.FormatInt(at, 10) }
	tampered := reply("forged tampered")
	tamperedSig := slacktest.Sign(secret, now, tampered)
	tampered = bytes.Replace(tampered, []byte("forged tampered"), []byte("forged tamperex"), 1)
	for _, c := range []struct {
		name, path, ctype string
		body              []byte
		ts, sig           string
	}{
		{"wrong secret", events, "application/json", reply("forged wrong secret"), stamp(now), ""},
		{"stale", events, "application/json", reply("forged stale"), stamp(now - 6*60), ""},
		{"from the future", events, "application/json", reply("forged future"), stamp(now + 6*60), ""},
		{"missing", events, "application/json", reply("forged unsigned"), "", ""},
		{"body changed after signing", events, "application/json", tampered, stamp(now), tamperedSig},
		{"Close, wrong secret", interactive, form, closePress, stamp(now), slacktest.Sign("not-the-secret", now, closePress)},
		{"Close, stale", interactive, form, closePress, stamp(now - 6*60), ""},
	} {
		sig := c.sig
		if sig == "" && c.ts != "" {
			at, _ := strconv.ParseInt(c.ts, 10, 64)
			key := secret
			if c.name == "wrong secret" {
				key = "not-the-secret"
			}
			sig = slacktest.Sign(key, at, c.body)
		}
		if code := post(c.path, c.ctype, c.body, c.ts, sig); code != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", c.name, code)
		}
	}
	msgsAfter, outboxAfter := stored()
	if len(msgsAfter) != len(msgsBefore) || !maps.Equal(outboxAfter, outboxBefore) {
		t.Errorf("refused requests stored something: %d → %d messages, outbox %v → %v", len(msgsBefore), len(msgsAfter), outboxBefore, outboxAfter)
	}
	for _, m := range msgsAfter {
		if strings.Contains(m.Text, "forged") {
			t.Errorf("a refused request's text was stored: %q", m.Text)
		}
	}

	// The control: the same kind of request, signed with the app's secret,
	// is delivered to the employee; the forged Close left the chat live.
	control := reply("genuine control")
	if code := post(events, "application/json", control, stamp(now), slacktest.Sign(secret, now, control)); code != http.StatusOK {
		t.Fatalf("the correctly signed reply: status %d, want 200", code)
	}
	w.waitUser(u, "genuine control", wait)
	if s := w.session(u); s.State != bridge.StateLive {
		t.Errorf("session %s/%s after a forged Close, want live", s.State, s.CloseReason)
	}
	for _, l := range w.userLines(u) {
		if strings.Contains(l, "forged") {
			t.Errorf("the employee saw a refused request's text: %q", l)
		}
	}
}

// waitSlackSocket waits until the bridge holds one Socket Mode connection
// and has asked for at least opens URLs.
func (w *world) waitSlackSocket(opens int) {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st := w.slack.SocketStats(); st.Open == 1 && st.Opens >= opens {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("no Socket Mode connection: %+v", w.slack.SocketStats())
}

// TestSlackSocketModeEndToEnd runs a handoff with HANDOFF_SLACK_MODE=socket:
// no Request URL, every reply and button press arrives over the WebSocket
// through the same receive path. A first reply takes the chat and updates
// the parent; a re-sent envelope is delivered once; after Slack's
// disconnect and after a dropped connection the bridge reconnects and
// replies flow again; #handback ends the chat and the parent shows it.
func TestSlackSocketModeEndToEnd(t *testing.T) {
	const wait = 30 * time.Second
	w := newWorld(t, worldOpts{desk: "slack", extra: map[string]string{
		"HANDOFF_SLACK_MODE": "socket", "HANDOFF_SLACK_APP_TOKEN": slacktest.DefaultAppToken, "HANDOFF_SLACK_SIGNING_SECRET": ""}})
	w.slack.EnableSocketMode(true)
	w.slack.AddUser(slackAgent, agentName)
	w.waitSlackSocket(1)

	resp, err := http.Post(w.base+"/webhooks/slack", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /webhooks/slack in socket mode: %d, want it not served", resp.StatusCode)
	}

	u := teamstest.NewUser("Socket Mode Employee")
	w.say(u, "talk to live agent")
	w.waitUser(u, bridge.DefaultTexts().Connecting, wait)
	ts := w.slackParentOf(u, wait).TS
	var said []string
	p := w.slackReply(ts, "hi, this is "+agentName)
	said = append(said, "hi, this is "+agentName)
	w.waitUser(u, agentName+" joined the chat.", wait)
	w.waitParentTaken(ts, wait)
	if code, err := w.slack.Redeliver(p.EventID, 1); err != nil || code != http.StatusOK {
		t.Fatalf("re-sent envelope: %d %v", code, err)
	}
	w.say(u, "my VPN drops")
	w.waitSlack(ts, "my VPN drops", wait)

	w.slack.Disconnect("refresh_requested")
	w.waitSlackSocket(2)
	said = append(said, "answer after the refresh")
	w.slackReply(ts, said[len(said)-1])
	w.slack.DropConnections()
	w.waitSlackSocket(3)
	said = append(said, "answer after the drop")
	w.slackReply(ts, said[len(said)-1])
	w.waitUser(u, said[len(said)-1], wait)

	w.slackReply(ts, "#handback")
	if s := w.waitClosed(u, wait); s.CloseReason != bridge.ReasonAgentClosed {
		t.Errorf("closed with %s, want agent_closed", s.CloseReason)
	}
	w.waitUser(u, bridge.DefaultTexts().BotBack, wait)
	var seen []string
	for _, l := range w.userLines(u) {
		if strings.HasPrefix(l, "answer ") || strings.HasPrefix(l, "hi, this is") || strings.Contains(l, "\nanswer ") || strings.Contains(l, "\nhi, this is") {
			seen = append(seen, l)
		}
	}
	if len(seen) != len(said) {
		t.Errorf("the employee saw %q, want each of %q once", seen, said)
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		pm, _ := w.slack.Parent(ts)
		if strings.Contains(blocksText(pm.Blocks), "Ended") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pm, _ := w.slack.Parent(ts); !strings.Contains(blocksText(pm.Blocks), "Ended") || strings.Contains(blocksText(pm.Blocks), "handoff_close") {
		t.Errorf("the parent does not show the outcome: %s", blocksText(pm.Blocks))
	}
	// The events of the bridge's own posts may still be in flight. An
	// envelope in flight when a connection was cut is lost with it, and
	// Slack sends its event again in a new envelope: each event must end
	// acknowledged, each envelope be acknowledged or given up on, none
	// acknowledged twice, and at most one lost per connection cut (two).
	settled := func() bool {
		st := w.slack.SocketStats()
		if st.Acked+st.Unacked != st.Sent {
			return false
		}
		acked := map[string]bool{}
		for _, d := range w.slack.Deliveries() {
			acked[d.EventID] = acked[d.EventID] || d.Status == http.StatusOK
		}
		for _, ok := range acked {
			if !ok {
				return false
			}
		}
		return true
	}
	deadline = time.Now().Add(wait)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := w.slack.SocketStats(); !settled() || st.UnknownAcks != 0 || st.Unacked > 2 {
		t.Errorf("Socket Mode envelopes %+v, deliveries %+v: every event must end acknowledged once", st, w.slack.Deliveries())
	}
}

// TestSlackFilesEndToEnd: a file an agent shares in the thread reaches the
// employee in Teams as a link card after the comment; a file the employee
// sends from Teams reaches the thread as a Slack link (label "name (type)"),
// posted as the bot under the employee's name; one Teams gives no link for
// gets the employee a notice and nothing for the agent.
func TestSlackFilesEndToEnd(t *testing.T) {
	const wait = 30 * time.Second
	w := newWorld(t, worldOpts{desk: "slack"})
	w.slack.AddUser(slackAgent, agentName)
	u := teamstest.NewUser("Slack Files Employee")
	conv := w.ch().ConversationID(u)
	w.say(u, "talk to live agent")
	w.waitUser(u, bridge.DefaultTexts().Connecting, wait)
	ts := w.slackParentOf(u, wait).TS
	w.slackClick(ts, "handoff_take")
	w.waitUser(u, agentName+" joined the chat.", wait)

	const guide = "https://handoff.slack.com/files/U0AGENT001/F0GUIDE0001/vpn-guide.pdf"
	if p, err := w.slack.ReplyFile(slackAgent, ts, "Here is the VPN guide", "vpn-guide.pdf", guide); err != nil || p.Status != http.StatusOK {
		t.Fatalf("file share: %+v %v", p, err)
	}
	w.waitUser(u, "Here is the VPN guide", wait)
	if card := waitLinkCard(t, w.conn, conv, "vpn-guide.pdf", wait); !strings.Contains(card, "[vpn-guide.pdf]("+guide+")") {
		t.Errorf("link card %s does not link the file's permalink", card)
	}

	a := employeeFiles(w.ch().Message(u, "my error screen"))
	if code, err := w.ch().Post(context.Background(), a); err != nil || code != http.StatusOK {
		t.Fatalf("post files: %d %v", code, err)
	}
	w.waitSlack(ts, "my error screen", wait)
	w.waitUser(u, "Your file pasted.png could not be passed on to the agent.", wait)
	want := "*" + u.Name + ":* my error screen\n<https://contoso.sharepoint.com/personal/files/vpn-log.txt|vpn-log.txt (txt)>"
	var got []string
	for _, g := range w.slackGot(ts) {
		if strings.Contains(g, "my error screen") {
			got = append(got, g)
		}
		if strings.Contains(g, "data:image") || strings.Contains(g, "pasted.png") {
			t.Errorf("the thread got the pasted data: %q", g)
		}
	}
	if len(got) != 1 || got[0] != want {
		t.Errorf("thread posts %q, want exactly %q", got, want)
	}
}

// TestSlackManifestMatchesService reads slack/manifest.yml, the file a Slack
// admin pastes, and holds it to the running service: its event Request URL
// answers Slack's signed url_verification challenge, its interactivity URL
// takes a signed button payload, and it asks for the scopes and events the
// Slack desk uses (chat:write, channels:history, message.channels).
func TestSlackManifestMatchesService(t *testing.T) {
	m, err := slacktest.ReadManifest(filepath.Join("..", "..", "slack", "manifest.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"chat:write", "channels:history"} {
		if !slices.Contains(m.OAuth.Scopes.Bot, want) {
			t.Errorf("manifest.yml lacks the bot scope %s", want)
		}
	}
	if !slices.Contains(m.Settings.Events.Bot, "message.channels") {
		t.Error("manifest.yml does not subscribe to message.channels")
	}
	if !m.Settings.Interactivity.Enabled || m.Settings.SocketMode == nil || *m.Settings.SocketMode {
		t.Errorf("manifest.yml: interactivity %v, socket mode %v; want interactivity on and the Events API", m.Settings.Interactivity.Enabled, m.Settings.SocketMode)
	}
	events, err := url.Parse(m.Settings.Events.URL)
	if err != nil || events.Scheme != "https" {
		t.Fatalf("event request_url %q: %v", m.Settings.Events.URL, err)
	}
	interactive, err := url.Parse(m.Settings.Interactivity.URL)
	if err != nil || interactive.Scheme != "https" || interactive.Host != events.Host {
		t.Fatalf("interactivity request_url %q: %v", m.Settings.Interactivity.URL, err)
	}

	w := newWorld(t, worldOpts{desk: "slack"})
	signedPost := func(path, ctype string, body []byte) (int, string) {
		t.Helper()
		now := time.Now().Unix()
		req, _ := http.NewRequest(http.MethodPost, w.base+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now, 10))
		req.Header.Set("X-Slack-Signature", slacktest.Sign(w.slack.SigningSecret(), now, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	challenge, err := os.ReadFile(filepath.Join("..", "..", "slack", "testdata", "event_url_verification.json"))
	if err != nil {
		t.Fatal(err)
	}
	code, body := signedPost(events.Path, "application/json", challenge)
	if code != http.StatusOK || !strings.Contains(body, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P") {
		t.Errorf("url_verification at the manifest's %s: %d %s, want 200 with the challenge", events.Path, code, body)
	}
	press := []byte(url.Values{"payload": {`{"type":"block_actions","user":{"id":"U0AGENT001"},"container":{"type":"message","message_ts":"1700000000.000100","channel_id":"` +
		w.slack.Channel() + `"},"actions":[{"action_id":"handoff_take","type":"button","action_ts":"1700000001.000001"}]}`}}.Encode())
	if code, body := signedPost(interactive.Path, "application/x-www-form-urlencoded", press); code != http.StatusOK {
		t.Errorf("button payload at the manifest's %s: %d %s, want 200", interactive.Path, code, body)
	}
}

// TestSlackRefusedTokenStopsStart: the bridge checks the bot token with
// auth.test at start; Slack's invalid_auth stops the start with an error
// that names HANDOFF_SLACK_BOT_TOKEN (the fake refuses any other token as
// Slack does).
func TestSlackRefusedTokenStopsStart(t *testing.T) {
	w := newWorld(t, worldOpts{desk: "slack"})
	env := maps.Clone(w.env)
	env["HANDOFF_SLACK_BOT_TOKEN"] = "xoxb-revoked-token"
	env["HANDOFF_DATABASE_URL"] = "sqlite:" + filepath.Join(t.TempDir(), "refused.db")
	cfg, err := LoadConfig(mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	calls := w.slack.Calls()["auth.test"]
	a, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	if err == nil {
		_ = a.store.Close()
		t.Fatal("the service started with a token Slack refuses")
	}
	if !strings.Contains(err.Error(), "HANDOFF_SLACK_BOT_TOKEN") || !strings.Contains(err.Error(), "invalid_auth") {
		t.Errorf("start error %q, want it to name HANDOFF_SLACK_BOT_TOKEN and Slack's invalid_auth", err)
	}
	if n := w.slack.Calls()["auth.test"] - calls; n != 1 {
		t.Errorf("auth.test called %d times, want once", n)
	}
}

// TestSlackAgentLabels: the agent's private labels work in a Slack thread as
// in any desk chat: "#topic …" typed plainly, and "#needed-human" as Slack
// sends it when a channel of that name exists (a channel link,
// <#C…|needed-human>), land on the review record, are acknowledged in the
// thread, and never reach the employee.
func TestSlackAgentLabels(t *testing.T) {
	const wait = 30 * time.Second
	w := newWorld(t, worldOpts{desk: "slack"})
	w.slack.AddUser(slackAgent, agentName)
	u := teamstest.NewUser("Slack Label Employee")
	w.say(u, "talk to live agent")
	w.waitUser(u, bridge.DefaultTexts().Connecting, wait)
	ts := w.slackParentOf(u, wait).TS
	w.slackReply(ts, "Hi, let me renew your VPN profile.")
	w.waitUser(u, "let me renew your VPN profile", wait)
	w.slackReply(ts, "#topic VPN profile renewal")
	w.slackReply(ts, "<#C0NEEDHUM1|needed-human>")
	w.slackReply(ts, "Done, please reconnect.")
	w.waitUser(u, "Done, please reconnect.", wait)
	w.waitSlack(ts, `Recorded for the bot team: topic "VPN profile renewal".`, wait)
	w.waitSlack(ts, "Recorded for the bot team: it needed a human.", wait)
	for _, l := range w.userLines(u) {
		if strings.Contains(l, "topic") || strings.Contains(l, "needed-human") || strings.Contains(l, "Recorded for the bot team") {
			t.Errorf("the employee saw a label or its acknowledgment: %q", l)
		}
	}
	w.slackReply(ts, "#handback")
	s := w.waitClosed(u, wait)
	rec := w.review(s.ID)
	if v := rec.Verdict; v == nil || v.Topic != "VPN profile renewal" || !v.NeededHuman || v.Agent != agentName {
		t.Fatalf("verdict on the record = %+v, want the topic, needed-human and %s", v, agentName)
	}
	for _, tu := range rec.HumanTurns {
		if strings.Contains(tu.Text, "topic") || strings.Contains(tu.Text, "needed-human") {
			t.Errorf("a label is in the human turns: %q", tu.Text)
		}
	}
}
