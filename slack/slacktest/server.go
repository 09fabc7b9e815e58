package slacktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of a new Server.
const (
	DefaultToken         = "xoxb-0000000000-0000000000000-fakeslacktoken"
	DefaultSigningSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	DefaultChannel       = "C0HANDOFF1"
	DefaultTeam          = "T0HANDOFF1"
	DefaultApp           = "A0HANDOFF1"
	BotUserID            = "U0HANDOFFB"
	BotID                = "B0HANDOFF1"
)

// Options configure a Server.
type Options struct {
	Token         string
	SigningSecret string
	Channel       string // the one channel the bot is a member of
	// Private makes the channel a private channel: its message events carry
	// channel_type "group" and come only with the message.groups
	// subscription, reading it needs groups:history, and an app that is not
	// a member is told channel_not_found (a private channel does not exist
	// for non-members), where a public channel answers not_in_channel.
	Private bool
	// Scopes, when set, are the bot token's scopes: a method called without
	// the scope it needs answers missing_scope with "needed" (nil: every
	// scope the desk uses).
	Scopes []string
	// BotEvents, when set, are the app's bot event subscriptions: message
	// events are sent only for a subscribed type (message.channels or
	// message.groups; nil: both).
	BotEvents []string
	// AppToken is the app-level token (xapp-…) for Socket Mode
	// (default DefaultAppToken).
	AppToken string
	// RetryDelays are the waits before each retry of an event delivery that
	// failed (non-200, or no answer within 3 s). Slack documents three
	// retries: nearly immediately, after 1 minute, after 5 minutes (the
	// default); tests shorten them.
	RetryDelays []time.Duration
	// Now is the fake's clock (message ts, signature timestamps).
	Now func() time.Time
}

// Message is a message in the fake's channel.
type Message struct {
	TS       string
	ThreadTS string // "" for a top-level message
	User     string // the author's user id (BotUserID for the bridge)
	BotID    string // set for the bot's posts
	Text     string
	Blocks   []map[string]any
	Metadata map[string]any // {"event_type":…, "event_payload":…}
	Edited   string         // ts of the last edit
	Deleted  bool
}

// Delivery is one attempt to deliver an event to the bridge.
type Delivery struct {
	EventID string
	Attempt int // 0 first try, then the retry number
	Status  int // 0 when the request failed
	Err     string
}

// Server is a running fake Slack.
type Server struct {
	opts Options
	srv  *httptest.Server
	hc   *http.Client

	mu          sync.Mutex
	messages    []*Message
	users       map[string]string // id → display name
	member      bool
	faults      map[string][]string // method → error codes to answer, in order
	threadFault map[string]string   // parent ts → error code of every post into its thread
	retryAfter  int
	eventsURL   string
	interactURL string
	lastTS      time.Time
	deliveries  []Delivery
	calls       map[string]int
	bodies      map[string][]byte // event id → body, for Redeliver
	wg          sync.WaitGroup
	closed      chan struct{}

	// Socket Mode (socket.go)
	socketMode bool
	socks      map[int]*sockConn
	tickets    map[string]bool
	pending    map[string]chan struct{} // envelope id → closed on its ack
	sockSeq    int
	sockStats  SocketStats
}

// New starts a fake Slack.
func New(o Options) *Server {
	if o.Token == "" {
		o.Token = DefaultToken
	}
	if o.AppToken == "" {
		o.AppToken = DefaultAppToken
	}
	if o.SigningSecret == "" {
		o.SigningSecret = DefaultSigningSecret
	}
	if o.Channel == "" {
		o.Channel = DefaultChannel
	}
	if o.RetryDelays == nil {
		o.RetryDelays = []time.Duration{100 * time.Millisecond, time.Minute, 5 * time.Minute}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{opts: o, users: map[string]string{BotUserID: "Handoff"}, member: true, faults: map[string][]string{},
		retryAfter: 1, calls: map[string]int{}, bodies: map[string][]byte{}, threadFault: map[string]string{}, closed: make(chan struct{}), hc: &http.Client{Timeout: 3 * time.Second},
		socks: map[int]*sockConn{}, tickets: map[string]bool{}, pending: map[string]chan struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/{method}", s.serveAPI)
	mux.HandleFunc("GET /link/", s.serveLink)
	mux.Handle("/ui/", http.StripPrefix("/ui", s.UIHandler()))
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the Web API base URL (…/api/), for the client's APIURL.
func (s *Server) URL() string { return s.srv.URL + "/api/" }

// UIURL is the agent page: a Slack-like view of the support channel.
func (s *Server) UIURL() string { return s.srv.URL + "/ui/" }

// Close stops the fake and waits for event deliveries under way.
func (s *Server) Close() {
	close(s.closed)
	s.DropConnections()
	s.wg.Wait()
	s.srv.Close()
}

// Channel is the support channel's id.
func (s *Server) Channel() string { return s.opts.Channel }

// SigningSecret is what the fake signs its requests with.
func (s *Server) SigningSecret() string { return s.opts.SigningSecret }

// Token is the bot token the fake accepts.
func (s *Server) Token() string { return s.opts.Token }

// SetTargets points event and interactivity deliveries at the bridge (the
// app's Request URL and Interactivity Request URL).
func (s *Server) SetTargets(eventsURL, interactiveURL string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eventsURL, s.interactURL = eventsURL, interactiveURL
}

// AddUser adds a workspace member with a display name.
func (s *Server) AddUser(id, displayName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[id] = displayName
}

// SetMember adds the bot to the channel or removes it (then posts answer
// not_in_channel).
func (s *Server) SetMember(in bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.member = in
}

// Fail makes the next times calls of method (e.g. "chat.postMessage") fail
// with Slack's error code; "ratelimited" answers HTTP 429 with Retry-After.
func (s *Server) Fail(method, code string, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range times {
		s.faults[method] = append(s.faults[method], code)
	}
}

// FailThread makes every chat.postMessage into the thread of parent ts fail
// with Slack's error code (e.g. not_in_channel) until cleared with "".
func (s *Server) FailThread(ts, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == "" {
		delete(s.threadFault, ts)
		return
	}
	s.threadFault[ts] = code
}

// SetRetryAfter sets the Retry-After seconds of rate-limited answers.
func (s *Server) SetRetryAfter(sec int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryAfter = sec
}

// Calls returns how often each Web API method was called.
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.calls)
}

// Deliveries returns the event delivery attempts so far.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}

// Parents returns the bot's top-level messages (one per handoff), oldest first.
func (s *Server) Parents() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if m.ThreadTS == "" && m.BotID != "" && !m.Deleted {
			out = append(out, *m)
		}
	}
	return out
}

// Parent returns a top-level message by ts.
func (s *Server) Parent(ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.messages {
		if m.TS == ts && m.ThreadTS == "" {
			return *m, true
		}
	}
	return Message{}, false
}

// Thread returns the replies of the thread of parent ts (not the parent),
// oldest first.
func (s *Server) Thread(ts string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if m.ThreadTS == ts && m.TS != ts && !m.Deleted {
			out = append(out, *m)
		}
	}
	return out
}

// nextTS returns a new ts, strictly after every earlier one (Slack's ts is
// unique and ordered within a channel).
func (s *Server) nextTSLocked() string {
	now := s.opts.Now().UTC().Truncate(time.Microsecond)
	if !now.After(s.lastTS) {
		now = s.lastTS.Add(time.Microsecond)
	}
	s.lastTS = now
	return fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)
}

func (s *Server) findLocked(ts string) *Message {
	for _, m := range s.messages {
		if m.TS == ts {
			return m
		}
	}
	return nil
}

// api answers a Web API call: Slack answers 200 with "ok" false for errors,
// and 429 with Retry-After when rate limited.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := r.PathValue("method")
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	args := map[string]any{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &args); err != nil {
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_json"})
			return
		}
	} else {
		v, _ := url.ParseQuery(string(raw))
		for k := range v {
			args[k] = v.Get(k)
		}
	}
	for k, v := range r.URL.Query() {
		args[k] = v[0]
	}
	s.mu.Lock()
	s.calls[method]++
	var fault string
	if f := s.faults[method]; len(f) > 0 {
		fault, s.faults[method] = f[0], f[1:]
	}
	retryAfter := s.retryAfter
	s.mu.Unlock()
	token := s.opts.Token
	if method == "apps.connections.open" {
		token = s.opts.AppToken // an app-level token only
	}
	switch auth := r.Header.Get("Authorization"); {
	case auth != "Bearer "+token && (auth == "Bearer "+s.opts.Token || auth == "Bearer "+s.opts.AppToken):
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "not_allowed_token_type"})
		return
	case auth != "Bearer "+token:
		if r.Header.Get("Authorization") == "" && args["token"] == nil {
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "not_authed"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	case fault == "ratelimited":
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"ok": false, "error": "ratelimited"})
		return
	case fault != "":
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": fault})
		return
	}
	if need := s.scopeFor(method); need != "" {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "missing_scope", "needed": need, "provided": strings.Join(s.opts.Scopes, ",")})
		return
	}
	h, ok := s.methods()[method]
	if !ok {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "unknown_method"})
		return
	}
	out, code := h(args)
	if code != "" {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": code})
		return
	}
	out["ok"] = true
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func str(args map[string]any, k string) string {
	switch v := args[k].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

type apiMethod func(args map[string]any) (map[string]any, string)

func (s *Server) methods() map[string]apiMethod {
	return map[string]apiMethod{
		"apps.connections.open": s.appsConnectionsOpen,
		"auth.test":             s.authTest,
		"chat.postMessage":      s.postMessage,
		"chat.update":           s.update,
		"conversations.replies": s.replies,
		"conversations.history": s.history,
		"users.info":            s.userInfo,
	}
}

func (s *Server) authTest(map[string]any) (map[string]any, string) {
	return map[string]any{"url": "https://handoff-fake.slack.com/", "team": "Handoff Fake", "user": "handoff",
		"team_id": DefaultTeam, "user_id": BotUserID, "bot_id": BotID, "is_enterprise_install": false}, ""
}

// channelLocked checks the channel argument as Slack does for a bot.
func (s *Server) channelLocked(args map[string]any) string {
	switch ch := str(args, "channel"); {
	case ch == "":
		return "channel_not_found"
	case ch != s.opts.Channel:
		return "channel_not_found"
	case !s.member && s.opts.Private:
		return "channel_not_found"
	case !s.member:
		return "not_in_channel"
	}
	return ""
}

// channelType is the channel_type of the channel's message events.
func (s *Server) channelType() string {
	if s.opts.Private {
		return "group"
	}
	return "channel"
}

// historyScope is the scope reading the channel needs.
func (s *Server) historyScope() string {
	if s.opts.Private {
		return "groups:history"
	}
	return "channels:history"
}

// scopeFor returns the scope method needs that the token lacks, or "".
func (s *Server) scopeFor(method string) string {
	if s.opts.Scopes == nil {
		return ""
	}
	need := map[string]string{"chat.postMessage": "chat:write", "chat.update": "chat:write", "users.info": "users:read",
		"conversations.replies": s.historyScope(), "conversations.history": s.historyScope()}[method]
	if need == "" || slices.Contains(s.opts.Scopes, need) {
		return ""
	}
	return need
}

// subscribed reports whether the app gets message events of the channel.
func (s *Server) subscribed() bool {
	if s.opts.BotEvents == nil {
		return true
	}
	if s.opts.Private {
		return slices.Contains(s.opts.BotEvents, "message.groups")
	}
	return slices.Contains(s.opts.BotEvents, "message.channels")
}

func blocksOf(v any) []map[string]any {
	list, _ := v.([]any)
	var out []map[string]any
	for _, b := range list {
		if m, ok := b.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func (s *Server) postMessage(args map[string]any) (map[string]any, string) {
	s.mu.Lock()
	if code := s.channelLocked(args); code != "" {
		s.mu.Unlock()
		return nil, code
	}
	text, blocks := str(args, "text"), blocksOf(args["blocks"])
	if text == "" && len(blocks) == 0 {
		s.mu.Unlock()
		return nil, "no_text"
	}
	if code := s.threadFault[str(args, "thread_ts")]; code != "" && str(args, "thread_ts") != "" {
		s.mu.Unlock()
		return nil, code
	}
	m := &Message{TS: s.nextTSLocked(), ThreadTS: str(args, "thread_ts"), User: BotUserID, BotID: BotID, Text: text, Blocks: blocks}
	if md, ok := args["metadata"].(map[string]any); ok {
		m.Metadata = md
	}
	if m.ThreadTS != "" {
		if p := s.findLocked(m.ThreadTS); p == nil || p.ThreadTS != "" {
			// Slack posts a reply to an unknown thread_ts to the channel;
			// the bridge never does this, so the fake refuses it loudly.
			s.mu.Unlock()
			return nil, "thread_not_found"
		}
	}
	s.messages = append(s.messages, m)
	ev := s.messageEventLocked(m, "")
	answer := map[string]any{"channel": s.opts.Channel, "ts": m.TS, "message": s.wire(m)}
	s.mu.Unlock()
	s.sendAsync(ev)
	return answer, ""
}

func (s *Server) update(args map[string]any) (map[string]any, string) {
	s.mu.Lock()
	if code := s.channelLocked(args); code != "" {
		s.mu.Unlock()
		return nil, code
	}
	m := s.findLocked(str(args, "ts"))
	if m == nil || m.Deleted {
		s.mu.Unlock()
		return nil, "message_not_found"
	}
	if m.BotID != BotID {
		s.mu.Unlock()
		return nil, "cant_update_message"
	}
	prev := s.wire(m)
	if t := str(args, "text"); t != "" {
		m.Text = t
	}
	if b, ok := args["blocks"]; ok {
		m.Blocks = blocksOf(b)
	}
	m.Edited = s.nextTSLocked()
	ev := s.changedEventLocked(m, prev)
	s.mu.Unlock()
	s.sendAsync(ev)
	return map[string]any{"channel": s.opts.Channel, "ts": m.TS, "text": m.Text}, ""
}

func (s *Server) repliesLocked(ts string) int {
	n := 0
	for _, m := range s.messages {
		if m.ThreadTS == ts && !m.Deleted {
			n++
		}
	}
	return n
}

// wire renders m as Slack's API returns a message (the caller holds s.mu).
func (s *Server) wire(m *Message) map[string]any {
	out := map[string]any{"type": "message", "user": m.User, "text": m.Text, "ts": m.TS, "team": DefaultTeam}
	if m.ThreadTS != "" {
		out["thread_ts"] = m.ThreadTS
	} else if n := s.repliesLocked(m.TS); n > 0 {
		// A parent with replies carries its own ts as thread_ts.
		out["thread_ts"], out["reply_count"] = m.TS, n
	}
	if m.BotID != "" {
		out["bot_id"] = m.BotID
		out["app_id"] = DefaultApp
	}
	if len(m.Blocks) > 0 {
		out["blocks"] = m.Blocks
	}
	if m.Metadata != nil {
		out["metadata"] = m.Metadata
	}
	if m.Edited != "" {
		out["edited"] = map[string]any{"user": m.User, "ts": m.Edited}
	}
	return out
}

func (s *Server) replies(args map[string]any) (map[string]any, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.channelLocked(args); code != "" {
		return nil, code
	}
	p := s.findLocked(str(args, "ts"))
	if p == nil || p.Deleted {
		return nil, "thread_not_found"
	}
	withMeta := str(args, "include_all_metadata") == "true" || str(args, "include_all_metadata") == "1"
	root := p.TS
	if p.ThreadTS != "" {
		root = p.ThreadTS
	}
	var out []any
	for _, m := range s.messages {
		if (m.TS == root || m.ThreadTS == root) && !m.Deleted {
			w := s.wire(m)
			if !withMeta {
				delete(w, "metadata")
			}
			out = append(out, w)
		}
	}
	return map[string]any{"messages": out, "has_more": false, "response_metadata": map[string]any{"next_cursor": ""}}, ""
}

func (s *Server) history(args map[string]any) (map[string]any, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.channelLocked(args); code != "" {
		return nil, code
	}
	oldest, _ := strconv.ParseFloat(nonEmpty(str(args, "oldest"), "0"), 64)
	withMeta := str(args, "include_all_metadata") == "true" || str(args, "include_all_metadata") == "1"
	var out []any
	for i := len(s.messages) - 1; i >= 0; i-- { // newest first, as Slack lists history
		m := s.messages[i]
		ts, _ := strconv.ParseFloat(m.TS, 64)
		if m.ThreadTS != "" || m.Deleted || ts < oldest {
			continue
		}
		w := s.wire(m)
		if !withMeta {
			delete(w, "metadata")
		}
		out = append(out, w)
	}
	return map[string]any{"messages": out, "has_more": false, "response_metadata": map[string]any{"next_cursor": ""}}, ""
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (s *Server) userInfo(args map[string]any) (map[string]any, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := str(args, "user")
	name, ok := s.users[id]
	if !ok {
		return nil, "user_not_found"
	}
	handle := strings.ToLower(strings.ReplaceAll(name, " ", "."))
	return map[string]any{"user": map[string]any{"id": id, "team_id": DefaultTeam, "name": handle, "real_name": name,
		"is_bot": id == BotUserID, "profile": map[string]any{"display_name": name, "real_name": name}}}, ""
}

// post sends a signed request body to url and returns the status.
func (s *Server) post(ctx context.Context, target, ctype string, body []byte, retry int, reason string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	ts := s.opts.Now().Unix()
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", Sign(s.opts.SigningSecret, ts, body))
	req.Header.Set("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
	if retry > 0 {
		req.Header.Set("X-Slack-Retry-Num", strconv.Itoa(retry))
		req.Header.Set("X-Slack-Retry-Reason", reason)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
