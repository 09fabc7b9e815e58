package teams

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams/teamstest"
)

var testCard = bridge.Card{Title: "Live agent chat", Style: "accent", Lines: []string{"Waiting for an agent…"},
	Buttons: []bridge.Button{{Title: "End chat", Payload: "/end_chat"}}}

// TestClientCardUpdate: the card is posted (201 with an id), then replaced
// in place with PUT …/activities/{id} (200); an update of an activity Teams
// does not have (404) or may not change (403) is ErrCardGone, a blocked bot
// is ErrUserUnreachable.
func TestClientCardUpdate(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	conv := "a:1card"
	id, err := f.client.SendCard(ctx, f.ref(conv), testCard)
	if err != nil || id == "" {
		t.Fatalf("SendCard = %q, %v", id, err)
	}
	if n := f.conn.CountStatus(conv, http.StatusCreated); n != 1 {
		t.Fatalf("%d answers 201, want 1", n)
	}
	connected := bridge.Card{Title: "Live agent chat", Style: "good", Lines: []string{"Connected to Beth Anglin"}, Buttons: testCard.Buttons}
	if err := f.client.UpdateCard(ctx, f.ref(conv), id, connected); err != nil {
		t.Fatal(err)
	}
	up := f.conn.Updates(conv)
	if len(up) != 1 || up[0].ID != id || f.conn.CountStatus(conv, http.StatusOK) != 1 {
		t.Fatalf("updates = %+v", up)
	}
	if !strings.Contains(string(up[0].Attachments[0].Content), "Connected to Beth Anglin") || !strings.Contains(string(up[0].Activity), `"id":"`+id+`"`) {
		t.Fatalf("update body = %s", up[0].Activity)
	}
	// The Connector keeps the card as updated.
	if msgs := f.conn.Messages(conv); len(msgs) != 1 || !strings.Contains(string(msgs[0].Attachments[0].Content), "Connected") {
		t.Fatalf("messages = %+v", msgs)
	}

	tests := []struct {
		name  string
		id    string
		fault *teamstest.Fault
		want  error
	}{
		{"unknown activity (404)", "1999", nil, bridge.ErrCardGone},
		{"forbidden (403)", id, &teamstest.Fault{Status: 403, Code: "Forbidden", Message: "cannot edit", Times: 1}, bridge.ErrCardGone},
		{"blocked bot (403 MessageWritesBlocked)", id, &teamstest.Fault{Status: 403, Code: "MessageWritesBlocked", Message: "blocked", Times: 1}, bridge.ErrUserUnreachable},
		{"no id", "", nil, bridge.ErrCardGone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				f.conn.Fail(conv, *tc.fault)
			}
			err := f.client.UpdateCard(ctx, f.ref(conv), tc.id, connected)
			if !errors.Is(err, tc.want) {
				t.Fatalf("UpdateCard = %v, want %v", err, tc.want)
			}
			if tc.want == bridge.ErrUserUnreachable && errors.Is(err, bridge.ErrCardGone) {
				t.Fatalf("a blocked bot must not be taken for a gone card: %v", err)
			}
		})
	}
}

// TestCardShape: the status card is an Adaptive Card 1.4 with a bold
// coloured title, the lines, and an Action.Submit whose data carries the
// payload the bridge recognises.
func TestCardShape(t *testing.T) {
	raw, err := json.Marshal(adaptiveCardOf(testCard).Content)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Type, Version string
		Body          []map[string]any
		Actions       []struct {
			Type, Title string
			Data        map[string]any
		}
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c.Type != "AdaptiveCard" || c.Version != "1.4" || len(c.Body) != 2 || c.Body[0]["weight"] != "Bolder" || c.Body[0]["color"] != "Accent" {
		t.Fatalf("card = %s", raw)
	}
	if len(c.Actions) != 1 || c.Actions[0].Type != "Action.Submit" || c.Actions[0].Title != "End chat" || valueText(mustMarshal(t, c.Actions[0].Data)) != "/end_chat" {
		t.Fatalf("actions = %+v", c.Actions)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClientAgentNameAndNotices: an agent message carries the agent's name
// in bold on its own line; bridge notices are marked; bot messages are
// plain.
func TestClientAgentNameAndNotices(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	conv := "a:1who"
	for _, m := range []bridge.UserMessage{
		{Text: "Hi, how can I help?", Author: "Beth Anglin"},
		{Text: "The agent has closed the chat.", Notice: true},
		{Text: "bot says hi"},
		{Text: "x", Author: "a*b_c"},
	} {
		if _, err := f.client.Send(ctx, f.ref(conv), m); err != nil {
			t.Fatal(err)
		}
	}
	got := f.conn.Messages(conv)
	want := []string{"**Beth Anglin**\n\nHi, how can I help?", "ℹ️ The agent has closed the chat.", "bot says hi", `**a\*b\_c**` + "\n\nx"}
	for i, w := range want {
		if got[i].Text != w {
			t.Errorf("message %d = %q, want %q", i, got[i].Text, w)
		}
	}
}

// TestClientAttachmentLinks: an agent's attachment reaches Teams as a link
// card with its name, type and size; a non-http link is refused.
func TestClientAttachmentLinks(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	conv := "a:1files"
	m := bridge.UserMessage{Text: "Here is the guide", Author: "Beth",
		Attachments: []bridge.Attachment{{Name: "VPN guide.pdf", ContentType: "application/pdf", URL: "https://acme.service-now.com/sys_attachment.do?sys_id=abc", Size: 2 << 20}}}
	if _, err := f.client.Send(ctx, f.ref(conv), m); err != nil {
		t.Fatal(err)
	}
	got := f.conn.Messages(conv)
	if len(got) != 2 || len(got[1].Attachments) != 1 || got[1].Attachments[0].ContentType != ContentTypeAdaptiveCard {
		t.Fatalf("sent = %+v", got)
	}
	body := string(got[1].Attachments[0].Content)
	for _, want := range []string{`[VPN guide.pdf](https://acme.service-now.com/sys_attachment.do?sys_id=abc)`, "application/pdf · 2.0 MB"} {
		if !strings.Contains(body, want) {
			t.Errorf("link card %s lacks %q", body, want)
		}
	}
	bad := bridge.UserMessage{Attachments: []bridge.Attachment{{Name: "x", URL: "javascript:alert(1)"}}}
	if _, err := f.client.Send(ctx, f.ref(conv), bad); !bridge.IsPermanent(err) {
		t.Fatalf("bad link: %v, want a permanent error", err)
	}
}

// TestClientMember: the members API as Teams documents it (the fake serves
// testdata/member.json's shape): found, unknown (404), and a lookup that
// outlasts its deadline.
func TestClientMember(t *testing.T) {
	f := newClientFixture(t, nil)
	var doc teamstest.Member
	raw, err := os.ReadFile("teamstest/testdata/member.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	f.conn.AddMember(doc)
	ref := f.ref("a:1members")
	ref.UserID = doc.ID

	t.Run("found", func(t *testing.T) {
		m, err := f.client.Member(context.Background(), ref, doc.ID)
		if err != nil || m.Email != doc.Email || m.UserPrincipalName != doc.UserPrincipalName || m.AADObjectID != doc.AADObjectID {
			t.Fatalf("Member = %+v, %v", m, err)
		}
		if e, err := f.client.UserEmail(context.Background(), ref); err != nil || e != "Larry.Brown@fabrikam.onmicrosoft.com" {
			t.Fatalf("UserEmail = %q, %v", e, err)
		}
	})
	t.Run("upn when no email", func(t *testing.T) {
		f.conn.AddMember(teamstest.Member{ID: "29:upn", UserPrincipalName: "upn@example.com"})
		r := ref
		r.UserID = "29:upn"
		if e, err := f.client.UserEmail(context.Background(), r); err != nil || e != "upn@example.com" {
			t.Fatalf("UserEmail = %q, %v", e, err)
		}
	})
	t.Run("unknown user (404)", func(t *testing.T) {
		r := ref
		r.UserID = "29:nobody"
		_, err := f.client.UserEmail(context.Background(), r)
		if !errors.Is(err, bridge.ErrNotFound) || !strings.Contains(err.Error(), "MemberNotFoundInConversation") {
			t.Fatalf("UserEmail = %v, want ErrNotFound with Teams' code", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		f.conn.SetMemberLatency(5 * time.Second)
		defer f.conn.SetMemberLatency(0)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := f.client.UserEmail(ctx, ref)
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("UserEmail = %v, want the deadline", err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("lookup took %s: not bounded by its context", d)
		}
	})
}

// TestMemberNotFoundPayload: the client reads the documented 404 body.
func TestMemberNotFoundPayload(t *testing.T) {
	raw, err := os.ReadFile("teamstest/testdata/member_not_found.json")
	if err != nil {
		t.Fatal(err)
	}
	if e := parseErrorBody(raw); e.code != "MemberNotFoundInConversation" {
		t.Fatalf("code = %q", e.code)
	}
}

// TestReadMessage: ReadMessage undoes Send's rendering.
func TestReadMessage(t *testing.T) {
	tests := []struct {
		in, author, body string
		notice           bool
	}{
		{"**Beth Anglin**\n\nHello", "Beth Anglin", "Hello", false},
		{`**a\*b\_c**` + "\n\nx", "a*b_c", "x", false},
		{"**Beth**", "Beth", "", false},
		{"ℹ️ The agent has closed the chat.", "", "The agent has closed the chat.", true},
		{"**bold** bot text", "", "**bold** bot text", false},
		{"plain", "", "plain", false},
	}
	for _, tc := range tests {
		a, b, n := ReadMessage(tc.in)
		if a != tc.author || b != tc.body || n != tc.notice {
			t.Errorf("ReadMessage(%q) = %q, %q, %v", tc.in, a, b, n)
		}
	}
}

// TestFilesFromTeams: a file the employee sends reaches the agent as a link
// with its name and type; one without a link is named as lost, so the
// employee can be told.
func TestFilesFromTeams(t *testing.T) {
	tests := []struct {
		name     string
		att      teamstest.Attachment
		wantText string
		wantLost []string
	}{
		{"file consent download", teamstest.Attachment{ContentType: contentTypeFileDownload, Name: "report.pdf",
			Content: map[string]any{"downloadUrl": "https://contoso.sharepoint.com/report.pdf", "uniqueId": "1", "fileType": "pdf"}},
			"see file\nreport.pdf (pdf): https://contoso.sharepoint.com/report.pdf", nil},
		{"image by a public contentUrl", teamstest.Attachment{ContentType: "image/png", Name: "screen.png", ContentURL: "https://files.example/screen.png"},
			"see file\nscreen.png (image/png): https://files.example/screen.png", nil},
		{"pasted image: the Bot Connector's attachment URL needs the bot's token", teamstest.Attachment{ContentType: "image/png", Name: "screen.png", ContentURL: "https://smba.trafficmanager.net/emea/v3/attachments/x/views/original"},
			"see file", []string{"screen.png"}},
		{"inline data, no link", teamstest.Attachment{ContentType: "image/png", Name: "pasted.png", ContentURL: "data:image/png;base64,AAAA"},
			"see file", []string{"pasted.png"}},
		{"html copy is no file", teamstest.Attachment{ContentType: "text/html", Content: "<p>see file</p>"}, "see file", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch := &teamstest.Channel{AppID: testAppID, BotName: "Bot", ServiceURL: "https://smba.trafficmanager.net/emea/", TenantID: testTenant}
			act := ch.Message(teamstest.NewUser("Ada"), "see file")
			act.Attachments = []teamstest.Attachment{tc.att}
			a, err := decodeActivity(mustMarshal(t, act))
			if err != nil {
				t.Fatal(err)
			}
			ua, ok, err := mapActivity(a, time.Now())
			if err != nil || !ok {
				t.Fatalf("mapActivity: %v %v", ok, err)
			}
			if ua.Text != tc.wantText || strings.Join(ua.LostFiles, ",") != strings.Join(tc.wantLost, ",") {
				t.Fatalf("text %q lost %q, want %q %q", ua.Text, ua.LostFiles, tc.wantText, tc.wantLost)
			}
		})
	}
}

// TestRatingCardShape: a card with an input field and data buttons renders
// an Input.Text with the field's id (Teams merges its value into the
// submit) and Action.Submit actions whose data is the buttons' data, no
// payload.
func TestRatingCardShape(t *testing.T) {
	att := adaptiveCardOf(bridge.Card{Title: "Rate", Input: &bridge.CardInput{ID: "csat_comment", Placeholder: "Comment", MaxLength: 1000},
		Buttons: []bridge.Button{{Title: "4 ★", Data: map[string]string{"action": "handoff.csat", "session": "s1", "rating": "4"}}}})
	raw, err := json.Marshal(att.Content)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Body []struct {
			Type, ID, Placeholder string
			MaxLength             int
		}
		Actions []struct {
			Type, Title string
			Data        map[string]any
		}
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Body) != 2 || c.Body[1].Type != "Input.Text" || c.Body[1].ID != "csat_comment" || c.Body[1].MaxLength != 1000 {
		t.Errorf("body = %+v, want the title and an Input.Text csat_comment", c.Body)
	}
	if len(c.Actions) != 1 || c.Actions[0].Type != "Action.Submit" || c.Actions[0].Data["rating"] != "4" || c.Actions[0].Data["payload"] != nil {
		t.Errorf("actions = %+v, want one submit with the button's data", c.Actions)
	}
}
