package slack

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/slack/slacktest"
)

// socketWorld is a fake Slack in Socket Mode, the desk client and a running
// Socket Mode loop storing into a recording sink.
type socketWorld struct {
	t      *testing.T
	fake   *slacktest.Server
	sink   *recordingSink
	socket *Socket
	parent string // ts of a handoff's parent message
	stop   func()
}

func newSocketWorld(t *testing.T) *socketWorld {
	t.Helper()
	fake := slacktest.New(slacktest.Options{RetryDelays: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}})
	t.Cleanup(fake.Close)
	fake.EnableSocketMode(true)
	fake.AddUser("U0AGENT001", "Beth A.")
	desk, err := New(Config{Token: fake.Token(), Channel: fake.Channel(), APIURL: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{}
	log := slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := NewHandler(HandlerConfig{SigningSecret: fake.SigningSecret(), OrderWindow: -1, Logger: log}, desk, sink, sink)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSocket(SocketConfig{AppToken: fake.Token()}, h); err == nil {
		t.Error("a bot token was accepted as the app-level token")
	}
	sock, err := NewSocket(SocketConfig{AppToken: fake.AppToken(), MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PingInterval: time.Second}, h)
	if err != nil {
		t.Fatal(err)
	}
	chat, err := desk.Open(context.Background(), bridge.Handoff{Session: "s1", UserName: "Megan Bowen", Reason: "user_asked"})
	if err != nil {
		t.Fatal(err)
	}
	_, ts, _ := SplitChatID(chat.ID)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sock.Run(ctx) }()
	w := &socketWorld{t: t, fake: fake, sink: sink, socket: sock, parent: ts}
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v on cancel, want nil", err)
				}
			case <-time.After(5 * time.Second):
				buf := make([]byte, 1<<20)
				t.Errorf("Run did not stop within 5 s of the cancel:\n%s", buf[:runtime.Stack(buf, true)])
			}
		})
	}
	t.Cleanup(w.stop)
	w.waitOpen(1)
	return w
}

// waitOpen waits until the fake has n connections open and the loop has
// handed out at least opens URLs in total.
func (w *socketWorld) waitOpen(opens int) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st := w.fake.SocketStats(); st.Open == 1 && st.Opens >= opens && w.socket.Stats().Hellos >= opens {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.t.Fatalf("no Socket Mode connection: fake %+v, loop %+v", w.fake.SocketStats(), w.socket.Stats())
}

// messages returns the agent messages stored (not the joined line).
func (w *socketWorld) messages() []string {
	_, evs := w.sink.snapshot()
	var out []string
	for _, ev := range evs {
		if ev.Kind == bridge.AgentMessage && !ev.System {
			out = append(out, ev.Text)
		}
	}
	return out
}

func (w *socketWorld) reply(text string) slacktest.Posted {
	w.t.Helper()
	p, err := w.fake.Reply("U0AGENT001", w.parent, text)
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

// An agent reply arrives over the socket, is stored once and acknowledged;
// the same event sent again (a Slack retry) is acknowledged and stored
// nothing new. A button press arrives as an interactive envelope.
func TestSocketModeDeliversOnce(t *testing.T) {
	w := newSocketWorld(t)
	p := w.reply("have you tried turning it off and on?")
	if p.Status != http.StatusOK {
		t.Fatalf("the envelope was not acknowledged: %+v", p)
	}
	if code, err := w.fake.Redeliver(p.EventID, 1); err != nil || code != http.StatusOK {
		t.Fatalf("the re-sent envelope: %d %v", code, err)
	}
	if got := w.messages(); len(got) != 1 || got[0] != "have you tried turning it off and on?" {
		t.Fatalf("stored %q, want the reply once", got)
	}
	if code, err := w.fake.Click("U0AGENT001", w.parent, actionClose); err != nil || code != http.StatusOK {
		t.Fatalf("Close over the socket: %d %v", code, err)
	}
	_, evs := w.sink.snapshot()
	if last := evs[len(evs)-1]; last.Kind != bridge.AgentEnded || last.EndReason != bridge.ReasonAgentClosed {
		t.Fatalf("Close stored %+v", last)
	}
	// The events of the bridge's own posts travel too, in the background:
	// wait for those in flight.
	deadline := time.Now().Add(5 * time.Second)
	for st := w.fake.SocketStats(); st.Acked != st.Sent && time.Now().Before(deadline); st = w.fake.SocketStats() {
		time.Sleep(10 * time.Millisecond)
	}
	if st := w.fake.SocketStats(); st.Sent < 3 || st.Acked != st.Sent || st.UnknownAcks != 0 {
		t.Errorf("fake saw %+v, want every envelope acknowledged once", st)
	}
}

// An envelope whose payload could not be stored is not acknowledged; Slack
// sends it again and the message is stored once.
func TestSocketModeUnacknowledgedIsSentAgain(t *testing.T) {
	w := newSocketWorld(t)
	w.sink.mu.Lock()
	w.sink.fail = 1
	w.sink.mu.Unlock()
	p := w.reply("stored on the second try")
	if p.Status == http.StatusOK {
		t.Fatalf("the envelope was acknowledged although nothing was stored")
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && len(w.messages()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if got := w.messages(); len(got) != 1 {
		t.Fatalf("stored %q, want the message once after Slack sent it again", got)
	}
	var attempts []slacktest.Delivery
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		attempts = nil // the fake records an attempt once it was acknowledged
		for _, d := range w.fake.Deliveries() {
			if d.EventID == p.EventID {
				attempts = append(attempts, d)
			}
		}
		if len(attempts) >= 2 {
			break
		}
	}
	if len(attempts) != 2 || attempts[0].Status != 0 || attempts[1].Status != http.StatusOK || attempts[1].Attempt != 1 {
		t.Errorf("deliveries %+v, want one unacknowledged then one acknowledged retry", attempts)
	}
}

// Slack's disconnect message and a dropped connection both lead to a new
// connection (a new URL each time), and replies flow again.
func TestSocketModeReconnects(t *testing.T) {
	w := newSocketWorld(t)
	w.fake.Disconnect("refresh_requested")
	w.waitOpen(2)
	if p := w.reply("after the refresh"); p.Status != http.StatusOK {
		t.Fatalf("reply after the refresh: %+v", p)
	}
	w.fake.DropConnections()
	w.waitOpen(3)
	if p := w.reply("after the drop"); p.Status != http.StatusOK {
		t.Fatalf("reply after the drop: %+v", p)
	}
	if got := w.messages(); len(got) != 2 || got[0] != "after the refresh" || got[1] != "after the drop" {
		t.Fatalf("stored %q", got)
	}
	w.stop()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && w.fake.SocketStats().Open != 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if n := w.fake.SocketStats().Open; n != 0 {
		t.Errorf("%d connections still open after Run stopped", n)
	}
}

type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) { l.t.Log(string(p)); return len(p), nil }

// The documented envelopes store what the same payloads store over HTTP.
func TestSocketReceivesDocumentedEnvelopes(t *testing.T) {
	now := time.Unix(1712345690, 0)
	for _, c := range []struct {
		file string
		want bridge.AgentEventKind
	}{
		{"socket_events_api.json", bridge.AgentMessage},
		{"socket_interactive.json", bridge.AgentJoined},
		{"socket_hello.json", ""},
		{"socket_disconnect.json", ""},
	} {
		h, sink := testHandler(t, now, -1)
		s, err := NewSocket(SocketConfig{AppToken: "xapp-test"}, h)
		if err != nil {
			t.Fatal(err)
		}
		var m socketMessage
		if err := json.Unmarshal(example(t, c.file), &m); err != nil {
			t.Fatal(err)
		}
		if _, ack := s.receive(context.Background(), m); !ack {
			t.Errorf("%s: not acknowledged", c.file)
		}
		_, evs := sink.snapshot()
		found := false
		for _, ev := range evs {
			found = found || ev.Kind == c.want
		}
		if (c.want != "") != found || (c.want == "" && len(evs) > 0) {
			t.Errorf("%s: stored %+v, want a %q event", c.file, evs, c.want)
		}
	}
}
