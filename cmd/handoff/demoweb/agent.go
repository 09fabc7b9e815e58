package demoweb

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// deskClient calls the fake ServiceNow instance's HTTP API as an agent, the
// way the agent's browser would.
type deskClient struct {
	base string
	hc   *http.Client
}

// deskError is an error answer of the instance.
type deskError struct {
	Status  int
	Message string
	Detail  string
}

func (e *deskError) Error() string {
	msg := fmt.Sprintf("ServiceNow answered %d", e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// call sends one request as agent a and decodes the "result" into out.
func (d *deskClient) call(ctx context.Context, a Agent, method, path string, query url.Values, body, out any) error {
	u := d.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(a.User, a.Password)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("call ServiceNow: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("read ServiceNow's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var env struct {
			Error struct {
				Message string `json:"message"`
				Detail  string `json:"detail"`
			} `json:"error"`
		}
		_ = json.Unmarshal(raw, &env)
		return &deskError{Status: resp.StatusCode, Message: env.Error.Message, Detail: env.Error.Detail}
	}
	if out == nil {
		return nil
	}
	env := struct {
		Result any `json:"result"`
	}{Result: out}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("decode ServiceNow's answer: %w", err)
	}
	return nil
}

// field is a Table API value read with sysparm_display_value=all.
type field struct {
	Value   string `json:"value"`
	Display string `json:"display_value"`
}

type record map[string]field

// console is what the agent console shows.
type console struct {
	Version uint64     `json:"version"`
	Agent   string     `json:"agent"`
	User    string     `json:"user"`
	Waiting []queued   `json:"waiting"`
	Chats   []deskChat `json:"chats"`
}

// queued is a chat waiting for an agent.
type queued struct {
	Group     string `json:"group"`
	Number    string `json:"number"`
	Position  int    `json:"position"`
	Opened    string `json:"opened"`
	Requester string `json:"requester"`
	Reason    string `json:"reason"`
	Context   string `json:"context"`
}

// deskChat is a chat the agent accepted.
type deskChat struct {
	Group     string     `json:"group"`
	Number    string     `json:"number"`
	State     string     `json:"state"`
	Open      bool       `json:"open"`
	Requester string     `json:"requester"`
	Reason    string     `json:"reason"`
	Context   string     `json:"context"`
	Messages  []deskLine `json:"messages"`
	Typing    string     `json:"typing,omitempty"` // "Megan Bowen is typing…" (Virtual Agent chats)
}

// userTypingShown is how long the console shows the user typing after the
// latest TYPING with no VIEWING or message after it.
const userTypingShown = 6 * time.Second

// deskLine is a message of a chat after the opening one.
type deskLine struct {
	Kind   string `json:"kind"` // requester, agent, system
	Author string `json:"author"`
	Text   string `json:"text"`
	Time   string `json:"time"`
}

// maxClosed is how many closed chats the console keeps showing.
const maxClosed = 5

// agentFor picks the agent named by ?agent= (user or display name).
func (s *Server) agentFor(name string) Agent {
	for _, a := range s.cfg.Agents {
		if strings.EqualFold(a.User, name) || strings.EqualFold(a.Name, name) {
			return a
		}
	}
	return s.cfg.Agents[0]
}

// consoleState reads the queue and the agent's chats through the Table API.
func (s *Server) consoleState(ctx context.Context, a Agent) (console, error) {
	c := console{Version: s.cfg.Desk.Version(), Agent: a.Name, User: a.User, Waiting: []queued{}, Chats: []deskChat{}}
	var entries []record
	err := s.desk.call(ctx, a, http.MethodGet, "/api/now/table/chat_queue_entry", url.Values{
		"sysparm_query":                  {"ORDERBYsys_created_on"},
		"sysparm_fields":                 {"sys_id,number,group,queue,state,assigned_to,position,sys_created_on,sys_created_by,sys_updated_on"},
		"sysparm_display_value":          {"all"},
		"sysparm_exclude_reference_link": {"true"},
	}, nil, &entries)
	if err != nil {
		return c, fmt.Errorf("read the queue: %w", err)
	}
	var mine, waiting []record
	for _, e := range entries {
		switch {
		case e["state"].Value == "1" && e["queue"].Value == s.cfg.Queue:
			waiting = append(waiting, e)
		case e["assigned_to"].Display == a.Name:
			mine = append(mine, e)
		}
	}
	// Open chats first, oldest first; then the newest closed ones.
	var open, closed []record
	for _, e := range mine {
		if e["state"].Value == "2" {
			open = append(open, e)
		} else {
			closed = append(closed, e)
		}
	}
	slices.SortStableFunc(closed, func(x, y record) int { return strings.Compare(y["sys_updated_on"].Value, x["sys_updated_on"].Value) })
	mine = append(open, closed[:min(len(closed), maxClosed)]...)

	groups := make([]string, 0, len(waiting)+len(mine))
	for _, e := range append(slices.Clone(waiting), mine...) {
		groups = append(groups, e["group"].Value)
	}
	byGroup := map[string][]record{}
	if len(groups) > 0 {
		var msgs []record
		err := s.desk.call(ctx, a, http.MethodGet, "/api/now/table/live_message", url.Values{
			"sysparm_query":                  {"groupIN" + strings.Join(groups, ",") + "^ORDERBYsys_created_on"},
			"sysparm_fields":                 {"sys_id,group,message,profile,sys_created_on,sys_created_by"},
			"sysparm_display_value":          {"all"},
			"sysparm_exclude_reference_link": {"true"},
		}, nil, &msgs)
		if err != nil {
			return c, fmt.Errorf("read the messages: %w", err)
		}
		for _, m := range msgs {
			g := m["group"].Value
			byGroup[g] = append(byGroup[g], m)
		}
	}
	for _, e := range waiting {
		msgs := byGroup[e["group"].Value]
		q := queued{Group: e["group"].Value, Number: e["number"].Value, Opened: clockOf(e["sys_created_on"].Value)}
		q.Position, _ = strconv.Atoi(e["position"].Value)
		if len(msgs) > 0 {
			q.Context = msgs[0]["message"].Value
			q.Requester, q.Reason = contextFacts(q.Context)
		}
		c.Waiting = append(c.Waiting, q)
	}
	for _, e := range mine {
		msgs := byGroup[e["group"].Value]
		ch := deskChat{Group: e["group"].Value, Number: e["number"].Value, State: e["state"].Display,
			Open: e["state"].Value == "2", Messages: []deskLine{}}
		if len(msgs) > 0 {
			ch.Context = msgs[0]["message"].Value
			ch.Requester, ch.Reason = contextFacts(ch.Context)
			for _, m := range msgs[1:] {
				l := deskLine{Author: m["profile"].Display, Text: m["message"].Value, Time: clockOf(m["sys_created_on"].Value), Kind: "agent"}
				switch m["sys_created_by"].Value {
				case "system":
					l.Kind, l.Author = "system", "System"
				case e["sys_created_by"].Value:
					l.Kind = "requester"
					if ch.Requester != "" {
						l.Author = ch.Requester + " (via Teams)"
					}
				}
				ch.Messages = append(ch.Messages, l)
			}
		}
		if conv, ok := s.cfg.Desk.VAConversation(ch.Group); ok && ch.Open && !conv.UserTypingAt.IsZero() &&
			s.cfg.Desk.Now().Sub(conv.UserTypingAt) < userTypingShown {
			ch.Typing = cmp.Or(ch.Requester, "The user") + " is typing…"
		}
		c.Chats = append(c.Chats, ch)
	}
	return c, nil
}

// contextFacts reads the employee and the reason from the bridge's opening
// message ("User: Megan Bowen <…>", "Reason for handoff: user_asked").
func contextFacts(text string) (user, reason string) {
	for l := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(l, "User: "); ok && user == "" {
			user, _, _ = strings.Cut(v, " <")
		}
		if v, ok := strings.CutPrefix(l, "Reason for handoff: "); ok && reason == "" {
			reason = v
		}
	}
	return strings.TrimSpace(user), strings.TrimSpace(reason)
}

// clockOf turns a ServiceNow UTC date-time into local hh:mm.
func clockOf(s string) string {
	t, err := time.ParseInLocation("2006-01-02 15:04:05", s, time.UTC)
	if err != nil {
		return ""
	}
	return t.Local().Format("15:04")
}

// agentPage is the console page's data.
type agentPage struct {
	Console console
	Agents  []Agent
	Error   string
}

func (s *Server) handleAgent(w http.ResponseWriter, r *http.Request) {
	a := s.agentFor(r.FormValue("agent"))
	c, err := s.consoleState(r.Context(), a)
	p := agentPage{Console: c, Agents: s.cfg.Agents}
	if err != nil {
		p.Error = err.Error()
	}
	s.render(w, "agent.html", p)
}

// handleAgentState is the console's long-poll: given ?v=, it answers once the
// instance changed after that version (or after PollWait); without it, at
// once.
func (s *Server) handleAgentState(w http.ResponseWriter, r *http.Request) {
	a := s.agentFor(r.FormValue("agent"))
	if v, err := strconv.ParseUint(r.FormValue("v"), 10, 64); err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PollWait)
		_, err := s.cfg.Desk.WaitChange(ctx, v)
		cancel()
		if r.Context().Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			fail(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	c, err := s.consoleState(r.Context(), a)
	if err != nil {
		fail(w, http.StatusBadGateway, err.Error())
		return
	}
	ans := consoleAnswer{console: c}
	for name, dst := range map[string]*string{"queue": &ans.QueueHTML, "chats": &ans.ChatsHTML} {
		var b strings.Builder
		if err := s.tmpl.ExecuteTemplate(&b, name, c); err != nil {
			fail(w, http.StatusInternalServerError, err.Error())
			return
		}
		*dst = b.String()
	}
	writeJSON(w, http.StatusOK, ans)
}

// consoleAnswer is the console state with its parts rendered by the page's
// templates.
type consoleAnswer struct {
	console
	QueueHTML string `json:"queue_html"`
	ChatsHTML string `json:"chats_html"`
}

// actionRequest is a console action.
type actionRequest struct {
	Agent string `json:"agent"`
	Group string `json:"group"`
	Text  string `json:"text"`
}

// agentAction runs one console action as the agent through the instance's
// API. A form post (no JavaScript) is answered with a redirect back.
func (s *Server) agentAction(w http.ResponseWriter, r *http.Request, do func(ctx context.Context, a Agent, req actionRequest) error) {
	var req actionRequest
	isJSON, err := readForm(r, &req)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Group == "" || strings.ContainsAny(req.Group, "/?#%") {
		fail(w, http.StatusBadRequest, "a chat (group) is required")
		return
	}
	a := s.agentFor(req.Agent)
	if err := do(r.Context(), a, req); err != nil {
		status := http.StatusBadGateway
		var de *deskError
		if errors.As(err, &de) {
			status = de.Status
		}
		if isJSON {
			fail(w, status, err.Error())
			return
		}
		http.Error(w, err.Error(), status)
		return
	}
	if !isJSON {
		http.Redirect(w, r, "/agent?agent="+url.QueryEscape(a.User), http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) handleAgentAccept(w http.ResponseWriter, r *http.Request) {
	s.agentAction(w, r, func(ctx context.Context, a Agent, req actionRequest) error {
		return s.desk.call(ctx, a, http.MethodPost, "/api/now/connect/support/queues/"+url.PathEscape(s.cfg.Queue)+"/accept",
			nil, map[string]string{"group": req.Group}, nil)
	})
}

func (s *Server) handleAgentSay(w http.ResponseWriter, r *http.Request) {
	s.agentAction(w, r, func(ctx context.Context, a Agent, req actionRequest) error {
		text := strings.TrimSpace(req.Text)
		if text == "" {
			return &deskError{Status: http.StatusBadRequest, Message: "Message is required"}
		}
		return s.desk.call(ctx, a, http.MethodPost, "/api/now/connect/conversations/"+req.Group+"/messages",
			nil, map[string]string{"message": text}, nil)
	})
}

// handleAgentTyping shows the employee that the agent is typing. Agent
// Workspace sends this over its own channel, not a REST API, so the console
// asks the fake instance directly; the instance turns it into the Virtual
// Agent API's StartTypingIndicator callback. Connect Support has no typing
// signal: for its chats this does nothing.
func (s *Server) handleAgentTyping(w http.ResponseWriter, r *http.Request) {
	s.agentAction(w, r, func(ctx context.Context, a Agent, req actionRequest) error {
		if _, ok := s.cfg.Desk.VAConversation(req.Group); !ok {
			return nil
		}
		if err := s.cfg.Desk.AgentTyping(req.Group); err != nil {
			return &deskError{Status: http.StatusConflict, Message: err.Error()}
		}
		return nil
	})
}

func (s *Server) handleAgentClose(w http.ResponseWriter, r *http.Request) {
	s.agentAction(w, r, func(ctx context.Context, a Agent, req actionRequest) error {
		return s.desk.call(ctx, a, http.MethodPost, "/api/now/connect/support/sessions/"+req.Group+"/close",
			nil, map[string]bool{"agent_leave": false}, nil)
	})
}
