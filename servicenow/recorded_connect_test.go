package servicenow_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
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
