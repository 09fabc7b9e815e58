package servicenow

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// PathVA is the Virtual Agent Bot Integration API endpoint.
const PathVA = "/api/sn_va_as_service/bot/integration"

// VA message-auth headers.
const (
	HeaderVAToken     = "token"           // static token
	HeaderVASignature = "x-b2b-signature" // hex HMAC-SHA1 of the body
)

// VAConfig configures a VAClient.
type VAConfig struct {
	// InstanceURL is the instance's base URL.
	InstanceURL string
	// Username and Password authenticate the transport with Basic auth, as
	// for the Connect client; OAuth selects bearer tokens instead. Leave all
	// empty only if the instance's Scripted REST API accepts message auth
	// alone.
	Username string
	Password string
	OAuth    *OAuth

	// Token is the static message-auth token, sent in the "token" header.
	// Secret keys the hash message auth: the "x-b2b-signature" header holds
	// the hex HMAC-SHA1 of the body. At least one is required (both are sent
	// when both are set).
	Token  string
	Secret string

	// Queue routes chats whose handoff names no queue: it is sent as the
	// SkillsVariable context variable (default "LiveAgent_mandatory_skills").
	// "" sends none, leaving routing to the instance's defaults.
	Queue          string
	SkillsVariable string
	// DeviceType is the liveagent_deviceType context variable (default
	// "msteams").
	DeviceType string
	// ContextVariables are added to every handoff's contextVariables.
	ContextVariables map[string]string

	// TranscriptTurns bounds the history sent with a handoff (default 12),
	// TurnChars each turn's text (default 400).
	TranscriptTurns int
	TurnChars       int

	// Timeout, MaxRetries, RetryWaitMin and RetryWaitMax work as in Config.
	Timeout      time.Duration
	MaxRetries   int
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration

	// NonceKey, when set, derives each chat's callback nonce from the chat id
	// (HMAC-SHA256), so a repeated Open of the same session sends the same
	// nonce; empty: a random nonce per Open.
	NonceKey string

	Logger     *slog.Logger
	HTTPClient *http.Client
	Now        func() time.Time
}

// VAClient is an agent desk on the Virtual Agent Bot Integration API
// (POST /api/sn_va_as_service/bot/integration), for instances whose agents work
// in Agent Workspace. It implements bridge.AgentDesk, bridge.DeskTyping and
// bridge.DeskReceipts. Agent messages arrive only by callback, at
// VAWebhookHandler; the API has no read endpoint.
//
// The chat id is the clientSessionId the client makes up when it opens a chat
// ("handoff-<session id>", so a repeated Open of the same session reuses the
// conversation). userId is that same id on every request, so every request of
// a conversation carries the same value without the bridge storing it; the
// employee's account is linked by emailId. clientVariables carry the
// session's nonce on every request; ServiceNow echoes them in its callbacks,
// and VAWebhookHandler checks them.
//
// Every call is answered at once with {"status":"success"}; what the instance
// does with it arrives later by callback. A failure envelope
// {"error":{"message","detail"},"status":"failure"} becomes a
// *bridge.StatusError (401 wraps bridge.ErrUnauthorized, other 4xx are
// permanent).
type VAClient struct {
	cfg VAConfig
	t   *transport // auth, retries, throttling, error mapping
	log *slog.Logger
	now func() time.Time
}

// Run lives as long as the desk may send: when ctx ends it cancels an OAuth
// token fetch still running and waits for it, then returns nil. Stop it
// after the last send.
func (c *VAClient) Run(ctx context.Context) error { return c.t.run(ctx) }

// vaData is the VA desk's data for a chat (bridge.DeskChat.Data, JSON): what
// every request of the conversation repeats.
type vaData struct {
	Nonce string `json:"nonce,omitempty"`
	Email string `json:"email,omitempty"`
}

// parseVAData reads a chat's desk data; unreadable data reads as empty (the
// requests then go without nonce and e-mail, and callbacks are refused).
func parseVAData(s string) vaData {
	var d vaData
	_ = json.Unmarshal([]byte(s), &d)
	return d
}

var (
	_ bridge.AgentDesk    = (*VAClient)(nil)
	_ bridge.DeskTyping   = (*VAClient)(nil)
	_ bridge.DeskReceipts = (*VAClient)(nil)
)

// NewVA returns a Virtual Agent API client for cfg. It makes no request.
func NewVA(cfg VAConfig) (*VAClient, error) {
	if cfg.Token == "" && cfg.Secret == "" {
		return nil, errors.New("servicenow: va config: a Token or a Secret (message auth) is required")
	}
	if cfg.SkillsVariable == "" {
		cfg.SkillsVariable = "LiveAgent_mandatory_skills"
	}
	if cfg.DeviceType == "" {
		cfg.DeviceType = "msteams"
	}
	var errs []error
	cfg.InstanceURL, cfg.OAuth, errs = checkTransport(cfg.InstanceURL, cfg.Username, cfg.Password, cfg.OAuth, true)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("servicenow: va config: %w", err)
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defDur(&cfg.Timeout, 30*time.Second)
	defDur(&cfg.RetryWaitMin, 500*time.Millisecond)
	defDur(&cfg.RetryWaitMax, 30*time.Second)
	cfg.RetryWaitMax = max(cfg.RetryWaitMax, cfg.RetryWaitMin)
	cfg.MaxRetries = retriesDefault(cfg.MaxRetries)
	if cfg.TranscriptTurns <= 0 {
		cfg.TranscriptTurns = 12
	}
	if cfg.TurnChars <= 0 {
		cfg.TurnChars = 400
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := newTransport(transportConfig{InstanceURL: cfg.InstanceURL, Username: cfg.Username, Password: cfg.Password,
		OAuth: cfg.OAuth, Timeout: cfg.Timeout, MaxRetries: cfg.MaxRetries, RetryWaitMin: cfg.RetryWaitMin,
		RetryWaitMax: cfg.RetryWaitMax, Logger: cfg.Logger, HTTPClient: cfg.HTTPClient, Now: cfg.Now})
	return &VAClient{cfg: cfg, t: t, log: cfg.Logger, now: cfg.Now}, nil
}

// vaRequest is the body of a Bot Integration API call.
type vaRequest struct {
	RequestID        string            `json:"requestId"`
	Action           string            `json:"action,omitempty"`
	ClientSessionID  string            `json:"clientSessionId"`
	UserID           string            `json:"userId"`
	EmailID          string            `json:"emailId,omitempty"`
	Message          any               `json:"message,omitempty"`
	ContextVariables map[string]string `json:"contextVariables,omitempty"`
	ClientVariables  map[string]string `json:"clientVariables,omitempty"`
	History          []vaHistory       `json:"history,omitempty"`
	BotToBot         bool              `json:"botToBot"`
	Timestamp        int64             `json:"timestamp"`
}

type vaText struct {
	Text            string `json:"text"`
	Typed           bool   `json:"typed"`
	ClientMessageID string `json:"clientMessageId,omitempty"`
}

type vaUpdate struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

type vaHistory struct {
	DisplayName  string `json:"displayName"`
	IsBotMessage bool   `json:"isBotMessage"`
	Timestamp    string `json:"timestamp"` // epoch ms as text
	Type         string `json:"type"`
	Value        string `json:"value"`
}

// vaChatID is the clientSessionId of a session's chat.
func vaChatID(s bridge.SessionID) bridge.AgentChatID {
	if s == "" {
		return bridge.AgentChatID("handoff-" + randomHex(12))
	}
	return bridge.AgentChatID("handoff-" + string(s))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Open hands the conversation to a live agent with action AGENT: the recent
// transcript in history, the routing context (queue, device type, reason) in
// contextVariables, the employee's e-mail as emailId, and the session's nonce
// in clientVariables. It returns the clientSessionId, which depends only on
// the session, so an outbox retry of Open addresses the same conversation.
// The call is retried inside too: a repeated AGENT for a clientSessionId that
// is already with the agents opens no second chat (so the fake behaves; on a
// real instance this is inferred from pypestream's integration, which sends
// AGENT twice on purpose, not documented).
func (v *VAClient) Open(ctx context.Context, h bridge.Handoff) (bridge.DeskChat, error) {
	chat := vaChatID(h.Session)
	data := vaData{Nonce: v.nonce(chat), Email: h.UserEmail}
	ctxVars := map[string]string{"liveagent_deviceType": v.cfg.DeviceType}
	for k, val := range v.cfg.ContextVariables {
		ctxVars[k] = val
	}
	if q := firstNonEmpty(h.Queue, v.cfg.Queue); q != "" {
		ctxVars[v.cfg.SkillsVariable] = q
	}
	if h.Reason != "" {
		ctxVars["handoff_reason"] = clip(oneLine(h.Reason), 200)
	}
	if h.UserName != "" {
		ctxVars["handoff_user_name"] = clip(oneLine(h.UserName), 200)
	}
	if h.TenantID != "" {
		ctxVars["handoff_tenant_id"] = h.TenantID
	}
	if h.UserAADID != "" {
		ctxVars["handoff_aad_object_id"] = h.UserAADID
	}
	req := v.request(bridge.DeskChat{ID: chat}, "AGENT")
	req.EmailID = h.UserEmail
	req.Message = vaText{Text: vaSummary(h), Typed: true, ClientMessageID: string(chat) + "/open"}
	req.ContextVariables = ctxVars
	req.History = v.history(h)
	req.ClientVariables = map[string]string{"nonce": data.Nonce}
	if err := v.post(ctx, "open chat", req, true); err != nil {
		return bridge.DeskChat{}, err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return bridge.DeskChat{}, fmt.Errorf("servicenow: open chat: encode desk data: %w", err)
	}
	v.log.Info("servicenow va chat opened", "session_id", h.Session, "chat_id", chat)
	return bridge.DeskChat{ID: chat, Data: string(raw)}, nil
}

// nonce returns the chat's callback nonce: derived from NonceKey, or random.
func (v *VAClient) nonce(chat bridge.AgentChatID) string {
	if v.cfg.NonceKey == "" {
		return randomHex(16)
	}
	m := hmac.New(sha256.New, []byte(v.cfg.NonceKey))
	m.Write([]byte("handoff va nonce\x00" + string(chat)))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// vaSummary is the handoff message the agent sees: who, and why.
func vaSummary(h bridge.Handoff) string {
	user := clip(oneLine(h.UserName), 200)
	if user == "" {
		user = "(name unknown)"
	}
	if h.UserEmail != "" {
		user += " <" + clip(oneLine(h.UserEmail), 200) + ">"
	}
	reason := clip(oneLine(h.Reason), 200)
	if reason == "" {
		reason = "(not given)"
	}
	return "Chat handed over from the Teams bot.\nUser: " + user + "\nReason for handoff: " + reason
}

// history renders the transcript as the API's history entries, oldest first.
func (v *VAClient) history(h bridge.Handoff) []vaHistory {
	turns := h.Transcript
	if len(turns) > v.cfg.TranscriptTurns {
		turns = turns[len(turns)-v.cfg.TranscriptTurns:]
	}
	out := make([]vaHistory, 0, len(turns))
	for _, t := range turns {
		text := clip(oneLine(t.Text), v.cfg.TurnChars)
		if text == "" {
			continue
		}
		e := vaHistory{Type: "text", Value: text, IsBotMessage: t.Role != "user", DisplayName: "Bot"}
		if t.Role == "user" {
			e.DisplayName = firstNonEmpty(oneLine(t.Author), oneLine(h.UserName), "User")
		}
		if !t.At.IsZero() {
			e.Timestamp = strconv.FormatInt(t.At.UnixMilli(), 10)
		}
		out = append(out, e)
	}
	return out
}

// Send posts the user's message (a request without action), then a VIEWING
// so the agent's "user is typing" indicator clears (best effort: its failure
// is logged, the message is sent). The post is not retried inside the call:
// the API has no way to find an earlier attempt, so a retry could post
// twice; clientMessageId is the message's stable key.
func (v *VAClient) Send(ctx context.Context, chat bridge.DeskChat, m bridge.DeskMessage) error {
	req := v.request(chat, "")
	req.Message = vaText{Text: m.Text, Typed: true, ClientMessageID: m.Key}
	if err := v.post(ctx, "send message", req, false); err != nil {
		return err
	}
	view := v.request(chat, "VIEWING")
	view.Message = vaText{Text: "", Typed: true}
	if err := v.post(ctx, "viewing", view, false); err != nil {
		v.log.Info("servicenow va viewing not sent; the agent may see the user typing a while longer", "chat_id", chat.ID, "err", err)
	}
	return nil
}

// Typing shows the agent that the user is typing (action TYPING with an
// empty message.text, which the API requires).
func (v *VAClient) Typing(ctx context.Context, chat bridge.DeskChat) error {
	req := v.request(chat, "TYPING")
	req.Message = vaText{Text: "", Typed: true}
	return v.post(ctx, "typing", req, false)
}

// Delivered reports that the agent message externalID (its messageId) reached
// the user: action UPDATE_MESSAGES with status sent_to_user.
func (v *VAClient) Delivered(ctx context.Context, chat bridge.DeskChat, externalID string) error {
	if externalID == "" || strings.HasPrefix(externalID, "va:") {
		return nil // not a ServiceNow message id
	}
	req := v.request(chat, "UPDATE_MESSAGES")
	req.Message = []vaUpdate{{ID: externalID, Status: "sent_to_user"}}
	return v.post(ctx, "update messages", req, true)
}

// Leave ends the conversation (action END_CONVERSATION with an empty
// message.text). It is idempotent: the instance accepts ending a
// conversation that is already over.
func (v *VAClient) Leave(ctx context.Context, chat bridge.DeskChat) error {
	req := v.request(chat, "END_CONVERSATION")
	req.Message = vaText{Text: "", Typed: true}
	if err := v.post(ctx, "leave chat", req, true); err != nil {
		return err
	}
	v.log.Info("servicenow va chat ended", "chat_id", chat.ID)
	return nil
}

// request starts a request of the chat's conversation: the ids, and what the
// desk data says every request repeats (e-mail, nonce).
func (v *VAClient) request(chat bridge.DeskChat, action string) vaRequest {
	req := vaRequest{RequestID: randomHex(16), Action: action, ClientSessionID: string(chat.ID), UserID: string(chat.ID),
		BotToBot: true, Timestamp: v.now().UnixMilli()}
	d := parseVAData(chat.Data)
	req.EmailID = d.Email
	if d.Nonce != "" {
		req.ClientVariables = map[string]string{"nonce": d.Nonce}
	}
	return req
}

// post sends req with message auth and checks the immediate answer.
func (v *VAClient) post(ctx context.Context, op string, req vaRequest, retry bool) error {
	raw, err := encodeJSON(req)
	if err != nil {
		return fmt.Errorf("servicenow: %s: encode body: %w", op, err)
	}
	hdr := http.Header{}
	if v.cfg.Token != "" {
		hdr.Set(HeaderVAToken, v.cfg.Token)
	}
	if v.cfg.Secret != "" {
		hdr.Set(HeaderVASignature, VASignature(v.cfg.Secret, raw))
	}
	a, err := v.t.exchange(ctx, call{op: op, method: http.MethodPost, path: PathVA, raw: raw, header: hdr, retry: retry})
	if err != nil {
		return err
	}
	if err := v.t.answerError(op, a); err != nil {
		return err
	}
	rb := a.body
	status := a.status
	var ans struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(rb, &ans) == nil && strings.EqualFold(ans.Status, "failure") {
		msg, detail := errorText(rb)
		se := &bridge.StatusError{System: "servicenow", Op: op, Status: status, Message: msg, Detail: detail}
		return &deskError{status: se, kinds: []error{&bridge.PermanentError{Err: se}}}
	}
	v.log.Debug("servicenow va call accepted", "op", op, "chat_id", req.ClientSessionID, "request_id", req.RequestID)
	return nil
}

// VASignature returns the x-b2b-signature of body: the hex HMAC-SHA1 keyed
// with secret.
func VASignature(secret string, body []byte) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
