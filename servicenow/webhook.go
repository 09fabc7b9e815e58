package servicenow

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Connect Support webhooks: a Business Rule on live_message (see
// businessrule/live_message_webhook.js) POSTs every new chat message to the
// bridge. The request is authenticated by one of:
//
//   - an HMAC-SHA256 signature over "<timestamp>.<body>" keyed with the shared
//     secret, in two headers:
//
//     X-Handoff-Timestamp: 1714658591            (Unix seconds, when it was signed)
//     X-Handoff-Signature: sha256=<signature>     (hex, or base64 as ServiceNow's
//     GlideCertificateEncryption.generateMac returns it; the "sha256=" prefix
//     is optional)
//
//     A timestamp more than MaxSkew (5 minutes) away from the bridge's clock
//     is rejected, and so is an exact replay of a request already accepted
//     within that window.
//
//   - Basic auth with a configured user and password, for instances that
//     cannot compute the HMAC.
const (
	HeaderTimestamp = "X-Handoff-Timestamp"
	HeaderSignature = "X-Handoff-Signature"
)

// WebhookConfig configures a WebhookHandler. Secret, or Username and
// Password, or both are required.
type WebhookConfig struct {
	// Secret is the HMAC-SHA256 key shared with the Business Rule.
	Secret string
	// Username and Password are the Basic-auth alternative.
	Username string
	Password string

	// BridgeUser is the integration user's name: messages created by it are
	// the bridge's own echoes. EndPhrases end a chat (default
	// DefaultEndPhrases). Use the values given to the Client, so webhooks and
	// polling produce the same events.
	BridgeUser string
	EndPhrases []EndPhrase

	// MaxSkew is how far a signed timestamp may be from the bridge's clock.
	// Default 5 minutes.
	MaxSkew time.Duration
	// OrderWindow is how long the deliveries of one chat are held so that
	// deliveries that overtook each other are put back in desk-time order
	// before they are stored. Default 400 ms; negative disables holding.
	OrderWindow time.Duration
	// Sessions, when set, lets a delivery wait up to OpenWait (default 500 ms,
	// on top of OrderWindow) for a chat the bridge has just opened but not yet
	// recorded; only deliveries for unknown chats wait.
	Sessions SessionLookup
	OpenWait time.Duration
	// Desk, when set, is read for a chat right away (a targeted poll of its
	// messages) when a delivery names a predecessor the bridge has not seen,
	// so a lost or late webhook is recovered in one round trip. Without it
	// such a delivery waits OrderWindow for the predecessor's own webhook.
	Desk *Client
	// Stored, when set, is asked first whether such a predecessor is stored
	// (delivered to another replica, or forgotten by this one), so webhooks
	// spread over replicas need no desk read. Without it only this process's
	// memory of recent deliveries counts.
	Stored EventLookup
	// MaxBody bounds a request body; larger ones get 413. Default 256 KiB.
	MaxBody int64
	// MaxItems bounds the messages of one request (a JSON array). Default 100.
	MaxItems int

	// Logger receives the handler's logs (ids, never message text). Default:
	// discard.
	Logger *slog.Logger
	// Now is the clock for timestamp checks. Default time.Now.
	Now func() time.Time
}

// WebhookHandler receives Connect Support webhooks at POST /webhooks/servicenow.
//
// Each request carries one live_message row as a JSON object, or several as
// an array:
//
//	{"sys_id":"9f1…","group":"5c2…","message":"Hi, looking into it",
//	 "created_by":"beth.anglin","sender_name":"Beth Anglin",
//	 "sys_created_on":"2024-05-02 14:03:11","timestamp":1714658591123,
//	 "previous":["7ab…"]}
//
// (formatted_message stands in for an empty message; sys_created_by and
// created_on are accepted for created_by and sys_created_on.) The handler
// checks the size (413), the authentication (401, nothing stored), and the
// body (400), stores the messages in chat order through the sink and answers
// 200 once they are committed. A message with "previous" (the sys_ids of the
// chat's message(s) before it) is stored at once if those were stored, else
// held until they arrive or a targeted poll of the chat (Desk) finds them; a
// message without it (an older rule) is held for OrderWindow and sorted by
// desk time. Messages for chats the bridge does not know, or whose session is
// closed, are answered 200 and dropped with a debug log, so ServiceNow does
// not retry them. A failure to store answers 500.
type WebhookHandler struct {
	cfg    WebhookConfig
	log    *slog.Logger
	seq    *sequencer
	replay replayCache
}

// NewWebhookHandler checks cfg and returns a handler that stores through sink.
func NewWebhookHandler(cfg WebhookConfig, sink EventSink) (*WebhookHandler, error) {
	var errs []error
	if sink == nil {
		errs = append(errs, errors.New("an EventSink is required"))
	}
	if cfg.Secret == "" && (cfg.Username == "" || cfg.Password == "") {
		errs = append(errs, errors.New("a Secret, or a Username and Password, is required"))
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		errs = append(errs, errors.New("the Username and Password go together"))
	}
	if cfg.EndPhrases == nil {
		cfg.EndPhrases = DefaultEndPhrases
	}
	for _, p := range cfg.EndPhrases {
		if strings.TrimSpace(p.Text) == "" || !p.Reason.Valid() {
			errs = append(errs, fmt.Errorf("EndPhrases: %q → %q needs a text and a valid close reason", p.Text, p.Reason))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("servicenow: webhook config: %w", err)
	}
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = 5 * time.Minute
	}
	switch {
	case cfg.OrderWindow == 0:
		cfg.OrderWindow = 400 * time.Millisecond
	case cfg.OrderWindow < 0:
		cfg.OrderWindow = 0
	}
	if cfg.OpenWait <= 0 {
		cfg.OpenWait = 500 * time.Millisecond
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 256 << 10
	}
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &WebhookHandler{cfg: cfg, log: cfg.Logger}
	cls := newClassifier(cfg.BridgeUser, cfg.EndPhrases)
	h.seq = &sequencer{window: cfg.OrderWindow, openWait: cfg.OpenWait, sink: sink, lookup: cfg.Sessions, stored: cfg.Stored, log: cfg.Logger,
		convert: func(chat bridge.AgentChatID, items []seqItem) []bridge.AgentEvent {
			msgs := make([]message, 0, len(items))
			seen := make(map[string]bool, len(items))
			var (
				entry   *QueueEntry // a closed state from the queue-entry rule
				entryAt time.Time
			)
			for _, it := range items {
				if it.msg.entry != nil {
					entry, entryAt = it.msg.entry, it.msg.At
					continue
				}
				if !seen[it.msg.SysID] {
					seen[it.msg.SysID] = true
					msgs = append(msgs, it.msg)
				}
			}
			return cls.events(chat, msgs, entry, entryAt)
		}}
	if d := cfg.Desk; d != nil {
		h.seq.fetch = func(ctx context.Context, chat bridge.AgentChatID, since time.Time) ([]message, error) {
			msgs, err := d.messagesSince(ctx, "targeted poll", chat, since)
			if err != nil {
				return nil, err
			}
			return msgs, d.attachFiles(ctx, "targeted poll", map[bridge.AgentChatID][]message{chat: msgs})
		}
	}
	return h, nil
}

// readWebhookBody reads a request body of at most limit bytes. On failure it
// has answered 413 (too large) or 400 and returns ok=false.
func readWebhookBody(w http.ResponseWriter, r *http.Request, limit int64, log *slog.Logger, what string) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		return body, true
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		log.WarnContext(r.Context(), "servicenow "+what+" rejected: body too large", "limit", limit)
		webhookError(w, http.StatusRequestEntityTooLarge, "Request body too large")
		return nil, false
	}
	webhookError(w, http.StatusBadRequest, "Could not read the request body")
	return nil, false
}

// Run is the handler's lifecycle: when ctx ends (after the HTTP server
// drained), deliveries still inside their ordering window are committed at
// once, and Run returns when every accepted delivery is committed. It returns
// nil.
func (h *WebhookHandler) Run(ctx context.Context) error { return h.seq.Run(ctx) }

// ServeHTTP implements http.Handler.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, ok := readWebhookBody(w, r, h.cfg.MaxBody, h.log, "webhook")
	if !ok {
		return
	}
	sig, ok := h.authenticate(r, body)
	if !ok {
		webhookError(w, http.StatusUnauthorized, "Webhook authentication failed")
		return
	}
	msgs, err := parseWebhook(body, h.cfg.MaxItems)
	if err != nil {
		h.replay.forget(sig)
		h.log.InfoContext(ctx, "servicenow webhook rejected: malformed body", "err", err)
		webhookError(w, http.StatusBadRequest, "Malformed webhook body: "+err.Error())
		return
	}
	byChat := make(map[bridge.AgentChatID][]seqItem)
	var order []bridge.AgentChatID
	for _, m := range msgs {
		chat := bridge.AgentChatID(m.Group)
		if _, ok := byChat[chat]; !ok {
			order = append(order, chat)
		}
		byChat[chat] = append(byChat[chat], seqItem{at: m.At, msg: m})
		h.log.DebugContext(ctx, "servicenow webhook message", "chat_id", chat, "sys_id", m.SysID)
	}
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, chat := range order {
		wg.Go(func() { errs[i] = h.seq.submit(ctx, chat, byChat[chat]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		h.replay.forget(sig) // let a retry of the same request in
		h.log.ErrorContext(ctx, "servicenow webhook not stored", "err", err)
		webhookError(w, http.StatusInternalServerError, "Could not store the message")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"status":"success"}`)
}

// authenticate checks the signature or Basic credentials. For a signed
// request it returns the signature, which is remembered so that an exact
// replay within MaxSkew is refused.
func (h *WebhookHandler) authenticate(r *http.Request, body []byte) (sig string, ok bool) {
	ctx := r.Context()
	if h.cfg.Secret != "" && (r.Header.Get(HeaderSignature) != "" || r.Header.Get(HeaderTimestamp) != "") {
		now := h.cfg.Now()
		mac, ts, reason := verifySignature(h.cfg.Secret, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, now, h.cfg.MaxSkew)
		if reason != "" {
			h.log.WarnContext(ctx, "servicenow webhook rejected", "reason", reason)
			return "", false
		}
		if !h.replay.add(string(mac), ts.Add(h.cfg.MaxSkew), now) {
			h.log.WarnContext(ctx, "servicenow webhook rejected", "reason", "replayed request")
			return "", false
		}
		return string(mac), true
	}
	if h.cfg.Username != "" {
		user, pass, ok := r.BasicAuth()
		if ok && subtle.ConstantTimeCompare([]byte(user), []byte(h.cfg.Username))&
			subtle.ConstantTimeCompare([]byte(pass), []byte(h.cfg.Password)) == 1 {
			return "", true
		}
		h.log.WarnContext(ctx, "servicenow webhook rejected", "reason", "missing or wrong basic credentials")
		return "", false
	}
	h.log.WarnContext(ctx, "servicenow webhook rejected", "reason", "unsigned")
	return "", false
}

// verifySignature checks a timestamp and signature header against body. It
// returns the decoded MAC and the timestamp, or the reason for refusing.
func verifySignature(secret, tsHeader, sigHeader string, body []byte, now time.Time, maxSkew time.Duration) ([]byte, time.Time, string) {
	tsHeader = strings.TrimSpace(tsHeader)
	if tsHeader == "" || sigHeader == "" {
		return nil, time.Time{}, "unsigned"
	}
	secs, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil || secs <= 0 || secs > 1<<40 {
		return nil, time.Time{}, "malformed timestamp"
	}
	ts := time.Unix(secs, 0)
	if d := now.Sub(ts); d > maxSkew || d < -maxSkew {
		return nil, time.Time{}, "timestamp outside the allowed window"
	}
	got, ok := decodeMAC(sigHeader, sha256.Size)
	if !ok {
		return nil, time.Time{}, "malformed signature"
	}
	want := SignatureMAC(secret, tsHeader, body)
	if !hmac.Equal(got, want) {
		return nil, time.Time{}, "signature mismatch"
	}
	return got, ts, ""
}

// SignatureMAC returns HMAC-SHA256(secret, timestamp + "." + body): the MAC a
// webhook sender puts, hex- or base64-encoded, in X-Handoff-Signature.
func SignatureMAC(secret, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// decodeMAC reads a signature header value: an optional "sha256=" prefix,
// then size bytes in hex or (standard or URL-safe, padded or not) base64.
func decodeMAC(v string, size int) ([]byte, bool) {
	v = strings.TrimSpace(v)
	if p, rest, ok := strings.Cut(v, "="); ok && strings.EqualFold(p, "sha256") {
		v = strings.TrimSpace(rest)
	}
	if len(v) == 2*size {
		if b, err := hex.DecodeString(v); err == nil {
			return b, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil && len(b) == size {
			return b, true
		}
	}
	return nil, false
}

// replayCache remembers accepted signatures until their timestamps expire.
type replayCache struct {
	mu     sync.Mutex
	seen   map[string]time.Time // MAC → expiry
	pruned time.Time
}

// add records sig until expiry; false if it is already there (a replay).
func (c *replayCache) add(sig string, expiry, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = make(map[string]time.Time)
	}
	if now.Sub(c.pruned) > time.Second {
		for k, exp := range c.seen {
			if now.After(exp) {
				delete(c.seen, k)
			}
		}
		c.pruned = now
	}
	if exp, ok := c.seen[sig]; ok && !now.After(exp) {
		return false
	}
	c.seen[sig] = expiry
	return true
}

// forget removes sig (a request that was not stored may be sent again).
func (c *replayCache) forget(sig string) {
	if sig == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.seen, sig)
}

// webhookPayload is one live_message row as the Business Rule sends it.
type webhookPayload struct {
	SysID            field `json:"sys_id"`
	Group            field `json:"group"`
	Message          field `json:"message"`
	FormattedMessage field `json:"formatted_message"`
	CreatedBy        field `json:"created_by"`
	SysCreatedBy     field `json:"sys_created_by"`
	SenderName       field `json:"sender_name"`
	SysCreatedOn     field `json:"sys_created_on"`
	CreatedOn        field `json:"created_on"`
	Timestamp        field `json:"timestamp"`
	Profile          field `json:"profile"`
	// Previous is the pointer to the chat's previous message(s); see
	// businessrule/live_message_webhook.js. Absent or null: an older rule.
	Previous json.RawMessage `json:"previous"`
	// Attachments are the message's files (see parseFileList).
	Attachments json.RawMessage `json:"attachments"`
	// Queue-entry state events (businessrule/chat_queue_entry_webhook.js).
	Table      field `json:"table"`
	State      field `json:"state"`
	AssignedTo field `json:"assigned_to"`
}

// parseStateEvent reads a queue-entry state change: a closed state (3, 4,
// 7, 8) becomes a message-less item whose entry ends the chat.
func parseStateEvent(p webhookPayload) (message, error) {
	n, err := strconv.Atoi(strings.TrimSpace(p.State.Value))
	st := QueueState(n)
	if err != nil || !st.Closed() {
		return message{}, fmt.Errorf("chat_queue_entry state %.10q is not a closed state (3, 4, 7, 8)", p.State.Value)
	}
	group := strings.TrimSpace(p.Group.Value)
	if !validSysID(group) {
		return message{}, fmt.Errorf("group %.40q is not a sys_id", group)
	}
	ms, ok := parseMillis(p.Timestamp.Value)
	if !ok || ms <= 0 {
		return message{}, errors.New("chat_queue_entry event without a timestamp")
	}
	m := message{Group: group, entry: &QueueEntry{Group: group, State: st, AssignedTo: p.AssignedTo.Display}}
	m.At, m.Millis = time.UnixMilli(ms).UTC(), true
	return m, nil
}

// parseWebhook reads a webhook body: one message object or an array of at
// most maxItems. Every message needs a sys_id, a group that looks like a
// sys_id, and a time (timestamp in ms, else sys_created_on).
func parseWebhook(body []byte, maxItems int) ([]message, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body")
	}
	var raws []json.RawMessage
	switch body[0] {
	case '[':
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, fmt.Errorf("not a JSON array of messages: %w", err)
		}
		if len(raws) == 0 {
			return nil, errors.New("no messages")
		}
		if len(raws) > maxItems {
			return nil, fmt.Errorf("%d messages, at most %d allowed", len(raws), maxItems)
		}
	case '{':
		raws = []json.RawMessage{body}
	default:
		return nil, errors.New("not a JSON object or array")
	}
	out := make([]message, 0, len(raws))
	for i, raw := range raws {
		m, err := parseWebhookMessage(raw)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func parseWebhookMessage(raw []byte) (message, error) {
	var p webhookPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		return message{}, err
	}
	if p.Table.Value == "chat_queue_entry" {
		return parseStateEvent(p)
	}
	m := message{
		SysID:      strings.TrimSpace(p.SysID.Value),
		Group:      strings.TrimSpace(p.Group.Value),
		Profile:    p.Profile.Value,
		CreatedBy:  p.CreatedBy.Value,
		SenderName: p.SenderName.Display,
		Text:       p.Message.Value,
	}
	if m.CreatedBy == "" {
		m.CreatedBy = p.SysCreatedBy.Value
	}
	if m.Text == "" {
		m.Text = p.FormattedMessage.Value
	}
	if m.SenderName == "" && p.Profile.Display != p.Profile.Value {
		m.SenderName = p.Profile.Display
	}
	if m.SysID == "" || len(m.SysID) > 64 {
		return message{}, errors.New("no usable sys_id")
	}
	if !validSysID(m.Group) {
		return message{}, fmt.Errorf("group %.40q is not a sys_id", m.Group)
	}
	if err := parsePrevious(p.Previous, &m); err != nil {
		return message{}, err
	}
	files, known, err := parseFileList(p.Attachments)
	if err != nil {
		return message{}, err
	}
	m.files, m.filesKnown = files, known
	if ms, ok := parseMillis(p.Timestamp.Value); ok && ms > 0 {
		m.At, m.Millis = time.UnixMilli(ms).UTC(), true
		return m, nil
	}
	created := p.SysCreatedOn.Value
	if created == "" {
		created = p.CreatedOn.Value
	}
	at, err := parseTime(created)
	if err != nil {
		return message{}, fmt.Errorf("sys_created_on: %w", err)
	}
	if at.IsZero() {
		return message{}, errors.New("no timestamp or sys_created_on")
	}
	m.At = at
	return m, nil
}

// maxPrevious bounds the sys_ids of one "previous" pointer (the rule sends
// those of one second, normally one).
const maxPrevious = 20

// parsePrevious reads the "previous" pointer: absent or null (an older rule,
// hasPrev stays false), or an array of sys_ids ([] for a chat's first message).
func parsePrevious(raw json.RawMessage, m *message) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var ids []string
	if err := json.Unmarshal(raw, &ids); err != nil {
		return errors.New(`previous is not an array of sys_ids`)
	}
	if len(ids) > maxPrevious {
		return fmt.Errorf("previous has %d sys_ids, at most %d allowed", len(ids), maxPrevious)
	}
	keep := make([]string, 0, len(ids))
	for _, id := range ids {
		id = strings.TrimSpace(id)
		if id == "" || len(id) > 64 || strings.Contains(id, ",") {
			return fmt.Errorf("previous holds %.40q, not a sys_id", id)
		}
		if id != m.SysID {
			keep = append(keep, id)
		}
	}
	m.prev, m.hasPrev = strings.Join(keep, ","), true
	return nil
}

// webhookError answers with ServiceNow's error envelope shape.
func webhookError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"message": msg}, "status": "failure"})
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="handoff"`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
