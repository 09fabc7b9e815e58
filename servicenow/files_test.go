package servicenow_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// TestAgentFiles: files an agent attaches to a Connect message reach the
// bridge as AgentEvent.Attachments (name, type, size, the Attachment API's
// download_link) on every path: per-session polling (the messages API says
// which messages have files, the Attachment API lists them), batch polling
// (the Table API does not say, so one Attachment API read covers the new
// agent rows) and webhooks (the Business Rule sends the files). A message
// without files costs no Attachment API read in per-session polling.
func TestAgentFiles(t *testing.T) {
	guide := snowtest.File{Name: "vpn-guide.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.7 guide")}
	shot := snowtest.File{Name: "settings.png", ContentType: "image/png", Size: 106879}
	for _, mode := range []string{"session", "batch", "webhook"} {
		t.Run(mode, func(t *testing.T) {
			in := newFake(t, snowtest.Options{Now: t0})
			c := newClient(t, in, nil)
			sink := &countingSink{}
			if mode == "webhook" {
				h := newWebhook(t, sink, func(cfg *servicenow.WebhookConfig) { cfg.OrderWindow = -1 })
				srv := httptest.NewServer(h)
				t.Cleanup(srv.Close)
				in.EnableWebhooks(snowtest.WebhookOptions{URL: srv.URL, Secret: whSecret, HexSignature: true})
			}
			chat := openChat(t, c, "s-1")
			if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
				t.Fatal(err)
			}
			in.Advance(time.Second)
			plain := must[snowtest.Message](t)(in.Say(string(chat), "Beth Anglin", "Let me find the guide"))
			in.Advance(time.Second)
			withFiles := must[snowtest.Message](t)(in.SayFiles(string(chat), "Beth Anglin", "Here it is", guide, shot))
			in.ResetRequests()
			var evs []bridge.AgentEvent
			switch mode {
			case "session":
				evs = must[[]bridge.AgentEvent](t)(c.Poll(context.Background(), chat, time.Time{}))
			case "batch":
				byChat := must[map[bridge.AgentChatID][]bridge.AgentEvent](t)(c.PollMany(context.Background(), map[bridge.AgentChatID]time.Time{chat: {}}))
				evs = byChat[chat]
			case "webhook":
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := in.WaitDeliveries(ctx); err != nil {
					t.Fatal(err)
				}
				evs = sink.events()
			}
			reads := in.Requests()["GET /api/now/attachment"]
			want := []bridge.Attachment{
				{Name: guide.Name, ContentType: guide.ContentType, URL: in.URL() + "/api/now/attachment/" + withFiles.Files[0].SysID + "/file", Size: int64(len(guide.Content))},
				{Name: shot.Name, ContentType: shot.ContentType, URL: in.URL() + "/api/now/attachment/" + withFiles.Files[1].SysID + "/file", Size: shot.Size},
			}
			var gotFiles, gotPlain bool
			for _, ev := range evs {
				switch ev.ExternalID {
				case withFiles.SysID:
					gotFiles = true
					if ev.Text != "Here it is" || !reflect.DeepEqual(ev.Attachments, want) {
						t.Errorf("message with files: %q %+v, want %+v", ev.Text, ev.Attachments, want)
					}
				case plain.SysID:
					gotPlain = true
					if len(ev.Attachments) != 0 {
						t.Errorf("message without files has %+v", ev.Attachments)
					}
				}
			}
			if !gotFiles || !gotPlain {
				t.Fatalf("events %+v lack the agent's messages", evs)
			}
			wantReads := map[string]int{"session": 1, "batch": 1, "webhook": 0}[mode]
			if reads != wantReads {
				t.Errorf("%d Attachment API reads, want %d", reads, wantReads)
			}
			// The next poll returns the rows at the cursor again: their files
			// come from memory, not from another read.
			switch mode {
			case "session":
				evs = must[[]bridge.AgentEvent](t)(c.Poll(context.Background(), chat, withFiles.At))
			case "batch":
				evs = must[map[bridge.AgentChatID][]bridge.AgentEvent](t)(c.PollMany(context.Background(), map[bridge.AgentChatID]time.Time{chat: withFiles.At}))[chat]
			}
			if mode != "webhook" {
				if again := in.Requests()["GET /api/now/attachment"]; again != reads {
					t.Errorf("the poll at the cursor read the Attachment API again (%d reads, want %d)", again, reads)
				}
				if i := slices.IndexFunc(evs, func(ev bridge.AgentEvent) bool { return ev.ExternalID == withFiles.SysID }); i < 0 || !reflect.DeepEqual(evs[i].Attachments, want) {
					t.Errorf("poll at the cursor: %+v, want the message with its files", evs)
				}
			}
		})
	}
}

// TestAgentFilesNoAccess: without read access to sys_attachment (403) the
// agent's messages still arrive, without their files; a failing Attachment
// API (503) fails the poll, which is tried again, and then the files arrive.
func TestAgentFilesNoAccess(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, func(cfg *servicenow.Config) { cfg.MaxRetries = 1 })
	chat := openChat(t, c, "s-1")
	if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	in.Advance(time.Second)
	m := must[snowtest.Message](t)(in.SayFiles(string(chat), "Beth Anglin", "Here it is", snowtest.File{Name: "a.txt", ContentType: "text/plain", Size: 3}))
	find := func(evs []bridge.AgentEvent) bridge.AgentEvent {
		for _, ev := range evs {
			if ev.ExternalID == m.SysID {
				return ev
			}
		}
		t.Fatalf("no event for %s in %+v", m.SysID, evs)
		return bridge.AgentEvent{}
	}
	in.InjectFault(snowtest.Fault{Method: http.MethodGet, Path: "/api/now/attachment", Status: http.StatusForbidden, Times: 1})
	ev := find(must[[]bridge.AgentEvent](t)(c.Poll(context.Background(), chat, time.Time{})))
	if ev.Text != "Here it is" || len(ev.Attachments) != 0 {
		t.Errorf("with 403: %q %+v, want the text without files", ev.Text, ev.Attachments)
	}
	in.InjectFault(snowtest.Fault{Method: http.MethodGet, Path: "/api/now/attachment", Status: http.StatusServiceUnavailable, Times: 2})
	if _, err := c.Poll(context.Background(), chat, time.Time{}); err == nil {
		t.Fatal("a 503 from the Attachment API did not fail the poll")
	}
	if ev := find(must[[]bridge.AgentEvent](t)(c.Poll(context.Background(), chat, time.Time{}))); len(ev.Attachments) != 1 || ev.Attachments[0].Name != "a.txt" {
		t.Errorf("after the 503: %+v, want the file", ev.Attachments)
	}
}
