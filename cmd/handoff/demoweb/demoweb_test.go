package demoweb

import (
	"encoding/json"
	"html/template"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams/teamstest"
)

func TestContextFacts(t *testing.T) {
	text := "[handoff abc] Chat handed over from the Teams bot.\nUser: Megan Bowen <megan.bowen@contoso.example>\n" +
		"Teams user: 29:1 · Entra ID: 44e7\nReason for handoff: fallback\nRecent conversation (last 2 of 2 turns):\n" +
		"[10:00] user (Megan Bowen): User: not this one"
	user, reason := contextFacts(text)
	if user != "Megan Bowen" || reason != "fallback" {
		t.Errorf("contextFacts = %q, %q; want Megan Bowen, fallback", user, reason)
	}
	if u, r := contextFacts("no facts here"); u != "" || r != "" {
		t.Errorf("contextFacts of a plain text = %q, %q", u, r)
	}
}

func TestEmailOf(t *testing.T) {
	for in, want := range map[string]string{
		"Megan Bowen":        "megan.bowen@contoso.example",
		"  Zoë  O'Neil ":     "zo.oneil@contoso.example",
		"<script>":           "script@contoso.example",
		"人":                  "employee@contoso.example",
		"Alex Wilber (IT) 2": "alex.wilber.it.2@contoso.example",
	} {
		if got := emailOf(in); got != want {
			t.Errorf("emailOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLines checks how Connector activities become lines: the card that
// follows a text continues it, a card's buttons keep their submit data, and
// stored messages decide who is speaking.
func TestLines(t *testing.T) {
	e := &employee{user: teamstest.NewUser("Megan Bowen"), changed: make(chan struct{}), used: map[int64]bool{}}
	card := json.RawMessage(`{"type":"AdaptiveCard","body":[],"actions":[
		{"type":"Action.Submit","title":"I forgot my password","data":{"payload":"/password_forgotten","msteams":{"type":"messageBack"}}},
		{"type":"Action.OpenUrl","title":"Docs","url":"https://example.com"},
		{"type":"Action.Submit","title":"Locked","data":{"payload":"/account_locked"}}]}`)
	msgs := []bridge.Message{
		{ID: 1, Source: bridge.SourceUser, Text: "What happened?"},
		{ID: 2, Source: bridge.SourceBot, Text: "What happened?"},
		{ID: 3, Source: bridge.SourceAgent, Author: "Beth Anglin", Text: "Hello"},
		{ID: 4, Source: bridge.SourceBridge, Text: "The agent has closed the chat."},
		{ID: 5, Source: bridge.SourceAgent, System: true, Author: "System", Text: "Beth Anglin has closed the support session"},
	}
	now := time.Now()
	add := func(text string, atts ...teamstest.SentAttachment) line {
		l := line{At: now, Kind: kindBot, Text: text}
		if text != "" {
			if m, ok := e.match(msgs, text); ok {
				l.Kind, l.Author = kindOf(m), m.Author
			}
		} else if n := len(e.lines); n > 0 {
			l.Kind, l.Author = e.lines[n-1].Kind, e.lines[n-1].Author
		}
		for _, a := range atts {
			if a.ContentType == "application/vnd.microsoft.card.adaptive" {
				addCardButtons(&l, a.Content)
			}
		}
		e.appendLocked(l)
		return e.lines[len(e.lines)-1]
	}
	if l := add("What happened?"); l.Kind != kindBot || l.Who != "IT Helpdesk · virtual assistant" {
		t.Errorf("bot line %+v", l)
	}
	l := add("", teamstest.SentAttachment{ContentType: "application/vnd.microsoft.card.adaptive", Content: card})
	if !l.Cont || l.Kind != kindBot || len(l.Buttons) != 2 || l.Buttons[1].Title != "Locked" || l.Buttons[1].Index != 1 {
		t.Errorf("card line %+v: want a continuation with two submit buttons", l)
	}
	if !strings.Contains(string(l.submits[0]), "/password_forgotten") {
		t.Errorf("the first button's submit data is %s", l.submits[0])
	}
	if l := add("Hello"); l.Kind != kindAgent || l.Who != "Beth Anglin · IT service desk" || l.Cont {
		t.Errorf("agent line %+v", l)
	}
	if l := add("The agent has closed the chat."); l.Kind != kindNotice {
		t.Errorf("bridge line %+v: want a notice", l)
	}
	if l := add("Beth Anglin has closed the support session"); l.Kind != kindNotice {
		t.Errorf("desk system line %+v: want a notice", l)
	}
	if got := len(e.lines); got != 5 || e.lines[4].Seq != 5 {
		t.Errorf("%d lines, last seq %d", got, e.lines[len(e.lines)-1].Seq)
	}
}

// TestTemplatesEscape renders what users and agents wrote through the
// fragments the pages use.
func TestTemplatesEscape(t *testing.T) {
	tmpl, err := template.New("").Funcs(template.FuncMap{"clock": func(time.Time) string { return "" }}).
		ParseFS(templateFS, "templates/*.html")
	if err != nil {
		t.Fatal(err)
	}
	evil := `<script>alert(1)</script>`
	var b strings.Builder
	l := line{Seq: 1, Kind: kindAgent, Who: evil, Text: evil, User: evil, Image: "javascript:alert(1)",
		Buttons: []button{{Title: evil}}}
	if err := tmpl.ExecuteTemplate(&b, "line", l); err != nil {
		t.Fatal(err)
	}
	c := console{User: evil, Waiting: []queued{{Group: evil, Requester: evil, Context: evil}},
		Chats: []deskChat{{Group: evil, Open: true, Context: evil, Messages: []deskLine{{Author: evil, Text: evil}}}}}
	for _, name := range []string{"queue", "chats"} {
		if err := tmpl.ExecuteTemplate(&b, name, c); err != nil {
			t.Fatal(err)
		}
	}
	if out := b.String(); strings.Contains(out, "<script>") || strings.Contains(out, "javascript:") {
		t.Errorf("unescaped input in:\n%s", out)
	}
}

func TestReadForm(t *testing.T) {
	var v sendRequest
	r := httptest.NewRequest("POST", "/", strings.NewReader(`user=Megan+Bowen&seq=4&button=1`))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if isJSON, err := readForm(r, &v); err != nil || isJSON || v.User != "Megan Bowen" || v.Seq != "4" || v.Button != "1" {
		t.Errorf("form: %+v json=%v err=%v", v, isJSON, err)
	}
	v = sendRequest{}
	r = httptest.NewRequest("POST", "/", strings.NewReader(`{"user":"Alex","text":"hi"}`))
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	if isJSON, err := readForm(r, &v); err != nil || !isJSON || v.User != "Alex" || v.Text != "hi" {
		t.Errorf("JSON: %+v json=%v err=%v", v, isJSON, err)
	}
	r = httptest.NewRequest("POST", "/", strings.NewReader(`{"user":`))
	r.Header.Set("Content-Type", "application/json")
	if _, err := readForm(r, &v); err == nil {
		t.Error("broken JSON accepted")
	}
}
