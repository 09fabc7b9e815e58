package demoweb

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// Kinds of lines on the employee page.
const (
	kindUser   = "user"   // what the employee wrote or clicked
	kindBot    = "bot"    // the virtual assistant (Rasa)
	kindAgent  = "agent"  // the live agent (ServiceNow)
	kindNotice = "notice" // the bridge's own status lines, and desk system messages
)

// line is one entry of an employee's chat.
type line struct {
	Seq     int       `json:"seq"`
	Kind    string    `json:"kind"`
	Who     string    `json:"who,omitempty"` // the sender as the page names it
	Author  string    `json:"author,omitempty"`
	Text    string    `json:"text,omitempty"`
	Buttons []button  `json:"buttons,omitempty"`
	Image   string    `json:"image,omitempty"`
	At      time.Time `json:"at"`
	Time    string    `json:"time"`
	User    string    `json:"-"` // the employee, for the buttons' forms
	// Cont marks a card or image that continues the line before it (Teams
	// gets them as separate activities); the page shows no header for it.
	Cont bool `json:"cont,omitempty"`
	// Card holds an Adaptive Card's text blocks after the first (which is
	// Text), e.g. the status card's state; IsCard marks a card line.
	Card   []string `json:"card,omitempty"`
	IsCard bool     `json:"is_card,omitempty"`
	// Rev is the employee's update count when the bridge last replaced this
	// line's activity in place (the status card), 0 if never.
	Rev int `json:"rev,omitempty"`
	// submits holds each button's Action.Submit data as Teams would post it.
	submits []json.RawMessage
}

type button struct {
	Index int    `json:"index"`
	Title string `json:"title"`
}

// employee is one Teams user of the demo and the chat the page shows: what
// the user sent, merged in order with what the bridge sent to the Connector.
type employee struct {
	user  teamstest.User
	email string
	conv  string

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced when lines grow
	lines      []line
	seen       int            // Connector activities already read (messages and typing)
	updSeen    int            // Connector updates (PUT) already applied
	rev        int            // lines updated in place so far
	byActivity map[string]int // activity id → index in lines
	typingAt   time.Time      // the bridge's last typing indicator with no message after it
	used       map[int64]bool // stored messages already matched to a line
	lastKind   string
	lastAuthor string
	state      bridge.State
	agent      string // the agent of the current or last handoff
	checked    time.Time
	welcomed   bool
}

// employeeName cleans the ?user= parameter.
func (s *Server) employeeName(raw string) string {
	name := strings.Join(strings.Fields(raw), " ")
	if name == "" {
		return s.cfg.Employees[0]
	}
	if rs := []rune(name); len(rs) > 60 {
		name = string(rs[:60])
	}
	return name
}

// employee returns the employee called name, creating it on first use.
func (s *Server) employee(name string) *employee {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.employees[name]
	if !ok {
		u := teamstest.NewUser(name)
		e = &employee{user: u, email: emailOf(name), conv: s.cfg.Channel.ConversationID(u),
			changed: make(chan struct{}), used: map[int64]bool{}, byActivity: map[string]int{}}
		s.employees[name] = e
	}
	return e
}

// emailOf makes a plausible address: "Megan Bowen" → megan.bowen@contoso.example.
func emailOf(name string) string {
	var b strings.Builder
	for _, f := range strings.Fields(strings.ToLower(name)) {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for _, r := range f {
			if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
				b.WriteRune(r)
			}
		}
	}
	if b.Len() == 0 {
		b.WriteString("employee")
	}
	return b.String() + "@contoso.example"
}

// appendLocked adds l and wakes the pollers. Callers hold e.mu.
func (e *employee) appendLocked(l line) {
	if n := len(e.lines); n > 0 && l.Text == "" && l.Kind != kindUser {
		prev := e.lines[n-1]
		l.Cont = prev.Kind == l.Kind && prev.Author == l.Author && len(prev.Buttons) == 0
	}
	l.Seq = len(e.lines) + 1
	l.Time = l.At.Local().Format("15:04")
	l.User = e.user.Name
	switch l.Kind {
	case kindUser:
		l.Who = "You"
	case kindBot:
		l.Who = "IT Helpdesk · virtual assistant"
	case kindAgent:
		l.Who = cmp.Or(l.Author, "Live agent") + " · IT service desk"
	}
	e.lines = append(e.lines, l)
	close(e.changed)
	e.changed = make(chan struct{})
}

// sync turns what the Connector received for the employee since the last
// call into lines, applies the activity updates it accepted (the status card
// changing in place) to the lines they replace, notes typing indicators, and
// refreshes the session state at least every refresh.
// Each activity is matched with the stored message it came from to tell the
// bot, the agent and the bridge's notices apart (Teams shows them all as the
// bot's messages).
func (s *Server) sync(ctx context.Context, e *employee, refresh time.Duration) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	sent := s.cfg.Connector.Sent(e.conv)
	updates := s.cfg.Connector.Updates(e.conv)
	if len(sent) <= e.seen && len(updates) <= e.updSeen && time.Since(e.checked) < refresh {
		return nil
	}
	msgs, state, err := s.cfg.Bridge.Conversation(ctx, e.conv)
	if err != nil {
		return err
	}
	e.checked = time.Now()
	e.state = state
	for _, m := range msgs {
		if m.Source == bridge.SourceAgent && !m.System && m.Author != "" {
			e.agent = m.Author
		}
	}
	for _, a := range sent[min(e.seen, len(sent)):] {
		if a.Type == "typing" {
			e.typingAt = a.At
			continue
		}
		if a.Type != "message" {
			continue
		}
		e.typingAt = time.Time{}                // a message ends the typing indicator
		_, text, _ := teams.ReadMessage(a.Text) // the page shows who speaks itself
		l := line{At: a.At, Kind: e.lastKind, Author: e.lastAuthor, Text: text}
		if l.Kind == "" {
			l.Kind = kindBot
		}
		if text != "" {
			if m, ok := e.match(msgs, text); ok {
				l.Kind, l.Author = kindOf(m), m.Author
			}
		}
		readAttachments(&l, a.Attachments)
		e.lastKind, e.lastAuthor = l.Kind, l.Author
		if a.ID != "" {
			e.byActivity[a.ID] = len(e.lines)
		}
		e.appendLocked(l)
	}
	e.seen = len(sent)
	for _, u := range updates[min(e.updSeen, len(updates)):] {
		i, ok := e.byActivity[u.ID]
		if !ok {
			continue // replaced before it became a line: the line has the new content
		}
		l := &e.lines[i]
		_, l.Text, _ = teams.ReadMessage(u.Text)
		l.Buttons, l.submits, l.Card, l.Image = nil, nil, nil, ""
		readAttachments(l, u.Attachments)
		e.rev++
		l.Rev = e.rev
		close(e.changed)
		e.changed = make(chan struct{})
	}
	e.updSeen = len(updates)
	return nil
}

// readAttachments shows an activity's cards and images on l.
func readAttachments(l *line, atts []teamstest.SentAttachment) {
	for _, att := range atts {
		switch {
		case att.ContentType == "application/vnd.microsoft.card.adaptive":
			l.IsCard = true
			addCardButtons(l, att.Content)
		case strings.HasPrefix(att.ContentType, "image/"):
			l.Image = att.ContentURL
		}
	}
}

// match finds the stored message an activity's text came from: the oldest
// unmatched one with that text, else (for a long text Teams got in parts) one
// that starts with it.
func (e *employee) match(msgs []bridge.Message, text string) (bridge.Message, bool) {
	for _, m := range msgs {
		if m.Source != bridge.SourceUser && !e.used[m.ID] && m.Text == text {
			e.used[m.ID] = true
			return m, true
		}
	}
	prefix := []rune(strings.TrimSpace(text))
	prefix = prefix[:min(len(prefix), 40)]
	for _, m := range msgs {
		if m.Source != bridge.SourceUser && !e.used[m.ID] && len(prefix) > 0 && strings.HasPrefix(m.Text, string(prefix)) {
			e.used[m.ID] = true
			return m, true
		}
	}
	return bridge.Message{}, false
}

func kindOf(m bridge.Message) string {
	switch {
	case m.Source == bridge.SourceBridge, m.Source == bridge.SourceAgent && m.System:
		return kindNotice
	case m.Source == bridge.SourceAgent:
		return kindAgent
	}
	return kindBot
}

// addCardButtons reads an Adaptive Card: its first text block as the line's
// text (unless it has one), the others as Card, and its Action.Submit
// buttons.
func addCardButtons(l *line, content json.RawMessage) {
	var card struct {
		Body []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"body"`
		Actions []struct {
			Type  string          `json:"type"`
			Title string          `json:"title"`
			Data  json.RawMessage `json:"data"`
		} `json:"actions"`
	}
	if json.Unmarshal(content, &card) != nil {
		return
	}
	for _, b := range card.Body {
		switch {
		case b.Type != "TextBlock" || b.Text == "":
		case l.Text == "":
			l.Text = b.Text
		default:
			l.Card = append(l.Card, b.Text)
		}
	}
	for _, a := range card.Actions {
		if a.Type != "Action.Submit" {
			continue
		}
		l.Buttons = append(l.Buttons, button{Index: len(l.Buttons), Title: a.Title})
		data := a.Data
		if len(data) == 0 {
			data = json.RawMessage(`{}`)
		}
		l.submits = append(l.submits, data)
	}
}

// snapshot returns the lines after seq, the lines up to seq updated in place
// after rev, the latest rev, and the status.
func (e *employee) snapshot(after, rev int) (lines, updated []line, latest int, st status) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if after < len(e.lines) {
		lines = append(lines, e.lines[max(after, 0):]...)
	}
	for _, l := range e.lines[:min(max(after, 0), len(e.lines))] {
		if l.Rev > rev {
			updated = append(updated, l)
		}
	}
	return lines, updated, e.rev, e.statusLocked(time.Now())
}

// typingShown is how long the page shows a typing indicator without a new
// one: Teams clears it after about three seconds or with the next message.
const typingShown = 4 * time.Second

// status is the header of the employee page.
type status struct {
	State  string `json:"state"` // bot, queued, live, closing
	Label  string `json:"label"`
	Typing string `json:"typing"` // "Beth Anglin is typing…", or ""
}

func (e *employee) statusLocked(now time.Time) status {
	var st status
	switch e.state {
	case bridge.StateQueued:
		st = status{State: "queued", Label: "Waiting for a live agent…"}
	case bridge.StateLive:
		who := e.agent
		if who == "" {
			who = "a live agent"
		}
		st = status{State: "live", Label: "Chatting with " + who + " (IT service desk)"}
	case bridge.StateClosing:
		st = status{State: "closing", Label: "Ending the chat with the agent…"}
	default:
		st = status{State: "bot", Label: "Virtual assistant"}
	}
	if !e.typingAt.IsZero() && now.Sub(e.typingAt) < typingShown {
		st.Typing = cmp.Or(e.agent, "The agent") + " is typing…" // the bridge sends typing only for the agent
	}
	return st
}

// employeePage is the employee page's data.
type employeePage struct {
	Name   string
	Email  string
	Lines  []line
	After  int
	Rev    int
	Status status
	Others []string
}

func (s *Server) handleEmployee(w http.ResponseWriter, r *http.Request) {
	e := s.employee(s.employeeName(r.FormValue("user")))
	if installed, err := s.welcome(r.Context(), e); err != nil {
		s.log.Warn("demo: welcome failed", "err", err)
	} else if installed {
		// Show the welcome line with the page when it comes quickly.
		_, _ = s.cfg.Connector.WaitFor(e.conv, 1, 2*time.Second)
	}
	if err := s.sync(r.Context(), e, 0); err != nil {
		s.log.Warn("demo: read conversation", "err", err)
	}
	lines, _, rev, st := e.snapshot(0, 0)
	var others []string
	for _, n := range s.cfg.Employees {
		if n != e.user.Name {
			others = append(others, n)
		}
	}
	s.render(w, "employee.html", employeePage{Name: e.user.Name, Email: e.email, Lines: lines,
		After: len(lines), Rev: rev, Status: st, Others: others})
}

// welcome installs the app for a new employee, as Teams does when the user
// adds the bot: the bridge answers with its welcome line. It reports whether
// it did.
func (s *Server) welcome(ctx context.Context, e *employee) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.welcomed {
		return false, nil
	}
	e.welcomed = true
	msgs, _, err := s.cfg.Bridge.Conversation(ctx, e.conv)
	if err != nil || len(msgs) > 0 {
		return false, err
	}
	return true, s.post(ctx, e, s.cfg.Channel.ConversationUpdate(e.user))
}

// post sends a signed activity from e to the bridge's /api/messages. The
// sender carries the user's e-mail (userPrincipalName), as Teams payloads may.
func (s *Server) post(ctx context.Context, e *employee, a teamstest.Activity) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return err
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return err
	}
	if from, ok := obj["from"].(map[string]any); ok {
		from["userPrincipalName"] = e.email
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	code, err := s.cfg.Channel.PostRaw(ctx, body, teamstest.Bearer(s.cfg.Channel.Token(teamstest.TokenValid)))
	if err != nil {
		return fmt.Errorf("post to the bridge: %w", err)
	}
	if code/100 != 2 {
		return fmt.Errorf("the bridge answered %d to POST /api/messages", code)
	}
	return nil
}

// pollAnswer is what the employee page's script receives.
type pollAnswer struct {
	Lines   []line        `json:"lines"`
	HTML    string        `json:"html"` // the lines rendered with the page's template
	Updated []updatedLine `json:"updated"`
	Rev     int           `json:"rev"`
	Status  status        `json:"status"`
}

// updatedLine is a line shown before whose activity was replaced in place.
type updatedLine struct {
	Seq  int    `json:"seq"`
	HTML string `json:"html"`
}

// handleEmployeePoll is the page's long-poll: it answers once there are lines
// after ?after=, lines updated after ?rev=, or the state or typing indicator
// differs from ?state= and ?typing=, or after PollWait.
func (s *Server) handleEmployeePoll(w http.ResponseWriter, r *http.Request) {
	e := s.employee(s.employeeName(r.FormValue("user")))
	after, _ := strconv.Atoi(r.FormValue("after"))
	rev, _ := strconv.Atoi(r.FormValue("rev"))
	known, typing := r.FormValue("state"), r.FormValue("typing")
	ctx := r.Context()
	deadline := time.Now().Add(s.cfg.PollWait)
	for {
		if err := s.sync(ctx, e, 2*time.Second); err != nil && ctx.Err() == nil {
			s.log.Warn("demo: read conversation", "err", err)
		}
		e.mu.Lock()
		changed := e.changed
		e.mu.Unlock()
		lines, updated, latest, st := e.snapshot(after, rev)
		if len(lines) > 0 || len(updated) > 0 || st.State != known || st.Typing != typing || !time.Now().Before(deadline) {
			if lines == nil {
				lines = []line{}
			}
			var b strings.Builder
			for _, l := range lines {
				if err := s.tmpl.ExecuteTemplate(&b, "line", l); err != nil {
					fail(w, http.StatusInternalServerError, err.Error())
					return
				}
			}
			ans := pollAnswer{Lines: lines, HTML: b.String(), Updated: []updatedLine{}, Rev: latest, Status: st}
			for _, l := range updated {
				var u strings.Builder
				if err := s.tmpl.ExecuteTemplate(&u, "line", l); err != nil {
					fail(w, http.StatusInternalServerError, err.Error())
					return
				}
				ans.Updated = append(ans.Updated, updatedLine{Seq: l.Seq, HTML: u.String()})
			}
			writeJSON(w, http.StatusOK, ans)
			return
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// handleEmployeeTyping posts a typing activity from the employee, as Teams
// does while the user types; the bridge shows it to the agent where the
// desk can (the Virtual Agent API's TYPING).
func (s *Server) handleEmployeeTyping(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	if _, err := readForm(r, &req); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	e := s.employee(s.employeeName(req.User))
	if err := s.post(r.Context(), e, s.cfg.Channel.Typing(e.user)); err != nil {
		fail(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// sendRequest is a message or a button click from the page.
type sendRequest struct {
	User   string `json:"user"`
	Text   string `json:"text"`
	Seq    string `json:"seq"`    // with Button: the line whose card was clicked
	Button string `json:"button"` // the button's index
}

// handleEmployeeSend posts the employee's message or card submit to the
// bridge. A form post (no JavaScript) is answered with a redirect back.
func (s *Server) handleEmployeeSend(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	isJSON, err := readForm(r, &req)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	e := s.employee(s.employeeName(req.User))
	// Catch up first, so that the user's line lands after what Teams showed
	// before it was sent.
	if err := s.sync(r.Context(), e, 0); err != nil {
		s.log.Warn("demo: read conversation", "err", err)
	}
	var (
		act  teamstest.Activity
		show string
	)
	switch {
	case req.Button != "":
		seq, _ := strconv.Atoi(req.Seq)
		idx, _ := strconv.Atoi(req.Button)
		e.mu.Lock()
		var data json.RawMessage
		if seq >= 1 && seq <= len(e.lines) {
			l := e.lines[seq-1]
			if idx >= 0 && idx < len(l.submits) {
				data, show = l.submits[idx], l.Buttons[idx].Title
			}
		}
		e.mu.Unlock()
		if data == nil {
			fail(w, http.StatusBadRequest, "no such button")
			return
		}
		act = s.cfg.Channel.CardSubmit(e.user, data)
	case strings.TrimSpace(req.Text) != "":
		show = strings.TrimSpace(req.Text)
		if rs := []rune(show); len(rs) > 4000 {
			show = string(rs[:4000])
		}
		act = s.cfg.Channel.Message(e.user, show)
	default:
		fail(w, http.StatusBadRequest, "nothing to send")
		return
	}
	e.mu.Lock()
	e.appendLocked(line{Kind: kindUser, Author: e.user.Name, Text: show, At: time.Now()})
	e.mu.Unlock()
	if err := s.post(r.Context(), e, act); err != nil {
		s.log.Warn("demo: send to the bridge failed", "err", err)
		e.mu.Lock()
		e.appendLocked(line{Kind: kindNotice, Text: "Not delivered: " + err.Error(), At: time.Now()})
		e.mu.Unlock()
		if isJSON {
			fail(w, http.StatusBadGateway, err.Error())
			return
		}
	}
	if !isJSON {
		http.Redirect(w, r, "/employee?user="+url.QueryEscape(e.user.Name), http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}
