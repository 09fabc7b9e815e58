package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// TestFilesEndToEnd runs the whole bridge against the fakes: a file the
// agent attaches to a Connect message reaches the employee in Teams as a
// link card (name, type, size) after the agent's text, by polling (the
// Attachment API) and by webhook (the Business Rule's list), and on the VA
// desk as the Output Link of the callback; the link is the instance's file,
// which opens for a ServiceNow user. A file the employee
// sends reaches the agent as "name (type): link"; one Teams gives no link
// for gets the employee a notice and nothing for the agent.
func TestFilesEndToEnd(t *testing.T) {
	for _, o := range []worldOpts{{delivery: "poll"}, {delivery: "webhook"}, {delivery: "webhook", desk: "va"}} {
		name := o.delivery + "-" + o.desk
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, o)
			u := teamstest.NewUser("Files " + name)
			conv := w.ch().ConversationID(u)
			w.say(u, "talk to live agent")
			group := w.chatOf(u, 30*time.Second)
			if err := w.sn.Accept(group, "Beth Anglin"); err != nil {
				t.Fatal(err)
			}
			guide := []byte("%PDF-1.7 VPN guide")
			m, err := w.sn.SayFiles(group, "Beth Anglin", "Here is the VPN guide",
				snowtest.File{Name: "vpn-guide.pdf", ContentType: "application/pdf", Content: guide})
			if err != nil {
				t.Fatal(err)
			}
			link := w.sn.URL() + "/api/now/attachment/" + m.Files[0].SysID + "/file"
			w.waitUser(u, "Here is the VPN guide", 30*time.Second)
			card := waitLinkCard(t, w.conn, conv, "vpn-guide.pdf", 30*time.Second)
			want := []string{"[vpn-guide.pdf](" + link + ")", "application/pdf · 18 bytes"}
			if o.desk == "va" {
				want = want[:1] // an Output Link names the file, without type or size
			}
			for _, want := range want {
				if !strings.Contains(card, want) {
					t.Errorf("link card %s lacks %q", card, want)
				}
			}
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, link, nil)
			req.SetBasicAuth(snowtest.DefaultUser, snowtest.DefaultPassword)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != string(guide) {
				t.Errorf("the link gives %d %q, want the file", resp.StatusCode, got)
			}

			// The employee's files: one with a link, one pasted as data.
			a := employeeFiles(w.ch().Message(u, "my error screen"))
			if code, err := w.ch().Post(context.Background(), a); err != nil || code != http.StatusOK {
				t.Fatalf("post files: %d %v", code, err)
			}
			w.waitAgent(group, "my error screen\nvpn-log.txt (txt): https://contoso.sharepoint.com/personal/files/vpn-log.txt", 30*time.Second)
			w.waitUser(u, "Your file pasted.png could not be passed on to the agent.", 30*time.Second)
			for _, line := range w.agentGot(group) {
				if strings.Contains(line, "data:image") {
					t.Errorf("the agent got the pasted data: %q", line)
				}
			}
		})
	}
}

// waitLinkCard waits for the link card of the file name in conv and returns
// its content.
func waitLinkCard(t *testing.T, conn *teamstest.Connector, conv, name string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, s := range conn.Messages(conv) {
			if len(s.Attachments) == 1 && strings.Contains(string(s.Attachments[0].Content), "📎 ["+name+"]") {
				return string(s.Attachments[0].Content)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no link card for %s in %+v", name, conn.Messages(conv))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// employeeFiles gives a the two files the end-to-end tests send as the
// employee: a OneDrive file with its download link, as Teams sends it
// (file.download.info), and an image pasted as data, which cannot be passed on.
func employeeFiles(a teamstest.Activity) teamstest.Activity {
	a.Attachments = []teamstest.Attachment{
		{ContentType: "application/vnd.microsoft.teams.file.download.info", Name: "vpn-log.txt",
			ContentURL: "https://contoso.sharepoint.com/personal/files/vpn-log.txt",
			Content:    map[string]any{"downloadUrl": "https://contoso.sharepoint.com/download/vpn-log.txt", "uniqueId": "1150D938", "fileType": "txt"}},
		{ContentType: "image/png", Name: "pasted.png", ContentURL: "data:image/png;base64,iVBORw0KGgo="},
	}
	return a
}
