package rasatest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultVersion is the Rasa version the fake reports.
const DefaultVersion = "3.6.20"

// Options configures a Server.
type Options struct {
	// Token, when set, is required as ?token= by the HTTP API (/status and the
	// tracker endpoints), as with `rasa run --enable-api --auth-token`. The REST
	// channel is not protected by it, as in Rasa.
	Token string
	// Script is the bot. Nil: DefaultScript().
	Script *Script
	// Version is reported by /version and in error envelopes. Default
	// DefaultVersion.
	Version string
	// Now is the clock for event timestamps. Default time.Now.
	Now func() time.Time
}

// Stats counts the requests the fake received.
type Stats struct {
	Requests     int // every request
	Messages     int // POST /webhooks/rest/webhook
	TrackerReads int // GET /conversations/{id}/tracker
	EventAppends int // POST /conversations/{id}/tracker/events
	Unauthorized int // answered 401
	Faults       int // answered by FailNext
}

// Call is one request as received, for assertions on exact wire content.
type Call struct {
	Method string
	// Path is the raw (escaped) request path, which is what Rasa routes on.
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	Status int // the status the fake answered
}

// Server is a scripted fake Rasa 3.x server speaking the REST channel and the
// tracker HTTP API. It is safe for concurrent use. Like Rasa it processes one
// request at a time per conversation (here: one at a time overall).
type Server struct {
	opts Options
	ts   *httptest.Server
	done chan struct{}
	once sync.Once

	mu       sync.Mutex
	script   *compiled
	trackers map[string]*tracker
	stats    Stats
	calls    []Call
	failN    int
	failCode int
	latency  time.Duration
	process  time.Duration          // SetProcessingDelay
	convLock map[string]*sync.Mutex // Rasa's lock store: one message per conversation at a time
	msgSeq   int
}

// New starts a fake Rasa on a loopback port. It panics if opts.Script does not
// compile (use ParseScript or SetScript to get the error).
func New(opts Options) *Server {
	s := NewHandler(opts)
	s.ts = httptest.NewServer(s)
	return s
}

// NewHandler returns a fake that is not listening: serve it with any
// http.Server (URL and Close are then no-ops). It panics like New.
func NewHandler(opts Options) *Server {
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sc := DefaultScript()
	if opts.Script != nil {
		sc = *opts.Script
	}
	c, err := compile(sc)
	if err != nil {
		panic(err)
	}
	return &Server{opts: opts, done: make(chan struct{}), script: c, trackers: map[string]*tracker{}}
}

// URL is the base URL, e.g. "http://127.0.0.1:41234".
func (s *Server) URL() string {
	if s.ts == nil {
		return ""
	}
	return s.ts.URL
}

// Close stops the server, cutting short any injected latency.
func (s *Server) Close() {
	s.once.Do(func() { close(s.done) })
	if s.ts != nil {
		s.ts.Close()
	}
}

// SetScript replaces the bot's script; trackers are kept.
func (s *Server) SetScript(sc Script) error {
	c, err := compile(sc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.script = c
	s.mu.Unlock()
	return nil
}

// Tracker returns a copy of the conversation's state; false if Rasa has no
// tracker for it.
func (s *Server) Tracker(sender string) (Tracker, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.trackers[sender]
	if !ok {
		return Tracker{}, false
	}
	return t.public(), true
}

// Events returns a copy of every event of the conversation, oldest first.
func (s *Server) Events(sender string) []Event {
	t, _ := s.Tracker(sender)
	return t.Events
}

// Seed appends events to a conversation as POST .../tracker/events would
// (starting a session first on a new tracker). It returns the validation
// error Rasa would answer 400 with.
func (s *Server) Seed(sender string, events ...Event) error {
	list := make([]any, len(events))
	for i, e := range events {
		n, err := normalize(map[string]any(e))
		if err != nil {
			return err
		}
		list[i] = n
	}
	for _, e := range list {
		if err := validateEvent(e); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appendEvents(sender, list)
	return nil
}

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Calls returns the requests received so far, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		c.Query = cloneValues(c.Query)
		c.Header = c.Header.Clone()
		c.Body = bytes.Clone(c.Body)
		out[i] = c
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// FailNext makes the next n requests (of any kind) fail with status (500 if
// 0), answered with Rasa's error envelope and without touching any state.
func (s *Server) FailNext(n, status int) {
	if status == 0 {
		status = http.StatusInternalServerError
	}
	s.mu.Lock()
	s.failN, s.failCode = n, status
	s.mu.Unlock()
}

// SetLatency delays every answer by d (0 to stop).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// SetProcessingDelay makes every REST channel message take d to process (0
// to stop), as a slow custom action does. Like Rasa, the fake keeps
// processing when the client hangs up, handles one message per conversation
// at a time, and stores the message's events in the tracker only when it
// is done, just before answering.
func (s *Server) SetProcessingDelay(d time.Duration) {
	s.mu.Lock()
	s.process = d
	s.mu.Unlock()
}

// Reset forgets all conversations, counters, calls and injected faults.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trackers = map[string]*tracker{}
	s.stats = Stats{}
	s.calls = nil
	s.failN, s.failCode, s.latency, s.process = 0, 0, 0, 0
}

const maxBody = 10 << 20

// ServeHTTP routes like Rasa's Sanic app.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	path := r.URL.EscapedPath()

	s.mu.Lock()
	s.stats.Requests++
	latency := s.latency
	s.mu.Unlock()
	if latency > 0 {
		timer := time.NewTimer(latency)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return
		case <-s.done:
			timer.Stop()
			return
		}
	}

	defer func() {
		s.mu.Lock()
		s.calls = append(s.calls, Call{Method: r.Method, Path: path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body, Status: rec.status})
		s.mu.Unlock()
	}()

	s.mu.Lock()
	if s.failN > 0 {
		s.failN--
		s.stats.Faults++
		code := s.failCode
		s.mu.Unlock()
		reason := "ConversationError"
		if code != http.StatusInternalServerError {
			reason = strings.ReplaceAll(http.StatusText(code), " ", "")
		}
		s.rasaError(rec, code, reason, "An unexpected error occurred. Error: injected fault", nil)
		return
	}
	s.mu.Unlock()

	switch {
	case path == "/":
		if !s.method(rec, r, http.MethodGet) {
			return
		}
		rec.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(rec, "Hello from Rasa: "+s.opts.Version)
	case path == "/version":
		if s.method(rec, r, http.MethodGet) {
			writeJSON(rec, http.StatusOK, map[string]any{"version": s.opts.Version, "minimum_compatible_version": "3.5.0"})
		}
	case path == "/status":
		if s.method(rec, r, http.MethodGet) && s.auth(rec, r) {
			writeJSON(rec, http.StatusOK, map[string]any{"model_file": "20241120-090000-rasatest.tar.gz", "model_id": "rasatest", "num_active_training_jobs": 0})
		}
	case path == "/webhooks/rest" || path == "/webhooks/rest/":
		if s.method(rec, r, http.MethodGet) {
			writeJSON(rec, http.StatusOK, map[string]any{"status": "ok"})
		}
	case path == "/webhooks/rest/webhook":
		if s.method(rec, r, http.MethodPost) {
			s.webhook(rec, r, body)
		}
	case strings.HasPrefix(path, "/conversations/") && strings.HasSuffix(path, "/tracker/events") && len(path) > len("/conversations//tracker/events"):
		id := strings.TrimSuffix(strings.TrimPrefix(path, "/conversations/"), "/tracker/events")
		if s.method(rec, r, http.MethodPost) && s.auth(rec, r) {
			s.appendHandler(rec, r, id, body)
		}
	case strings.HasPrefix(path, "/conversations/") && strings.HasSuffix(path, "/tracker") && len(path) > len("/conversations//tracker"):
		id := strings.TrimSuffix(strings.TrimPrefix(path, "/conversations/"), "/tracker")
		if s.method(rec, r, http.MethodGet) && s.auth(rec, r) {
			s.trackerHandler(rec, r, id)
		}
	default:
		sanicError(rec, http.StatusNotFound, "Requested URL "+path+" not found")
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) method(w http.ResponseWriter, r *http.Request, want string) bool {
	if r.Method == want || (want == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	sanicError(w, http.StatusMethodNotAllowed, fmt.Sprintf("Method %s not allowed for URL %s", r.Method, r.URL.EscapedPath()))
	return false
}

// auth is Rasa's requires_auth with a token and without JWT.
func (s *Server) auth(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.Token == "" || r.URL.Query().Get("token") == s.opts.Token {
		return true
	}
	s.mu.Lock()
	s.stats.Unauthorized++
	s.mu.Unlock()
	s.rasaError(w, http.StatusUnauthorized, "NotAuthenticated", "User is not authenticated.", nil,
		"https://rasa.com/docs/rasa/user-guide/configuring-http-api/#security-considerations")
	return false
}

// rasaError writes Rasa's ErrorResponse envelope.
func (s *Server) rasaError(w http.ResponseWriter, status int, reason, message string, details map[string]any, help ...string) {
	if details == nil {
		details = map[string]any{}
	}
	var h any
	if len(help) > 0 {
		h = help[0]
	}
	writeJSON(w, status, map[string]any{
		"version": s.opts.Version,
		"status":  "failure",
		"message": message,
		"reason":  reason,
		"details": details,
		"help":    h,
		"code":    status,
	})
}

// sanicError writes Sanic's own JSON error (routing errors, unparsable JSON,
// unhandled exceptions), which is not Rasa's envelope.
func sanicError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]any{"description": http.StatusText(status), "status": status, "message": message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// parseJSON is Sanic's request.json: nil for an empty body, an error for a
// body that is not JSON (Rasa does not look at the Content-Type).
func parseJSON(body []byte) (any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	return v, nil
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request, body []byte) {
	v, err := parseJSON(body)
	if err != nil {
		sanicError(w, http.StatusBadRequest, "Failed when parsing body as json")
		return
	}
	req, ok := v.(map[string]any)
	if !ok {
		// req.json.get(...) on a non-dict raises: Sanic's generic 500.
		sanicError(w, http.StatusInternalServerError, "The server encountered an internal error and cannot complete your request.")
		return
	}
	sender := "default" // UserMessage.DEFAULT_SENDER_ID
	if sv, has := req["sender"]; has && sv != nil {
		sender = pyStr(sv)
	}
	text, isText := req["message"].(string)
	if !isText {
		// Rasa fails inside its try block and answers what was collected:
		// nothing.
		writeJSON(w, http.StatusOK, []any{})
		return
	}
	metadata, _ := req["metadata"].(map[string]any)

	s.mu.Lock()
	delay := s.process
	if s.convLock == nil {
		s.convLock = map[string]*sync.Mutex{}
	}
	lock, ok := s.convLock[sender]
	if !ok {
		lock = &sync.Mutex{}
		s.convLock[sender] = lock
	}
	s.mu.Unlock()
	lock.Lock()
	defer lock.Unlock()
	if delay > 0 {
		// Not cut short by the client hanging up: Rasa finishes the message.
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-s.done:
			timer.Stop()
			return
		}
	}

	s.mu.Lock()
	s.stats.Messages++
	out := s.handleMessage(sender, strings.TrimSpace(text), metadata)
	s.mu.Unlock()
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, out)
}

// pyStr is str() of a JSON value, close enough.
func pyStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool, nil:
		return pyRepr(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (s *Server) verbosity(w http.ResponseWriter, r *http.Request) (verbosity, bool) {
	raw := r.URL.Query().Get("include_events")
	if raw == "" {
		return verbosityAfterRestart, true
	}
	switch v := verbosity(strings.ToUpper(raw)); v {
	case verbosityNone, verbosityApplied, verbosityAfterRestart, verbosityAll:
		return v, true
	}
	s.rasaError(w, http.StatusBadRequest, "BadRequest",
		"Invalid parameter value for 'include_events'. Should be one of NONE, APPLIED, AFTER_RESTART, ALL",
		map[string]any{"parameter": "include_events", "in": "query"})
	return "", false
}

func (s *Server) trackerHandler(w http.ResponseWriter, r *http.Request, id string) {
	v, ok := s.verbosity(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	s.stats.TrackerReads++
	t := s.tracker(id) // Rasa's tracker store saves the new, empty tracker
	view := t
	if len(t.events) == 0 {
		// fetch_tracker_with_initial_session runs action_session_start on the
		// empty tracker but GET does not save it.
		view = t.clone()
		s.startSession(view)
	}
	state := view.state(v)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, state)
}

func (s *Server) appendHandler(w http.ResponseWriter, r *http.Request, id string, body []byte) {
	v, err := parseJSON(body)
	if err != nil {
		sanicError(w, http.StatusBadRequest, "Failed when parsing body as json")
		return
	}
	list, isList := v.([]any)
	if !isList {
		list = []any{v}
	}
	for _, e := range list {
		if err := validateEvent(e); err != nil {
			s.rasaError(w, http.StatusBadRequest, "BadRequest",
				"Failed to validate the events format. For more information about the format visit the docs. Error: "+err.Error(),
				nil, "https://rasa.com/docs/rasa/pages/http-api")
			return
		}
	}
	verb, ok := s.verbosity(w, r)
	if !ok {
		return
	}
	for _, e := range list {
		m := e.(map[string]any)
		if m["event"] == "action" && m["name"] == nil && m["action_text"] == nil {
			s.rasaError(w, http.StatusInternalServerError, "ConversationError",
				"An unexpected error occurred. Error: Both the name of the action and the end-to-end predicted text are missing. The `ActionExecuted` event cannot be initialised.", nil)
			return
		}
	}
	s.mu.Lock()
	s.stats.EventAppends++
	t := s.appendEvents(id, list)
	state := t.state(verb)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, state)
}

// appendEvents is update_conversation_with_events. Caller holds s.mu.
func (s *Server) appendEvents(id string, list []any) *tracker {
	t := s.tracker(id)
	if len(t.events) == 0 && !beginsWithSessionStart(list) {
		s.startSession(t)
	}
	for _, e := range list {
		ev := Event(deepCopy(e).(map[string]any))
		if _, has := ev["timestamp"]; !has || ev["timestamp"] == nil {
			ev["timestamp"] = s.timestamp()
		}
		t.add(ev, s.script.slots)
		if ev.Name() == "restart" {
			t.fallbacks = 0
		}
	}
	return t
}

func beginsWithSessionStart(list []any) bool {
	if len(list) < 2 {
		return false
	}
	a, _ := list[0].(map[string]any)
	b, _ := list[1].(map[string]any)
	return a["event"] == "action" && a["name"] == "action_session_start" && b["event"] == "session_started"
}

// tracker returns the conversation's tracker, creating it. Caller holds s.mu.
func (s *Server) tracker(id string) *tracker {
	t, ok := s.trackers[id]
	if !ok {
		t = newTracker(id, s.script.slots)
		s.trackers[id] = t
	}
	return t
}

// timestamp is an event timestamp: Unix seconds as a float.
func (s *Server) timestamp() float64 {
	return float64(s.opts.Now().UnixMicro()) / 1e6
}

func (s *Server) event(fields map[string]any) Event {
	e := Event{"timestamp": s.timestamp()}
	for k, v := range fields {
		e[k] = v
	}
	n, err := normalize(map[string]any(e))
	if err != nil {
		panic(err) // the fake only builds JSON values
	}
	return Event(n.(map[string]any))
}

func (s *Server) actionEvent(name string, policy any, confidence any) Event {
	return s.event(map[string]any{"event": "action", "name": name, "policy": policy, "confidence": confidence, "action_text": nil, "hide_rule_turn": false})
}

// startSession is the default action_session_start: session_started, the
// carried-over slots, action_listen. Caller holds s.mu.
func (s *Server) startSession(t *tracker) {
	carried := map[string]any{}
	for k, v := range t.slots {
		if init, ok := s.script.slots[k]; ok && !jsonEqual(init, v) {
			carried[k] = v
		}
	}
	t.add(s.actionEvent("action_session_start", nil, 1.0), s.script.slots)
	t.add(s.event(map[string]any{"event": "session_started"}), s.script.slots)
	for _, k := range sortedKeys(carried) {
		t.add(s.event(map[string]any{"event": "slot", "name": k, "value": carried[k]}), s.script.slots)
	}
	t.add(s.actionEvent("action_listen", nil, nil), s.script.slots)
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// handleMessage runs one user message through the script, recording events
// like Rasa's MessageProcessor, and returns the REST channel messages. Caller
// holds s.mu.
func (s *Server) handleMessage(sender, text string, metadata map[string]any) []map[string]any {
	t := s.tracker(sender)
	if len(t.applied()) == 0 {
		// No applied events: a new tracker or one just restarted.
		s.startSession(t)
	}
	sc := s.script
	res := sc.parse(text)
	s.msgSeq++
	msgID := fmt.Sprintf("%032x", s.msgSeq)
	if metadata == nil {
		metadata = map[string]any{}
	}
	ranking := make([]any, len(res.ranking))
	for i, r := range res.ranking {
		ranking[i] = r
	}
	parseData := map[string]any{
		"intent":         map[string]any{"name": res.intent, "confidence": res.confidence},
		"entities":       []any{},
		"text":           text,
		"message_id":     msgID,
		"metadata":       metadata,
		"intent_ranking": ranking,
	}
	t.add(s.event(map[string]any{"event": "user", "metadata": metadata, "text": text, "parse_data": parseData, "input_channel": "rest", "message_id": msgID}), sc.slots)

	if res.intent == restartIntent {
		t.add(s.actionEvent("action_restart", "RulePolicy", 1.0), sc.slots)
		t.add(s.event(map[string]any{"event": "restart"}), sc.slots)
		t.fallbacks = 0
		s.startSession(t)
		return nil
	}
	if t.paused {
		// A paused tracker logs the message but predicts no action.
		return nil
	}
	t.add(s.event(map[string]any{"event": "user_featurization", "use_text_for_featurization": false}), sc.slots)

	var (
		action  string
		replies []Reply
		handoff *Handoff
		slots   map[string]any
		loop    string
	)
	if r := res.rule; r != nil {
		t.fallbacks = 0
		action, replies, handoff, slots, loop = r.Action, r.Replies, r.Handoff, r.SetSlots, r.ActiveLoop
	} else {
		t.fallbacks++
		action, replies = sc.fallback.Action, sc.fallback.Replies
		if sc.fallback.HandoffAfter > 0 && t.fallbacks >= sc.fallback.HandoffAfter {
			h := sc.fallback.Handoff
			replies, handoff = sc.fallback.HandoffReplies, &h
			t.fallbacks = 0
		}
	}

	var out []map[string]any
	t.add(s.actionEvent(action, "RulePolicy", 1.0), sc.slots)
	var botMeta map[string]any
	if strings.HasPrefix(action, "utter_") {
		botMeta = map[string]any{"utter_action": action}
	}
	for _, rp := range replies {
		out = append(out, restMessages(sender, rp)...)
		t.add(s.botEvent(rp, botMeta), sc.slots)
	}
	if handoff != nil {
		payload := map[string]any{"reason": handoff.Reason}
		if handoff.Queue != "" {
			payload["queue"] = handoff.Queue
		}
		rp := Reply{Custom: map[string]any{"handoff": payload}}
		out = append(out, restMessages(sender, rp)...)
		t.add(s.botEvent(rp, nil), sc.slots)
		t.add(s.event(map[string]any{"event": "slot", "name": sc.handoffSlot, "value": true}), sc.slots)
	}
	for _, k := range sortedKeys(slots) {
		t.add(s.event(map[string]any{"event": "slot", "name": k, "value": slots[k]}), sc.slots)
	}
	if loop != "" {
		t.add(s.event(map[string]any{"event": "active_loop", "name": loop}), sc.slots)
	}
	t.add(s.actionEvent("action_listen", "RulePolicy", 1.0), sc.slots)
	return out
}

func (s *Server) botEvent(rp Reply, metadata map[string]any) Event {
	var text, image, buttons any
	if rp.Text != "" {
		text = rp.Text
	}
	if rp.Image != "" {
		image = rp.Image
	}
	if len(rp.Buttons) > 0 {
		buttons = rp.Buttons
	}
	e := map[string]any{
		"event": "bot",
		"text":  text,
		"data": map[string]any{
			"elements": nil, "quick_replies": nil, "buttons": buttons,
			"attachment": rp.Attachment, "image": image, "custom": rp.Custom,
		},
	}
	if metadata != nil {
		e["metadata"] = metadata
	}
	return s.event(e)
}

// restMessages is OutputChannel.send_response into a CollectingOutputChannel.
func restMessages(recipient string, rp Reply) []map[string]any {
	var out []map[string]any
	msg := func(kv ...any) map[string]any {
		m := map[string]any{"recipient_id": recipient}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	switch {
	case len(rp.Buttons) > 0:
		if rp.Text == "" {
			out = append(out, msg("buttons", rp.Buttons))
		} else {
			out = append(out, msg("text", rp.Text, "buttons", rp.Buttons))
		}
	case rp.Text != "":
		for _, part := range strings.Split(strings.TrimSpace(rp.Text), "\n\n") {
			out = append(out, msg("text", part))
		}
	}
	if truthy(rp.Custom) {
		out = append(out, msg("custom", rp.Custom))
	}
	if rp.Image != "" {
		out = append(out, msg("image", rp.Image))
	}
	if truthy(rp.Attachment) {
		out = append(out, msg("attachment", rp.Attachment))
	}
	return out
}

// truthy is Python's truth value of a JSON value.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}
