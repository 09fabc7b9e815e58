package servicenow_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

func TestCheckQueue(t *testing.T) {
	tests := []struct {
		name    string
		opts    snowtest.Options
		queue   string
		wantErr []string // substrings; nil: success
	}{
		{name: "queue present", queue: snowtest.DefaultQueue},
		{name: "queue missing", queue: "0123456789abcdef0123456789abcdef",
			wantErr: []string{"servicenow: check queue:", "queue 0123456789abcdef0123456789abcdef not found", `"IT Support" (` + snowtest.DefaultQueue + ")"}},
		{name: "connect disabled", queue: snowtest.DefaultQueue, opts: snowtest.Options{ConnectDisabled: true},
			wantErr: []string{"Connect Support not available on http://", "deprecated since Utah; use the Virtual Agent desk", "HTTP 400"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := newFake(t, tc.opts)
			c := newClient(t, in, func(cfg *servicenow.Config) { cfg.Queue = tc.queue })
			err := c.CheckQueue(context.Background())
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckQueue: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckQueue: got nil error")
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if !bridge.IsPermanent(err) {
				t.Errorf("error %v is not permanent", err)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	in := newFake(t, snowtest.Options{})
	c := newClient(t, in, nil)
	var turns []bridge.Turn
	for i := range 30 {
		turns = append(turns, bridge.Turn{Role: "user", Author: "Abel Tuter", Text: strings.Repeat("x", 20) + " turn " + string(rune('A'+i%26)), At: t0})
	}
	turns = append(turns, bridge.Turn{Role: "bot", Text: "I could not help with the VPN; connecting you", At: t0})
	oc, err := c.Open(context.Background(), bridge.Handoff{
		Session: "s-1", UserName: "Abel Tuter", UserEmail: "abel.tuter@example.com", UserID: "29:abc",
		UserAADID: "aad-1", TenantID: "tenant-1", Reason: "user_asked", Transcript: turns,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	chat := oc.ID
	ch, ok := in.Chat(string(chat))
	if !ok {
		t.Fatalf("chat %s not on the instance", chat)
	}
	if ch.State != snowtest.Waiting || ch.Queue != snowtest.DefaultQueue || ch.OpenedBy != snowtest.DefaultUser {
		t.Errorf("chat = %+v, want waiting in the default queue opened by the bridge", ch)
	}
	msgs := in.Messages(string(chat))
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want the first message only", len(msgs))
	}
	first := msgs[0].Text
	for _, want := range []string{"[handoff s-1]", "Abel Tuter <abel.tuter@example.com>", "Tenant: tenant-1", "Reason for handoff: user_asked",
		"Recent conversation (last 12 of 31 turns)", "… (19 earlier turns omitted)", "bot: I could not help with the VPN"} {
		if !strings.Contains(first, want) {
			t.Errorf("first message lacks %q:\n%s", want, first)
		}
	}
	if len(first) > 4000 {
		t.Errorf("first message is %d bytes, want ≤ 4000", len(first))
	}
}

func TestOpenRefused(t *testing.T) {
	in := newFake(t, snowtest.Options{Queues: []snowtest.Queue{
		{SysID: snowtest.DefaultQueue, Name: "IT Support"},
		{SysID: "closedqueue", Name: "After hours", NotAvailable: true},
	}})
	c := newClient(t, in, nil)
	for _, queue := range []string{"nosuchqueue", "closedqueue"} {
		_, err := c.Open(context.Background(), bridge.Handoff{Session: "s-1", Queue: queue, UserName: "Abel"})
		var se *bridge.StatusError
		if !errors.As(err, &se) || se.Status != http.StatusForbidden {
			t.Fatalf("queue %s: got %v, want a 403 StatusError", queue, err)
		}
		if se.Message != "The support queue is not available. Please try again later." {
			t.Errorf("queue %s: message %q, want the instance's string result", queue, se.Message)
		}
		if !bridge.IsPermanent(err) {
			t.Errorf("queue %s: %v is not permanent", queue, err)
		}
	}
}

// TestOpenRetryNoDuplicate loses the answer to a chat creation that took
// effect: the retry finds the chat by its marker instead of opening another.
func TestOpenRetryNoDuplicate(t *testing.T) {
	for _, f := range []snowtest.Fault{
		{Method: http.MethodPost, Path: "/api/now/connect/support/queues/", AfterHandler: true, Drop: true},
		{Method: http.MethodPost, Path: "/api/now/connect/support/queues/", AfterHandler: true, Status: 502},
		{Method: http.MethodPost, Path: "/api/now/connect/support/queues/", Status: 503, Times: 2},
	} {
		in := newFake(t, snowtest.Options{})
		c := newClient(t, in, nil)
		other := openChat(t, c, "other-session")
		in.InjectFault(f)
		chat := openChat(t, c, "s-1")
		chats := in.Chats()
		if len(chats) != 2 || chat == other || chats[1].Group != string(chat) {
			t.Errorf("fault %+v: chats = %+v, Open returned %s: want exactly one new chat", f, chats, chat)
		}
	}
}

func TestSend(t *testing.T) {
	in := newFake(t, snowtest.Options{})
	c := newClient(t, in, nil)
	ctx := context.Background()
	chat := openChat(t, c, "s-1")
	if err := c.Send(ctx, dc(chat), bridge.DeskMessage{Key: "1", Text: "my VPN is down"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := in.Messages(string(chat))
	if last := msgs[len(msgs)-1]; last.Text != "my VPN is down" || last.CreatedBy != snowtest.DefaultUser || last.SenderName != snowtest.DefaultUserName {
		t.Errorf("last message = %+v", last)
	}

	if err := c.Send(ctx, dc("0123456789abcdef0123456789abcdef"), bridge.DeskMessage{Text: "hi"}); !errors.Is(err, bridge.ErrChatClosed) {
		t.Errorf("Send to unknown chat: %v, want ErrChatClosed", err)
	}
	if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	if err := in.CloseChat(string(chat)); err != nil {
		t.Fatal(err)
	}
	err := c.Send(ctx, dc(chat), bridge.DeskMessage{Text: "hello?"})
	var se *bridge.StatusError
	if !errors.Is(err, bridge.ErrChatClosed) || !errors.As(err, &se) || se.Message != "Conversation is closed" {
		t.Errorf("Send to closed chat: %v, want ErrChatClosed carrying the instance's message", err)
	}
}

// TestSendNoDuplicate: retries of a post never duplicate it, whether the
// answer was lost after the post took effect or the post failed first.
func TestSendNoDuplicate(t *testing.T) {
	post := func(f *snowtest.Fault) snowtest.Fault {
		f.Method, f.Path = http.MethodPost, "/api/now/connect/conversations/"
		return *f
	}
	tests := []struct {
		name  string
		fault *snowtest.Fault
		msg   bridge.DeskMessage
		pre   bool // the message was already posted by an earlier attempt
		posts int  // POST requests expected
	}{
		{name: "answer dropped after post", fault: &snowtest.Fault{AfterHandler: true, Drop: true}, posts: 1},
		{name: "502 after post", fault: &snowtest.Fault{AfterHandler: true, Status: 502}, posts: 1},
		{name: "503 before post", fault: &snowtest.Fault{Status: 503, Times: 2}, posts: 3},
		{name: "retry of a posted message", pre: true, msg: bridge.DeskMessage{Retry: true}, posts: 0},
		{name: "retry of a lost message", msg: bridge.DeskMessage{Retry: true}, posts: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := newFake(t, snowtest.Options{Now: t0})
			c := newClient(t, in, func(cfg *servicenow.Config) { cfg.Now = in.Now })
			chat := openChat(t, c, "s-1")
			m := tc.msg
			m.Key, m.Text, m.FirstTry = "k1", "please reset my password", in.Now()
			if tc.pre {
				if err := c.Send(context.Background(), dc(chat), bridge.DeskMessage{Key: "k1", Text: m.Text}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.fault != nil {
				in.InjectFault(post(tc.fault))
			}
			in.ResetRequests()
			if err := c.Send(context.Background(), dc(chat), m); err != nil {
				t.Fatalf("Send: %v", err)
			}
			n := 0
			for _, msg := range in.Messages(string(chat)) {
				if msg.Text == m.Text {
					n++
				}
			}
			if n != 1 {
				t.Errorf("message stored %d times, want once", n)
			}
			if got := in.Requests()["POST /api/now/connect/conversations/{group}/messages"]; got != tc.posts {
				t.Errorf("%d POSTs, want %d", got, tc.posts)
			}
		})
	}
}

func TestPollEvents(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, nil)
	ctx := context.Background()
	chat := openChat(t, c, "s-1")
	in.Advance(time.Second)
	must[snowtest.Message](t)(in.SystemMessage(string(chat), "Your chat has been placed in the queue"))
	if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	in.Advance(1500 * time.Millisecond)
	must[snowtest.Message](t)(in.Say(string(chat), "Beth Anglin", "Hi Abel, looking into it"))
	if err := c.Send(ctx, dc(chat), bridge.DeskMessage{Text: "thanks"}); err != nil {
		t.Fatal(err)
	}
	in.Advance(time.Second)
	if err := in.CloseChat(string(chat)); err != nil {
		t.Fatal(err)
	}

	evs, err := c.Poll(ctx, chat, time.Time{})
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	type ev struct {
		Kind   bridge.AgentEventKind
		Author string
		Text   string
		Echo   bool
		System bool
		End    bridge.CloseReason
	}
	var got []ev
	for _, e := range evs {
		if e.Chat != chat || e.ExternalID == "" || e.At.IsZero() {
			t.Errorf("event %+v lacks chat, id or time", e)
		}
		text := e.Text
		if strings.HasPrefix(text, "[handoff s-1]") {
			text = "<first message>"
		}
		got = append(got, ev{e.Kind, e.Author, text, e.Echo, e.System, e.EndReason})
	}
	want := []ev{
		{Kind: bridge.AgentMessage, Author: snowtest.DefaultUserName, Text: "<first message>", Echo: true},
		{Kind: bridge.AgentMessage, Author: "System", Text: "Your chat has been placed in the queue", System: true},
		{Kind: bridge.AgentJoined, Author: "Beth Anglin"},
		{Kind: bridge.AgentMessage, Author: "Beth Anglin", Text: snowtest.DefaultGreeting},
		{Kind: bridge.AgentMessage, Author: "Beth Anglin", Text: "Hi Abel, looking into it"},
		{Kind: bridge.AgentMessage, Author: snowtest.DefaultUserName, Text: "thanks", Echo: true},
		{Kind: bridge.AgentMessage, Author: "System", Text: "Beth Anglin has closed the support session", System: true, End: bridge.ReasonAgentClosed},
		{Kind: bridge.AgentEnded, Author: "System", System: true, End: bridge.ReasonAgentClosed},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got %+v\nwant %+v", got, want)
	}
	if !slices.IsSortedFunc(evs, func(a, b bridge.AgentEvent) int { return a.At.Compare(b.At) }) {
		t.Error("events not oldest first")
	}
	if evs[0].At != t0.Truncate(time.Millisecond) {
		t.Errorf("first event at %v, want %v (ms precision)", evs[0].At, t0)
	}

	// Since a cursor: only what is at or after it.
	cursor := evs[4].At
	evs, err = c.Poll(ctx, chat, cursor)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.At.Before(cursor) {
			t.Errorf("event %+v before the cursor %v", e, cursor)
		}
	}
	if len(evs) != 5 { // joined, agent message, echo, closing line, ended
		t.Errorf("got %d events since the cursor, want 5: %+v", len(evs), evs)
	}

	if _, err := c.Poll(ctx, "0123456789abcdef0123456789abcdef", time.Time{}); !errors.Is(err, bridge.ErrChatClosed) {
		t.Errorf("Poll of an unknown chat: %v, want ErrChatClosed", err)
	}
}

// TestPollEnd covers each way a chat ends, in both modes.
func TestPollEnd(t *testing.T) {
	tests := []struct {
		name   string
		accept bool
		act    func(in *snowtest.Instance, chat string) error
		want   bridge.CloseReason
		byText bool
	}{
		{name: "agent closes", accept: true, act: (*snowtest.Instance).CloseChat, want: bridge.ReasonAgentClosed, byText: true},
		{name: "agent leaves", accept: true, act: (*snowtest.Instance).LeaveChat, want: bridge.ReasonAgentLeft, byText: true},
		{name: "state 3 without text", accept: true, act: setState(snowtest.ClosedComplete), want: bridge.ReasonAgentClosed},
		{name: "state 4 escalated", accept: true, act: setState(snowtest.ClosedEscalated), want: bridge.ReasonAgentClosed},
		{name: "state 7 closed by client", accept: true, act: setState(snowtest.ClosedByClient), want: bridge.ReasonDeskClosed},
		{name: "state 8 abandoned in queue", act: setState(snowtest.ClosedAbandoned), want: bridge.ReasonDeskAbandoned},
		{name: "state 8 abandoned while live", accept: true, act: setState(snowtest.ClosedAbandoned), want: bridge.ReasonDeskAbandoned},
	}
	for _, mode := range modes {
		for _, tc := range tests {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				in := newFake(t, snowtest.Options{Now: t0})
				c := newClient(t, in, modeConfig(mode))
				chat := openChat(t, c, "s-1")
				if tc.accept {
					if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
						t.Fatal(err)
					}
				}
				if err := tc.act(in, string(chat)); err != nil {
					t.Fatal(err)
				}
				evs := pollEvents(t, mode, c, chat, time.Time{})
				var ends []bridge.AgentEvent
				for _, e := range evs {
					if e.Kind == bridge.AgentEnded {
						ends = append(ends, e)
					}
				}
				if len(ends) != 1 || ends[0].EndReason != tc.want {
					t.Fatalf("ended events %+v, want one with %s", ends, tc.want)
				}
				if last := evs[len(evs)-1]; last.Kind != bridge.AgentEnded {
					t.Errorf("last event %+v, want the ending", last)
				}
				if byText := !strings.HasPrefix(ends[0].ExternalID, "state:"); byText != tc.byText {
					t.Errorf("ended by text = %v, want %v", byText, tc.byText)
				}
			})
		}
	}
}

func setState(s snowtest.State) func(*snowtest.Instance, string) error {
	return func(in *snowtest.Instance, chat string) error { return in.SetState(chat, s) }
}

// pollEvents polls one chat in per-session or batch mode.
func pollEvents(t *testing.T, mode string, c *servicenow.Client, chat bridge.AgentChatID, since time.Time) []bridge.AgentEvent {
	t.Helper()
	if mode != "batch" {
		return must[[]bridge.AgentEvent](t)(c.Poll(context.Background(), chat, since))
	}
	res, err := c.PollMany(context.Background(), map[bridge.AgentChatID]time.Time{chat: since})
	if err != nil {
		t.Fatal(err)
	}
	return res[chat]
}

func TestPollJoinedWithoutGreeting(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0, Queues: []snowtest.Queue{{SysID: snowtest.DefaultQueue, Name: "IT Support"}}})
	c := newClient(t, in, nil)
	chat := openChat(t, c, "s-1")
	for _, mode := range []string{"session", "batch"} {
		evs := pollEvents(t, mode, c, chat, time.Time{})
		if slices.ContainsFunc(evs, func(e bridge.AgentEvent) bool { return e.Kind == bridge.AgentJoined }) {
			t.Errorf("%s: joined before any agent accepted: %+v", mode, evs)
		}
	}
	if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"session", "batch"} {
		evs := pollEvents(t, mode, c, chat, time.Time{})
		i := slices.IndexFunc(evs, func(e bridge.AgentEvent) bool { return e.Kind == bridge.AgentJoined })
		if i < 0 || evs[i].Author != "Beth Anglin" {
			t.Errorf("%s: no joined event by Beth Anglin in %+v", mode, evs)
		}
	}
}

func TestLeave(t *testing.T) {
	in := newFake(t, snowtest.Options{})
	c := newClient(t, in, nil)
	ctx := context.Background()
	chat := openChat(t, c, "s-1")
	if err := c.Leave(ctx, dc(chat)); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if ch, _ := in.Chat(string(chat)); ch.State != snowtest.ClosedByClient {
		t.Errorf("state %v after leave, want closed by client", ch.State)
	}
	if err := c.Leave(ctx, dc(chat)); err != nil {
		t.Errorf("second Leave: %v, want nil", err)
	}
	// An instance refusing to leave a closed chat is still a successful leave.
	in.InjectFault(snowtest.Fault{Method: http.MethodPost, Path: "/api/now/connect/support/sessions/", Status: 400, Message: "Session already closed"})
	if err := c.Leave(ctx, dc(chat)); err != nil {
		t.Errorf("Leave answered 400 on a closed chat: %v, want nil", err)
	}
	// A leave that failed with 503 and is retried.
	chat2 := openChat(t, c, "s-2")
	in.InjectFault(snowtest.Fault{Method: http.MethodPost, Path: "/api/now/connect/support/sessions/", Status: 503, AfterHandler: true})
	if err := c.Leave(ctx, dc(chat2)); err != nil {
		t.Errorf("Leave after a 503: %v", err)
	}
	if err := c.Leave(ctx, dc("0123456789abcdef0123456789abcdef")); !errors.Is(err, bridge.ErrChatClosed) {
		t.Errorf("Leave of an unknown chat: %v, want ErrChatClosed", err)
	}
}

func TestQueueEntry(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, nil)
	ctx := context.Background()
	a, b := openChat(t, c, "s-1"), openChat(t, c, "s-2")
	ea := must[servicenow.QueueEntry](t)(c.QueueEntry(ctx, a))
	eb := must[servicenow.QueueEntry](t)(c.QueueEntry(ctx, b))
	if ea.State != servicenow.StateWaiting || ea.Position != 1 || eb.Position != 2 || ea.Group != string(a) || !strings.HasPrefix(ea.Number, "CHAT") {
		t.Errorf("entries %+v / %+v: want waiting at positions 1 and 2", ea, eb)
	}
	if err := in.Accept(string(a), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	ea = must[servicenow.QueueEntry](t)(c.QueueEntry(ctx, a))
	eb = must[servicenow.QueueEntry](t)(c.QueueEntry(ctx, b))
	if ea.State != servicenow.StateWorkInProgress || ea.AssignedTo != "Beth Anglin" || !ea.WorkStart.Equal(t0.Truncate(time.Second)) || eb.Position != 1 {
		t.Errorf("after accept: %+v / %+v", ea, eb)
	}
	if _, err := c.QueueEntry(ctx, "0123456789abcdef0123456789abcdef"); !errors.Is(err, bridge.ErrChatClosed) {
		t.Errorf("QueueEntry of an unknown chat: %v, want ErrChatClosed", err)
	}
}

// TestErrorStatus checks every error status: the envelope's message and
// detail are surfaced, the classification is right, and only retryable
// statuses are retried.
func TestErrorStatus(t *testing.T) {
	tests := []struct {
		status       int
		permanent    bool
		unauthorized bool
		throttled    bool
		attempts     int
	}{
		{status: 400, permanent: true, attempts: 1},
		{status: 401, unauthorized: true, permanent: true, attempts: 1},
		{status: 403, permanent: true, attempts: 1},
		{status: 404, permanent: true, attempts: 1},
		{status: 429, attempts: 1, throttled: true},
		{status: 500, attempts: 3},
		{status: 503, attempts: 3}, // without Retry-After: an ordinary failure
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			in := newFake(t, snowtest.Options{})
			c := newClient(t, in, func(cfg *servicenow.Config) { cfg.MaxRetries = 2 })
			in.InjectFault(snowtest.Fault{Path: "/api/now/connect/support/queues", Status: tc.status, Times: 10,
				Message: "Operation Failed", Detail: "detail for " + http.StatusText(tc.status)})
			_, err := c.Queues(context.Background())
			var se *bridge.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a StatusError", err)
			}
			if se.Status != tc.status || se.Message != "Operation Failed" || se.Detail != "detail for "+http.StatusText(tc.status) || se.System != "servicenow" || se.Op != "list queues" {
				t.Errorf("StatusError = %+v", se)
			}
			if !strings.Contains(err.Error(), "servicenow: list queues: HTTP ") {
				t.Errorf("error text %q lacks the servicenow: <op>: prefix", err)
			}
			if got := bridge.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, tc.permanent)
			}
			if got := errors.Is(err, bridge.ErrUnauthorized); got != tc.unauthorized {
				t.Errorf("errors.Is(ErrUnauthorized) = %v, want %v", got, tc.unauthorized)
			}
			if got := in.TotalRequests(); got != tc.attempts {
				t.Errorf("%d requests, want %d", got, tc.attempts)
			}
			if _, got := bridge.Throttled(err); got != tc.throttled {
				t.Errorf("Throttled = %v, want %v", got, tc.throttled)
			}
		})
	}
}

func TestTransportError(t *testing.T) {
	in := newFake(t, snowtest.Options{})
	c := newClient(t, in, func(cfg *servicenow.Config) { cfg.MaxRetries = 1 })
	in.InjectFault(snowtest.Fault{Drop: true, Times: 5})
	_, err := c.Queues(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "servicenow: list queues: ") || bridge.IsPermanent(err) {
		t.Errorf("got %v, want a retryable error prefixed servicenow: list queues:", err)
	}
	if got := in.TotalRequests(); got != 2 {
		t.Errorf("%d requests, want 2 (one retry)", got)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  servicenow.Config
		want string
	}{
		{"no url", servicenow.Config{Queue: "q", Username: "u", Password: "p"}, "an InstanceURL is required"},
		{"bad url", servicenow.Config{InstanceURL: "ftp://x", Queue: "q", Username: "u", Password: "p"}, "not an http(s) URL"},
		{"no queue", servicenow.Config{InstanceURL: "https://x", Username: "u", Password: "p"}, "Queue"},
		{"no password", servicenow.Config{InstanceURL: "https://x", Queue: "q", Username: "u"}, "Basic auth"},
		{"bad grant", servicenow.Config{InstanceURL: "https://x", Queue: "q", Username: "u", Password: "p",
			OAuth: &servicenow.OAuth{GrantType: "implicit", ClientID: "c", ClientSecret: "s"}}, `OAuth.GrantType "implicit"`},
		{"client credentials without bridge user", servicenow.Config{InstanceURL: "https://x", Queue: "q",
			OAuth: &servicenow.OAuth{GrantType: servicenow.GrantClientCredentials, ClientID: "c", ClientSecret: "s"}}, "BridgeUser is required"},
		{"bad end phrase", servicenow.Config{InstanceURL: "https://x", Queue: "q", Username: "u", Password: "p",
			EndPhrases: []servicenow.EndPhrase{{Text: "bye", Reason: "gone"}}}, "EndPhrases"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := servicenow.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "servicenow: config: ") {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestEndPhrasesConfigurable(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, func(cfg *servicenow.Config) {
		cfg.EndPhrases = []servicenow.EndPhrase{{Text: "Hat die Sitzung beendet", Reason: bridge.ReasonAgentClosed}}
	})
	chat := openChat(t, c, "s-1")
	if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	must[snowtest.Message](t)(in.SystemMessage(string(chat), "Beth Anglin has closed the support session"))
	must[snowtest.Message](t)(in.SystemMessage(string(chat), "Beth Anglin HAT DIE SITZUNG BEENDET"))
	evs := must[[]bridge.AgentEvent](t)(c.Poll(context.Background(), chat, time.Time{}))
	var reasons []string
	for _, e := range evs {
		reasons = append(reasons, string(e.EndReason))
	}
	// Only the configured phrase (case-insensitive) ends the chat.
	want := []string{"", "", "", "", "agent_closed", "agent_closed"}
	if !slices.Equal(reasons, want) {
		t.Errorf("end reasons %q, want %q", reasons, want)
	}
}

// TestPollManyWithoutQueueEntryAccess: an integration user that may not read
// chat_queue_entry still gets messages, and ends by text, in batch mode.
func TestPollManyWithoutQueueEntryAccess(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, nil)
	chat := openChat(t, c, "s-1")
	if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	if err := in.CloseChat(string(chat)); err != nil {
		t.Fatal(err)
	}
	in.InjectFault(snowtest.Fault{Path: "/api/now/table/chat_queue_entry", Status: 403, Message: "Operation Failed", Detail: "ACL Exception"})
	res, err := c.PollMany(context.Background(), map[bridge.AgentChatID]time.Time{chat: {}})
	if err != nil {
		t.Fatalf("PollMany: %v", err)
	}
	evs := res[chat]
	if len(evs) != 5 || evs[len(evs)-1].Kind != bridge.AgentEnded || evs[len(evs)-1].EndReason != bridge.ReasonAgentClosed {
		t.Errorf("events %+v: want echo, joined, greeting, closing line, ended", evs)
	}
}

// TestOpenRetryAdoptsEarlierChat: an outbox retry of Open (the first attempt
// reached the instance, then the bridge crashed before recording it) adopts the
// chat instead of opening a second one; a first attempt never searches.
func TestOpenRetryAdoptsEarlierChat(t *testing.T) {
	in := newFake(t, snowtest.Options{})
	c := newClient(t, in, nil)
	ctx := context.Background()
	h := bridge.Handoff{Session: "s-crash", UserName: "Abel Tuter", Reason: "user_asked"}
	first, err := c.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	h.Retry = true
	again, err := c.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if again != first || len(in.Chats()) != 1 {
		t.Fatalf("retry opened %s (first %s), %d chats on the instance; want the first chat adopted", again, first, len(in.Chats()))
	}
	other, err := c.Open(ctx, bridge.Handoff{Session: "s-other", UserName: "Beth", Reason: "fallback", Retry: true})
	if err != nil {
		t.Fatal(err)
	}
	if other == first || len(in.Chats()) != 2 {
		t.Fatalf("a retry for another session must open its own chat; got %s, %d chats", other, len(in.Chats()))
	}
}
