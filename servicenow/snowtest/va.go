package snowtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"time"
)

// Virtual Agent mode: the Bot Integration API at
// POST /api/sn_va_as_service/bot/integration (reference/servicenow.md §2).
//
// The endpoint answers {"status":"success"} at once and does the work
// afterwards; what the agent side does reaches the bridge by callbacks POSTed
// asynchronously, one after the other per conversation, to the configured URL
// with the configured headers and the conversation's clientVariables echoed.
//
//   - Transport auth: Basic or Bearer like every API (401 otherwise), unless
//     VAOptions.AllowAnonymous.
//   - Message auth: the static token (the "token" header, else a "token" body
//     field) or x-b2b-signature (hex HMAC-SHA1 of JSON.stringify(JSON.parse(body)),
//     the documented recipe, not of the raw bytes). As on a real
//     instance, a request failing it is answered 200 and silently dropped; it
//     is listed in VALog.
//   - Malformed JSON, a missing requestId or userId, an END_CONVERSATION with
//     message text, an UPDATE_MESSAGES without a message list or with an
//     unknown status, and an unknown action answer 400 with the error
//     envelope.
//
// AGENT opens a chat in VAOptions.Queue (the agents' Accept, Say, CloseChat,
// LeaveChat, Transfer work on it as on any chat). Its first message shows the
// history and the handoff message; the callback says "Please stand by…" and
// starts the wait-time spinner (waitTime "<n> Seconds", as bot-api.md's
// example and recorded/va_spinner_callback.json: the chat's place in the queue
// times VAOptions.WaitPerPosition; the API has no position field). Then:
//
//	Accept       → ActionMsg SwitchToLiveAgent, System "<Agent> has entered the chat.",
//	               then the greeting as OutputText with agentInfo
//	Say          → OutputText with agentInfo (sentFromAgent true) and messageId
//	AgentTyping  → ActionMsg StartTypingIndicator
//	Transfer     → System "<From> transferred the chat to <To>"
//	CloseChat    → System "<Agent> has closed the support session.", then
//	               SwitchToVirtualAgent with completed:true
//	LeaveChat    → System "<Agent> has left the support session.", then the same
//	VAIdleTimeout→ System "It seems you have left the conversation…", then the same
//	END_CONVERSATION (from the bridge) → OutputText "The conversation has ended…"
//	               with completed:true
//
// User messages (no action) are added to the chat as the calling user's;
// TYPING/VIEWING and UPDATE_MESSAGES are recorded (VAConversation).

// VA defaults.
const (
	DefaultVAStandBy  = "Please stand by while I connect you to a live agent."
	DefaultVASpinner  = "Routing you to a live agent..."
	DefaultVAEnded    = "The conversation has ended. If you need help again, type hi."
	DefaultVAIdleText = "It seems you have left the conversation. This chat has been closed."
)

// VAOptions configures Virtual Agent mode.
type VAOptions struct {
	// Token is the static message-auth token; Secret the hash token's key.
	// At least one must be set for requests to be processed.
	Token  string
	Secret string
	// AllowAnonymous accepts requests without Basic/Bearer credentials (the
	// Scripted REST API set to not require authentication).
	AllowAnonymous bool
	// CallbackURL receives the callbacks; CallbackHeaders (at most 10, as in
	// sn_va_as_service_outbound_configuration) are sent with each.
	CallbackURL     string
	CallbackHeaders map[string]string
	// Timeout is the outbound connection's timeout. Default 5 s.
	Timeout time.Duration
	// Queue is the queue VA chats wait in. Default DefaultQueue.
	Queue string
	// WaitPerPosition is the spinner's estimated wait per place in the queue.
	// Default 2 minutes.
	WaitPerPosition time.Duration
	// UpdateMessagesDisabled makes UPDATE_MESSAGES fail with 400, as on an
	// instance whose custom adapter lacks the third_party_chat property.
	UpdateMessagesDisabled bool
}

// VAUpdate is one UPDATE_MESSAGES entry the instance received.
type VAUpdate struct {
	ID     string
	Status string
}

// VAHistory is one history entry of an AGENT request.
type VAHistory struct {
	DisplayName  string `json:"displayName"`
	IsBotMessage bool   `json:"isBotMessage"`
	Timestamp    string `json:"timestamp"`
	Type         string `json:"type"`
	Value        string `json:"value"`
}

// VAConversation is a snapshot of a VA conversation.
type VAConversation struct {
	ClientSessionID  string
	Group            string // the chat (Chat.Group)
	UserID           string
	EmailID          string
	LastEmailID      string // emailId of the latest request ("" if it had none)
	User             string // the calling user the messages are written as
	ContextVariables map[string]string
	ClientVariables  map[string]any
	History          []VAHistory
	Actions          []string // every action received, in order ("" for messages)
	Typing           int      // TYPING requests
	Viewing          int      // VIEWING requests
	// UserTypingAt is when the user's latest TYPING arrived, zero once a
	// VIEWING or a message followed it: what Agent Workspace shows as
	// "<user> is typing…".
	UserTypingAt time.Time
	Updates      []VAUpdate
	Ended        bool // END_CONVERSATION received
}

// VAFault fails Bot Integration API requests matching Action ("" matches
// messages, "*" every action) and ClientSessionID ("" matches every one).
type VAFault struct {
	Action          string
	ClientSessionID string
	Status          int
	Message         string
	Times           int // at least 1
}

type vaState struct {
	opts      VAOptions
	bySession map[string]*vaConv
	byGroup   map[string]*vaConv
	log       []string
	faults    []*VAFault
}

type vaConv struct {
	VAConversation
	agentEnded bool // the agent or a timeout closed it: no more callbacks
}

// EnableVA turns Virtual Agent mode on (and replaces its options).
func (in *Instance) EnableVA(o VAOptions) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	if o.WaitPerPosition <= 0 {
		o.WaitPerPosition = 2 * time.Minute
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	out := in.outbound()
	if out.va == nil {
		out.va = &vaState{bySession: map[string]*vaConv{}, byGroup: map[string]*vaConv{}}
	}
	out.va.opts = o
}

// InjectVAFault adds f; faults are tried in the order added.
func (in *Instance) InjectVAFault(f VAFault) {
	f.Times = max(f.Times, 1)
	in.mu.Lock()
	defer in.mu.Unlock()
	if va := in.vaLocked(); va != nil {
		va.faults = append(va.faults, &f)
	}
}

// VAConversation returns the VA conversation of the chat group.
func (in *Instance) VAConversation(group string) (VAConversation, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	va := in.vaLocked()
	if va == nil || va.byGroup[group] == nil {
		return VAConversation{}, false
	}
	return va.byGroup[group].snapshot(), true
}

// VALog returns what the instance's system log says about VA requests it
// accepted but did not act on (failed message auth, unknown conversations).
func (in *Instance) VALog() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if va := in.vaLocked(); va != nil {
		return append([]string(nil), va.log...)
	}
	return nil
}

// AgentTyping shows the user that the agent of a VA chat is typing
// (a StartTypingIndicator callback). Connect Support has no such signal.
func (in *Instance) AgentTyping(group string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, err := in.chat(group)
	if err != nil {
		return err
	}
	if c.State != WorkInProgress {
		return fmt.Errorf("%w: %s", ErrNotAccepted, group)
	}
	if conv := in.vaConvOf(c); conv != nil {
		in.vaCallback(conv, []any{map[string]any{"uiType": "ActionMsg", "actionType": "StartTypingIndicator"}}, nil)
	}
	return nil
}

// VAIdleTimeout closes a chat for inactivity: the System message
// DefaultVAIdleText and state Closed Abandoned (8).
func (in *Instance) VAIdleTimeout(group string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, err := in.chat(group)
	if err != nil {
		return err
	}
	if c.State.Closed() {
		return fmt.Errorf("%w: %s", ErrChatClosed, group)
	}
	in.addMessage(c, "system", DefaultVAIdleText)
	in.setState(c, ClosedAbandoned)
	return nil
}

func (c *vaConv) snapshot() VAConversation {
	s := c.VAConversation
	s.ContextVariables = maps.Clone(c.ContextVariables)
	s.ClientVariables = maps.Clone(c.ClientVariables)
	s.History = append([]VAHistory(nil), c.History...)
	s.Actions = append([]string(nil), c.Actions...)
	s.Updates = append([]VAUpdate(nil), c.Updates...)
	return s
}

// vaLocked returns the VA state, nil when VA mode is off. Callers hold in.mu.
func (in *Instance) vaLocked() *vaState {
	if in.out == nil {
		return nil
	}
	return in.out.va
}

// vaConvOf returns c's VA conversation, nil for Connect chats. Callers hold in.mu.
func (in *Instance) vaConvOf(c *chat) *vaConv {
	if va := in.vaLocked(); va != nil {
		return va.byGroup[c.Group]
	}
	return nil
}

// vaRoutes registers the Bot Integration API.
func (in *Instance) vaRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/sn_va_as_service/bot/integration", in.handleVA)
}

// vaRequest is the part of a request the fake reads.
type vaRequest struct {
	RequestID        string            `json:"requestId"`
	Action           *string           `json:"action"`
	ClientSessionID  string            `json:"clientSessionId"`
	UserID           string            `json:"userId"`
	EmailID          string            `json:"emailId"`
	Token            string            `json:"token"`
	Message          json.RawMessage   `json:"message"`
	ContextVariables map[string]string `json:"contextVariables"`
	ClientVariables  map[string]any    `json:"clientVariables"`
	History          []VAHistory       `json:"history"`
}

type vaText struct {
	Text            string `json:"text"`
	Typed           bool   `json:"typed"`
	ClientMessageID string `json:"clientMessageId"`
}

func (in *Instance) handleVA(w http.ResponseWriter, r *http.Request) {
	in.mu.Lock()
	va := in.vaLocked()
	var opts VAOptions
	if va != nil {
		opts = va.opts
	}
	in.mu.Unlock()
	if va == nil {
		writeError(w, http.StatusBadRequest, "Requested URI does not represent any resource", "")
		return
	}
	user := ""
	if r.Header.Get("Authorization") != "" || !opts.AllowAnonymous {
		u, ok := in.authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="Service-now"`)
			writeError(w, http.StatusUnauthorized, "User Not Authenticated", "Required to provide Auth information")
			return
		}
		if !in.allow(w, r, u) {
			return
		}
		user = u
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "Unsupported Media Type", "Content-Type "+ct+" is not supported")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "Request body too large", "")
		return
	}
	var req vaRequest
	if err := json.Unmarshal(body, &req); err != nil || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		writeError(w, http.StatusBadRequest, "Exception while reading request", "The payload is not valid JSON.")
		return
	}
	if req.RequestID == "" || req.UserID == "" {
		writeError(w, http.StatusBadRequest, "Mandatory parameters missing", "requestId and userId are required")
		return
	}
	action := ""
	if req.Action != nil {
		action = strings.ToUpper(*req.Action)
	}

	in.mu.Lock()
	defer in.mu.Unlock()
	va = in.vaLocked()
	for i, f := range va.faults {
		if (f.Action == "*" || f.Action == action) && (f.ClientSessionID == "" || f.ClientSessionID == req.ClientSessionID) {
			if f.Times--; f.Times <= 0 {
				va.faults = append(va.faults[:i:i], va.faults[i+1:]...)
			}
			msg := f.Message
			if msg == "" {
				msg = http.StatusText(f.Status)
			}
			writeError(w, f.Status, msg, "")
			return
		}
	}
	if status, msg := vaValidate(action, req); status != 0 {
		writeError(w, status, msg, "")
		return
	}
	if action == "UPDATE_MESSAGES" && opts.UpdateMessagesDisabled {
		writeError(w, http.StatusBadRequest, "Invalid action", "UPDATE_MESSAGES requires the third_party_chat adapter property")
		return
	}
	if !vaMessageAuth(opts, r, req, body) {
		va.log = append(va.log, fmt.Sprintf("request %s: message auth (token or x-b2b-signature) validation failed; dropped", req.RequestID))
		writeJSON(w, http.StatusOK, map[string]any{"status": "success"})
		return
	}
	if user == "" {
		user = req.UserID
	}
	in.vaAct(va, action, req, user)
	writeJSON(w, http.StatusOK, map[string]any{"status": "success"})
}

// vaValidate checks what the endpoint rejects at once. message.text is
// mandatory (virtual-agent-common-errors) on every action but
// UPDATE_MESSAGES, whose message is a list; END_CONVERSATION's is empty.
func vaValidate(action string, req vaRequest) (int, string) {
	switch action {
	case "", "AGENT", "TYPING", "VIEWING", "START_CONVERSATION", "CREATE_CONVERSATION", "START_CREATED_CONVERSATION",
		"FAULT_CONVERSATION", "SEND_HISTORY", "SWITCH", "SET_USER_TIMEZONE", "END_CONVERSATION":
		var m struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(req.Message, &m); err != nil || m.Text == nil {
			return http.StatusBadRequest, "message.text is mandatory"
		}
		if action == "END_CONVERSATION" && *m.Text != "" {
			return http.StatusBadRequest, "message.text must be empty for END_CONVERSATION"
		}
	case "UPDATE_MESSAGES":
		var ups []VAUpdate
		if err := json.Unmarshal(req.Message, &ups); err != nil || len(ups) == 0 {
			return http.StatusBadRequest, "UPDATE_MESSAGES needs message: [{id, status}]"
		}
		for _, u := range ups {
			if u.ID == "" || (!strings.EqualFold(u.Status, "sent_to_user") && !strings.EqualFold(u.Status, "external_error")) {
				return http.StatusBadRequest, "UPDATE_MESSAGES: status must be sent_to_user or external_error"
			}
		}
	default:
		return http.StatusBadRequest, "Invalid action " + action
	}
	return 0, ""
}

// vaMessageAuth checks the static token or the hash token.
func vaMessageAuth(o VAOptions, r *http.Request, req vaRequest, body []byte) bool {
	if o.Token != "" {
		tok := r.Header.Get("token")
		if tok == "" {
			tok = req.Token
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(o.Token)) == 1 {
			return true
		}
	}
	if o.Secret != "" {
		// The documented recipe: HmacSHA1(JSON.stringify(JSON.parse(body))).
		canon, err := jsRestringify(body)
		if err != nil {
			return false
		}
		m := hmac.New(sha1.New, []byte(o.Secret))
		m.Write(canon)
		want := hex.EncodeToString(m.Sum(nil))
		if subtle.ConstantTimeCompare([]byte(strings.ToLower(r.Header.Get("x-b2b-signature"))), []byte(want)) == 1 {
			return true
		}
	}
	return false
}

// vaAct performs an accepted request. Callers hold in.mu.
func (in *Instance) vaAct(va *vaState, action string, req vaRequest, user string) {
	conv := va.bySession[req.ClientSessionID]
	if conv != nil {
		conv.Actions = append(conv.Actions, action)
		// Callbacks echo the clientVariables of the latest request.
		conv.ClientVariables = maps.Clone(req.ClientVariables)
		if req.EmailID != "" {
			conv.EmailID = req.EmailID
		}
		conv.LastEmailID = req.EmailID
	}
	var msg vaText
	_ = json.Unmarshal(req.Message, &msg)
	switch action {
	case "AGENT":
		if conv != nil && !conv.Ended && !conv.agentEnded {
			return // already with the agents
		}
		in.vaOpen(va, req, msg, user)
	case "":
		if conv == nil || conv.Ended || conv.agentEnded {
			va.log = append(va.log, fmt.Sprintf("request %s: no live agent conversation for %q; message not delivered to an agent", req.RequestID, req.ClientSessionID))
			return
		}
		if c := in.chats[conv.Group]; c != nil && !c.State.Closed() && msg.Text != "" {
			conv.UserTypingAt = time.Time{}
			in.addMessage(c, conv.User, msg.Text)
		}
	case "TYPING", "VIEWING":
		if conv != nil {
			if action == "TYPING" {
				conv.Typing++
				conv.UserTypingAt = in.now()
			} else {
				conv.Viewing++
				conv.UserTypingAt = time.Time{}
			}
			in.touch() // consoles show or hide the indicator
		}
	case "UPDATE_MESSAGES":
		if conv == nil {
			va.log = append(va.log, fmt.Sprintf("request %s: UPDATE_MESSAGES for unknown conversation %q", req.RequestID, req.ClientSessionID))
			return
		}
		var ups []VAUpdate
		_ = json.Unmarshal(req.Message, &ups)
		conv.Updates = append(conv.Updates, ups...)
	case "END_CONVERSATION":
		if conv == nil || conv.Ended {
			return // nothing to end: accepted all the same
		}
		conv.Ended = true
		if c := in.chats[conv.Group]; c != nil && !c.State.Closed() {
			in.addMessage(c, "system", in.displayName(conv.User)+" has ended the conversation")
			in.setState(c, ClosedByClient)
		}
		in.vaSend(va, conv, req.RequestID, []any{vaOutput(DefaultVAEnded)}, map[string]any{"completed": true})
	}
}

// vaOpen starts a live-agent conversation. Callers hold in.mu.
func (in *Instance) vaOpen(va *vaState, req vaRequest, msg vaText, user string) {
	var b strings.Builder
	if len(req.History) > 0 {
		b.WriteString("Conversation history:\n")
		for _, h := range req.History {
			who := h.DisplayName
			if who == "" {
				who = "User"
				if h.IsBotMessage {
					who = "Bot"
				}
			}
			fmt.Fprintf(&b, "%s: %s\n", who, h.Value)
		}
	}
	b.WriteString(msg.Text)
	c := in.openChat(va.opts.Queue, user, b.String())
	conv := &vaConv{VAConversation: VAConversation{
		ClientSessionID:  req.ClientSessionID,
		Group:            c.Group,
		UserID:           req.UserID,
		EmailID:          req.EmailID,
		User:             user,
		ContextVariables: maps.Clone(req.ContextVariables),
		ClientVariables:  maps.Clone(req.ClientVariables),
		History:          append([]VAHistory(nil), req.History...),
		Actions:          []string{"AGENT"},
	}}
	va.bySession[req.ClientSessionID] = conv
	va.byGroup[c.Group] = conv
	pos := max(in.position(c), 1)
	wait := time.Duration(pos) * va.opts.WaitPerPosition
	in.vaSend(va, conv, req.RequestID, []any{
		vaOutput(DefaultVAStandBy),
		map[string]any{"uiType": "ActionMsg", "actionType": "StartSpinner", "spinnerType": "wait_time",
			"message": DefaultVASpinner, "waitTime": fmt.Sprintf("%d Seconds", int(wait.Seconds()))},
	}, map[string]any{"agentChat": true})
}

func vaOutput(text string) map[string]any {
	return map[string]any{"uiType": "OutputText", "group": "DefaultText", "value": text, "maskType": "NONE"}
}

// vaMessageAdded turns a message of a VA chat into a callback. It reports
// whether c is a VA chat. Callers hold in.mu.
func (in *Instance) vaMessageAdded(c *chat, m *Message) bool {
	conv := in.vaConvOf(c)
	if conv == nil {
		return false
	}
	if conv.Ended || conv.agentEnded || m.CreatedBy == conv.User {
		return true // the user's own messages are not sent back
	}
	var item map[string]any
	if m.System() {
		item = map[string]any{"uiType": "ActionMsg", "actionType": "System", "message": m.Text, "messageId": m.SysID}
	} else {
		item = vaOutput(m.Text)
		item["messageId"] = m.SysID
		item["agentInfo"] = map[string]any{"sentFromAgent": true, "agentName": m.SenderName, "agentId": m.Profile,
			"agentAvatar": ""}
	}
	in.vaCallback(conv, append([]any{item}, in.vaFileItems(m)...), nil) // attachments.go
	return true
}

// vaStateChanged sends the callbacks of a state change. Callers hold in.mu.
func (in *Instance) vaStateChanged(c *chat, prev State) {
	conv := in.vaConvOf(c)
	if conv == nil || conv.Ended || conv.agentEnded {
		return
	}
	switch {
	case prev == Waiting && c.State == WorkInProgress:
		agent := c.AssignedTo
		if agent == "" {
			agent = "Agent"
		}
		in.vaCallback(conv, []any{
			map[string]any{"uiType": "ActionMsg", "actionType": "SwitchToLiveAgent"},
			map[string]any{"uiType": "ActionMsg", "actionType": "System", "message": agent + " has entered the chat."},
		}, nil)
	case !prev.Closed() && c.State.Closed():
		in.vaCallback(conv, []any{map[string]any{"uiType": "ActionMsg", "actionType": "SwitchToVirtualAgent"}},
			map[string]any{"completed": true})
		conv.agentEnded = true
	}
}

// vaCallback sends items with a new requestId. Callers hold in.mu.
func (in *Instance) vaCallback(conv *vaConv, items []any, extra map[string]any) {
	in.vaSend(in.vaLocked(), conv, newSysID(), items, extra)
}

// vaSend queues a callback to the configured URL. Callers hold in.mu.
func (in *Instance) vaSend(va *vaState, conv *vaConv, requestID string, items []any, extra map[string]any) {
	if va == nil || va.opts.CallbackURL == "" {
		return
	}
	env := map[string]any{
		"requestId":       requestID,
		"clientSessionId": conv.ClientSessionID,
		"nowSessionId":    "",
		"userId":          conv.UserID,
		"agentChat":       true,
		"interactionId":   sysIDOf("interaction", conv.Group),
		"clientVariables": conv.ClientVariables,
		"body":            items,
		"score":           1,
	}
	maps.Copy(env, extra)
	b, err := json.Marshal(env)
	if err != nil {
		panic(errors.New("snowtest: va callback does not encode: " + err.Error()))
	}
	hdr := http.Header{}
	n := 0
	for k, v := range va.opts.CallbackHeaders {
		if n == 10 {
			break // the outbound configuration holds at most 10 headers
		}
		hdr.Set(k, v)
		n++
	}
	in.outbound().enqueue(&delivery{kind: "va", chat: conv.Group, key: requestID, url: va.opts.CallbackURL, header: hdr,
		body: b, timeout: va.opts.Timeout, ordered: true})
}
