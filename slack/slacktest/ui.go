package slacktest

import (
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The agent page: a Slack-like view of the support channel for the demo
// (GET /ui on the fake's address). Agents pick who they are, see one parent
// message per handoff with its Take and Close buttons, read the thread, and
// reply in it. Every action goes through the fake exactly as a Slack client's
// would reach Slack: a reply becomes a signed message event, a button press a
// signed block_actions payload, both sent to the bridge.

//go:embed ui/*.html
var uiFS embed.FS

var (
	slackLink = regexp.MustCompile(`<([^<>|]+)(?:\|([^<>]*))?>`)
	slackBold = regexp.MustCompile(`\*([^*\n]+)\*`)
	slackItal = regexp.MustCompile(`(^|\s)_([^_\n]+)_`)
	slackCode = regexp.MustCompile("`([^`\n]+)`")
)

// mrkdwn renders the parts of Slack's mrkdwn the bridge uses (bold, italic,
// code, links) as HTML, escaping everything else.
func mrkdwn(s string) template.HTML {
	unescape := strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")
	style := func(t string) string {
		t = template.HTMLEscapeString(unescape.Replace(t))
		t = slackCode.ReplaceAllString(t, "<code>$1</code>")
		t = slackBold.ReplaceAllString(t, "<b>$1</b>")
		return slackItal.ReplaceAllString(t, "$1<i>$2</i>")
	}
	var b strings.Builder
	last := 0
	for _, m := range slackLink.FindAllStringSubmatchIndex(s, -1) {
		b.WriteString(style(s[last:m[0]]))
		target := unescape.Replace(s[m[2]:m[3]])
		label := target
		if m[4] >= 0 {
			label = s[m[4]:m[5]]
		}
		if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "mailto:") {
			b.WriteString(`<a href="` + template.HTMLEscapeString(target) + `">` + template.HTMLEscapeString(unescape.Replace(label)) + "</a>")
		} else {
			b.WriteString(template.HTMLEscapeString(label))
		}
		last = m[1]
	}
	b.WriteString(style(s[last:]))
	return template.HTML(b.String()) //nolint:gosec // every piece above is escaped
}

var uiTmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"mrkdwn": mrkdwn,
	"clock": func(ts string) string {
		sec, _, _ := strings.Cut(ts, ".")
		var n int64
		for _, c := range sec {
			n = n*10 + int64(c-'0')
		}
		return time.Unix(n, 0).Local().Format("15:04:05")
	},
}).ParseFS(uiFS, "ui/*.html"))

// uiBlock is a parent block reduced to what the page shows.
type uiBlock struct {
	Kind    string // header, text, fields, context, buttons
	Text    string
	Fields  []string
	Buttons []uiButton
}

type uiButton struct{ ActionID, Label, Style string }

type uiMessage struct {
	TS, Author, Text string
	Bot              bool
}

type uiThread struct {
	Parent  uiMessage
	Blocks  []uiBlock
	Replies []uiMessage
}

type uiAgent struct{ ID, Name string }

func textOf(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["text"].(string)
	return s
}

func uiBlocks(bs []map[string]any) []uiBlock {
	var out []uiBlock
	for _, b := range bs {
		switch b["type"] {
		case "header":
			out = append(out, uiBlock{Kind: "header", Text: textOf(b["text"])})
		case "section":
			ub := uiBlock{Kind: "text", Text: textOf(b["text"])}
			if fs, ok := b["fields"].([]any); ok {
				ub.Kind = "fields"
				for _, f := range fs {
					ub.Fields = append(ub.Fields, textOf(f))
				}
			}
			out = append(out, ub)
		case "context":
			var parts []string
			els, _ := b["elements"].([]any)
			for _, e := range els {
				parts = append(parts, textOf(e))
			}
			out = append(out, uiBlock{Kind: "context", Text: strings.Join(parts, " ")})
		case "actions":
			ub := uiBlock{Kind: "buttons"}
			els, _ := b["elements"].([]any)
			for _, e := range els {
				m, _ := e.(map[string]any)
				id, _ := m["action_id"].(string)
				style, _ := m["style"].(string)
				ub.Buttons = append(ub.Buttons, uiButton{ActionID: id, Label: textOf(m["text"]), Style: style})
			}
			out = append(out, ub)
		}
	}
	return out
}

// uiState is the channel as the page shows it, newest handoff first.
func (s *Server) uiState() ([]uiThread, []uiAgent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := func(m *Message) string {
		if m.BotID != "" {
			return s.users[BotUserID]
		}
		return s.users[m.User]
	}
	var threads []uiThread
	for _, p := range s.messages {
		if p.ThreadTS != "" || p.Deleted {
			continue
		}
		t := uiThread{Parent: uiMessage{TS: p.TS, Author: name(p), Text: p.Text, Bot: p.BotID != ""}, Blocks: uiBlocks(p.Blocks)}
		for _, r := range s.messages {
			if r.ThreadTS == p.TS && !r.Deleted {
				t.Replies = append(t.Replies, uiMessage{TS: r.TS, Author: name(r), Text: r.Text, Bot: r.BotID != ""})
			}
		}
		threads = append(threads, t)
	}
	slices.Reverse(threads)
	var agents []uiAgent
	for id, n := range s.users {
		if id != BotUserID {
			agents = append(agents, uiAgent{ID: id, Name: n})
		}
	}
	slices.SortFunc(agents, func(a, b uiAgent) int { return strings.Compare(a.Name, b.Name) })
	return threads, agents
}

// UIHandler serves the agent page: GET / (the page), GET /channel (the
// channel fragment the page refreshes), POST /reply and POST /click.
func (s *Server) UIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		threads, agents := s.uiState()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = uiTmpl.ExecuteTemplate(w, "page.html", map[string]any{"Threads": threads, "Agents": agents, "Channel": s.opts.Channel})
	})
	mux.HandleFunc("GET /channel", func(w http.ResponseWriter, r *http.Request) {
		threads, _ := s.uiState()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = uiTmpl.ExecuteTemplate(w, "channel.html", threads)
	})
	mux.HandleFunc("POST /reply", func(w http.ResponseWriter, r *http.Request) {
		user, ts, text := r.FormValue("agent"), r.FormValue("thread"), strings.TrimSpace(r.FormValue("text"))
		if text == "" || ts == "" {
			uiJSON(w, http.StatusBadRequest, "pick a thread and write something")
			return
		}
		p, err := s.Reply(user, ts, text)
		switch {
		case err != nil:
			uiJSON(w, http.StatusBadRequest, err.Error())
		case p.Status != http.StatusOK:
			uiJSON(w, http.StatusBadGateway, "the bridge answered the event with "+http.StatusText(p.Status)+"; Slack will retry it")
		default:
			uiJSON(w, http.StatusOK, "")
		}
	})
	mux.HandleFunc("POST /click", func(w http.ResponseWriter, r *http.Request) {
		code, err := s.Click(r.FormValue("agent"), r.FormValue("thread"), r.FormValue("action"))
		switch {
		case err != nil:
			uiJSON(w, http.StatusBadRequest, err.Error())
		case code != http.StatusOK:
			uiJSON(w, http.StatusBadGateway, "the bridge answered the button with "+http.StatusText(code))
		default:
			uiJSON(w, http.StatusOK, "")
		}
	})
	return mux
}

func uiJSON(w http.ResponseWriter, status int, errText string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": errText})
}
