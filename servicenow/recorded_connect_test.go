package servicenow_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/recorded"
)

// TestPollManyRecordedPages runs the Connect desk's batch poll against an
// instance that answers with the recorded Table API pages of chat_queue_entry
// and live_message, and the Attachment API's page for its messages
// (servicenow/recorded, written from the documented table fields): the client
// asks for the recorded fields, and the waiting chat's place in the queue, the
// live chat's agent messages (the second with its two files) and the closed chat's
// end come out as events.
func TestPollManyRecordedPages(t *testing.T) {
	entries, msgs := recorded.Load("table_chat_queue_entry_page.json"), recorded.Load("table_live_message_page.json")
	files := recorded.Load("attachment_live_message.json")
	fieldsOf := func(x recorded.Exchange) string {
		u, err := url.Parse(x.Path)
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get("sysparm_fields")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var x recorded.Exchange
		switch r.URL.Path {
		case "/api/now/table/chat_queue_entry":
			x = entries
		case "/api/now/table/live_message":
			x = msgs
		case "/api/now/attachment":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(files.Body)
			return
		default:
			http.NotFound(w, r)
			return
		}
		if got, want := r.URL.Query().Get("sysparm_fields"), fieldsOf(x); got != want {
			t.Errorf("%s: sysparm_fields %q, recorded %q", r.URL.Path, got, want)
		}
		if r.URL.Query().Get("sysparm_display_value") != "all" || r.URL.Query().Get("sysparm_exclude_reference_link") != "true" {
			t.Errorf("%s: %s, want display values and no reference links as recorded", r.URL.Path, r.URL.RawQuery)
		}
		for k, v := range x.Header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(x.Status)
		_, _ = w.Write(x.Body)
	}))
	t.Cleanup(srv.Close)
	c, err := servicenow.New(servicenow.Config{InstanceURL: srv.URL, Username: "handoff.bridge", Password: "x", Queue: "q",
		RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond, Timeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const (
		waiting = bridge.AgentChatID("6d3e5071ec6b2121b5d2a3c4d5e6f708")
		live    = bridge.AgentChatID("5c2d4f60db5a1010a4c1f2b3c4d5e6f7")
		closed  = bridge.AgentChatID("7e4f6182fd7c3232c6e3b4d5e6f70819")
	)
	since := time.Date(2024, 5, 2, 14, 0, 0, 0, time.UTC)
	got, err := c.PollMany(context.Background(), map[bridge.AgentChatID]time.Time{waiting: since, live: since, closed: since})
	if err != nil {
		t.Fatal(err)
	}
	if evs := got[waiting]; len(evs) != 1 || evs[0].Kind != bridge.AgentWaiting || evs[0].QueuePosition != 2 {
		t.Errorf("waiting chat: %+v, want its place in the queue (2)", evs)
	}
	var texts []string
	nfiles := 0
	for _, ev := range got[live] {
		if ev.Kind == bridge.AgentMessage {
			texts = append(texts, ev.Author+": "+ev.Text)
			nfiles += len(ev.Attachments)
		}
	}
	if len(texts) != 2 || texts[1] != "Beth Anglin: Which VPN client version do you have?" || nfiles != 2 {
		t.Errorf("live chat messages %q with %d files, want 2 and the two recorded files", texts, nfiles)
	}
	if evs := got[closed]; len(evs) != 1 || evs[0].Kind != bridge.AgentEnded || evs[0].Author != "Beth Anglin" {
		t.Errorf("closed chat: %+v, want its end (state 3)", evs)
	}
}

// TestConnectRecorded runs the Connect desk against an instance that answers
// with the recorded Connect Support exchanges (servicenow/recorded/connect_*,
// written from the fields ServiceNow's own Connect web client reads, since the
// API itself is undocumented): each request the client makes is the recorded
// one (method, path, body), and what it reads back is right: the queue is
// found, the chat opens under the entry's group, the agent's messages carry
// her name (sender_name), the bridge's own rows are echoes, the system row
// ends the chat as closed by the agent, and a refused queue is a permanent
// error carrying ServiceNow's message.
func TestConnectRecorded(t *testing.T) {
	queues, open, refused := recorded.Load("connect_queues.json"), recorded.Load("connect_open.json"), recorded.Load("connect_queue_unavailable.json")
	sessions, msgs, post := recorded.Load("connect_sessions.json"), recorded.Load("connect_messages.json"), recorded.Load("connect_post.json")
	var (
		mu      sync.Mutex
		refuse  bool
		matched = map[string]int{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		ex := []recorded.Exchange{queues, open, sessions, msgs, post}
		if refuse {
			ex = []recorded.Exchange{refused}
		}
		mu.Unlock()
		for _, x := range ex {
			u, err := url.Parse(x.Path)
			if err != nil {
				t.Fatal(err)
			}
			if r.Method != x.Method || r.URL.Path != u.Path || r.URL.Query().Encode() != u.Query().Encode() {
				continue
			}
			if x.Request != nil {
				var got, want map[string]any
				if err := json.Unmarshal(body, &got); err != nil || json.Unmarshal(x.Request, &want) != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("%s %s: body %s, recorded %s", r.Method, r.URL.Path, body, x.Request)
				}
			}
			mu.Lock()
			matched[x.Source]++
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(x.Status)
			_, _ = w.Write(x.Body)
			return
		}
		t.Errorf("no recorded exchange for %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := servicenow.New(servicenow.Config{InstanceURL: srv.URL, Username: "handoff.bridge", Password: "x",
		Queue: "3f5bd2c1db5a1010a4c1f2b3c4d5e6f7", RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond,
		Timeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.CheckQueue(ctx); err != nil {
		t.Fatalf("CheckQueue: %v", err)
	}
	h := bridge.Handoff{Session: "s-1", UserName: "Abel Tuter", UserEmail: "abel.tuter@example.com", Reason: "user_asked"}
	chat, err := c.Open(ctx, h)
	if err != nil || chat.ID != "5c2d4f60db5a1010a4c1f2b3c4d5e6f7" {
		t.Fatalf("Open = %+v, %v; want the recorded entry's group", chat, err)
	}
	if err := c.Send(ctx, chat, bridge.DeskMessage{Key: "s-1/2", Text: "it says my account is locked"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	e, err := c.QueueEntry(ctx, chat.ID)
	if err != nil || e.State != servicenow.StateClosedComplete || e.AssignedTo != "Beth Anglin" || e.Number != "CHAT0010042" {
		t.Fatalf("QueueEntry = %+v, %v", e, err)
	}
	evs, err := c.Poll(ctx, chat.ID, time.Time{})
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	type ev struct {
		Kind         bridge.AgentEventKind
		Author, Text string
		Echo, System bool
		End          bridge.CloseReason
	}
	var got []ev
	for _, e := range evs {
		got = append(got, ev{e.Kind, e.Author, e.Text, e.Echo, e.System, e.EndReason})
	}
	first := "[handoff s-1] Chat handed over from the Teams bot.\nUser: Abel Tuter <abel.tuter@example.com>\nReason for handoff: user_asked\nNo transcript."
	want := []ev{
		{Kind: bridge.AgentMessage, Author: "Handoff Bridge", Text: first, Echo: true},
		{Kind: bridge.AgentJoined, Author: "Beth Anglin"},
		{Kind: bridge.AgentMessage, Author: "Beth Anglin", Text: "Thank you for contacting support. We are looking into your question now and will be with you shortly."},
		{Kind: bridge.AgentMessage, Author: "Beth Anglin", Text: "Hi Abel, which VPN client version do you have?"},
		{Kind: bridge.AgentMessage, Author: "Handoff Bridge", Text: "it says my account is locked", Echo: true},
		{Kind: bridge.AgentMessage, Author: "System", Text: "Beth Anglin has closed the support session", System: true, End: bridge.ReasonAgentClosed},
		{Kind: bridge.AgentEnded, Author: "System", System: true, End: bridge.ReasonAgentClosed},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events\n%+v\nwant\n%+v", got, want)
	}
	for _, x := range []recorded.Exchange{queues, open, sessions, msgs, post} {
		if matched[x.Source] == 0 {
			t.Errorf("the client never made the recorded request %s %s", x.Method, x.Path)
		}
	}

	mu.Lock()
	refuse = true
	mu.Unlock()
	h.Session = "s-2"
	_, err = c.Open(ctx, h)
	if !bridge.IsPermanent(err) || !strings.Contains(err.Error(), "The support queue is not available") {
		t.Errorf("Open on a refused queue = %v, want a permanent error with ServiceNow's message", err)
	}
}
