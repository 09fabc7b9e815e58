package servicenow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/handoffhq/handoff/bridge"
)

// DefaultVAIdlePhrases are System texts of the Virtual Agent that close a chat
// for inactivity: the idle-cancel text of ci-idle-chats.md. The idle
// reminder ("The conversation is timing out, are you still there?",
// com.glide.cs.idle_chat_reminder_message) is deliberately not among them.
var DefaultVAIdlePhrases = []string{
	"it seems you have left the conversation",
	"closed due to inactivity",
	"timed out",
}

// DefaultVAJoinPhrases are System texts that announce an agent and do not end
// the chat.
var DefaultVAJoinPhrases = []string{"has entered the chat", "has joined the chat", "entered the conversation"}

// VAClosePhrases are the Virtual Agent's own closing texts ("The support
// session was closed."): they end a chat whatever EndPhrases holds.
var VAClosePhrases = []EndPhrase{{Text: "the support session was closed", Reason: bridge.ReasonAgentClosed}}

// VAWebhookConfig configures a VAWebhookHandler.
type VAWebhookConfig struct {
	// Header and Secret are the custom header ServiceNow's outbound
	// configuration sends with every callback and its value. Secret is
	// required; Header defaults to "X-Handoff-Secret".
	Header string
	Secret string
	// EndPhrases map System texts to close reasons (default
	// DefaultEndPhrases, Connect's closing lines, as HANDOFF_SERVICENOW_END_PHRASES
	// configures them); VAClosePhrases are always added. Only these, the idle
	// phrases (idle_timeout while the session is live, agent_closed while it
	// is still queued), SwitchToVirtualAgent, completed and takeControl end a
	// chat; join phrases mean an agent joined; every other System text is a
	// notice.
	EndPhrases  []EndPhrase
	IdlePhrases []string
	JoinPhrases []string
	// OpenWait is how long a callback for a chat the bridge has not recorded
	// yet waits for it (a callback can overtake the commit of a chat that was
	// just opened). Default 3 s: the instance gives up after 5 s.
	OpenWait time.Duration
	// MaxBody bounds a callback body; larger ones get 413. Default 1 MiB.
	MaxBody int64
	Logger  *slog.Logger
	Now     func() time.Time
}

// VAWebhookHandler receives the Virtual Agent API's callbacks at
// POST /webhooks/servicenow/va. ServiceNow does not sign callbacks, so each
// one must carry the configured secret header (compared in constant time) and
// the session's nonce in clientVariables (compared with the one the bridge
// stored for the chat). A missing or wrong header or nonce answers 401 with
// nothing stored; an oversized body 413; a malformed one 400; a callback for
// a chat the bridge does not know 200 with a debug log.
//
// Body items map to events in order:
//
//	OutputText (and other outputs) with agentInfo.sentFromAgent → AgentMessage
//	  (ExternalID = messageId, author = agentInfo.agentName); an agent's
//	  OutputLink with a label, or OutputImage, carries its link as the file
//	  (Attachments, see vaFile)
//	OutputText from the virtual agent itself → AgentWaiting (shown while queued)
//	ActionMsg StartTypingIndicator (or StartTypingIndicatorActionMsg) → AgentTyping
//	ActionMsg StartSpinner (waitTime "8 Seconds") → AgentWaiting with
//	  EstimatedWait (the status card's estimated wait); without a readable
//	  wait, the spinner's message as a notice. The API gives no queue position.
//	ActionMsg SwitchToLiveAgent → AgentJoined
//	ActionMsg System → join phrase: AgentJoined and the text; end or idle
//	  phrase: the text and AgentEnded (see EndPhrases); anything else (the
//	  idle reminder, transfers): the text as a notice
//	ActionMsg SwitchToVirtualAgent, completed:true, takeControl:true → AgentEnded
//
// Callbacks carry no times, so events are ordered by arrival; a duplicated
// callback is dropped by messageId (or a hash of the item when it has none).
type VAWebhookHandler struct {
	cfg      VAWebhookConfig
	log      *slog.Logger
	sessions SessionLookup
	seq      *sequencer
	cls      vaClassifier
}

// NewVAWebhookHandler checks cfg and returns a handler storing through sink
// and checking nonces with sessions.
func NewVAWebhookHandler(cfg VAWebhookConfig, sink EventSink, sessions SessionLookup) (*VAWebhookHandler, error) {
	var errs []error
	if sink == nil || sessions == nil {
		errs = append(errs, errors.New("an EventSink and a SessionLookup are required"))
	}
	if cfg.Secret == "" {
		errs = append(errs, errors.New("a Secret (the value of the callback header) is required"))
	}
	if cfg.Header == "" {
		cfg.Header = "X-Handoff-Secret"
	}
	if cfg.EndPhrases == nil {
		cfg.EndPhrases = DefaultEndPhrases
	}
	cfg.EndPhrases = slices.Clone(cfg.EndPhrases)
	for _, p := range VAClosePhrases {
		if !slices.ContainsFunc(cfg.EndPhrases, func(q EndPhrase) bool { return strings.EqualFold(strings.TrimSpace(q.Text), p.Text) }) {
			cfg.EndPhrases = append(cfg.EndPhrases, p)
		}
	}
	for _, p := range cfg.EndPhrases {
		if strings.TrimSpace(p.Text) == "" || !p.Reason.Valid() {
			errs = append(errs, fmt.Errorf("EndPhrases: %q → %q needs a text and a valid close reason", p.Text, p.Reason))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("servicenow: va webhook config: %w", err)
	}
	if cfg.IdlePhrases == nil {
		cfg.IdlePhrases = DefaultVAIdlePhrases
	}
	if cfg.JoinPhrases == nil {
		cfg.JoinPhrases = DefaultVAJoinPhrases
	}
	if cfg.OpenWait <= 0 {
		cfg.OpenWait = 3 * time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &VAWebhookHandler{cfg: cfg, log: cfg.Logger, sessions: sessions, cls: newVAClassifier(cfg)}
	h.seq = &sequencer{sink: sink, log: cfg.Logger, convert: func(_ bridge.AgentChatID, items []seqItem) []bridge.AgentEvent {
		var out []bridge.AgentEvent
		for _, it := range items {
			out = append(out, it.evs...)
		}
		return out
	}}
	return h, nil
}

// Run is the handler's lifecycle: when ctx ends it waits until every
// accepted callback is committed. It returns nil.
func (h *VAWebhookHandler) Run(ctx context.Context) error { return h.seq.Run(ctx) }

// ServeHTTP implements http.Handler.
func (h *VAWebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, ok := readWebhookBody(w, r, h.cfg.MaxBody, h.log, "va callback")
	if !ok {
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(h.cfg.Header)), []byte(h.cfg.Secret)) != 1 {
		h.log.WarnContext(ctx, "servicenow va callback rejected", "reason", "missing or wrong "+h.cfg.Header+" header")
		webhookError(w, http.StatusUnauthorized, "Callback authentication failed")
		return
	}
	cb, err := ParseVACallback(body)
	if err != nil {
		h.log.InfoContext(ctx, "servicenow va callback rejected: malformed body", "err", err)
		webhookError(w, http.StatusBadRequest, "Malformed callback body: "+err.Error())
		return
	}
	chat := bridge.AgentChatID(cb.ClientSessionID)
	want, err := h.nonce(ctx, chat)
	switch {
	case errors.Is(err, bridge.ErrNotFound):
		h.log.DebugContext(ctx, "servicenow va callback for a chat the bridge does not know", "chat_id", chat)
		writeSuccess(w)
		return
	case err != nil:
		h.log.ErrorContext(ctx, "servicenow va callback: session lookup failed", "chat_id", chat, "err", err)
		webhookError(w, http.StatusInternalServerError, "Could not look the chat up")
		return
	}
	if cb.Nonce == "" && want != "" {
		// The secret header was right, so this is most likely ServiceNow
		// itself not echoing clientVariables (unconfirmed on real instances):
		// every callback of the chat will be refused until that is fixed.
		h.log.ErrorContext(ctx, "servicenow va callback without the session nonce in clientVariables: refused",
			"chat_id", chat, "request_id", cb.RequestID,
			"check", "the callback carried the right "+h.cfg.Header+" header but no clientVariables.nonce; check that the "+
				"instance echoes clientVariables in its callbacks (VA Bot Integration outbound REST configuration, "+
				"the provider's script include) and that nothing between ServiceNow and the bridge rewrites the body; "+
				"the agent's messages for this chat do not reach the user until then")
		webhookError(w, http.StatusUnauthorized, "Callback authentication failed: clientVariables.nonce missing")
		return
	}
	if want == "" || subtle.ConstantTimeCompare([]byte(cb.Nonce), []byte(want)) != 1 {
		h.log.WarnContext(ctx, "servicenow va callback rejected", "reason", "wrong nonce", "chat_id", chat)
		webhookError(w, http.StatusUnauthorized, "Callback authentication failed")
		return
	}
	evs := h.cls.events(chat, cb, h.cfg.Now().UTC())
	h.log.DebugContext(ctx, "servicenow va callback", "chat_id", chat, "request_id", cb.RequestID, "items", len(cb.Items), "events", len(evs))
	if len(evs) == 0 {
		writeSuccess(w)
		return
	}
	if err := h.seq.submit(ctx, chat, []seqItem{{evs: evs}}); err != nil {
		h.log.ErrorContext(ctx, "servicenow va callback not stored", "chat_id", chat, "err", err)
		webhookError(w, http.StatusInternalServerError, "Could not store the callback")
		return
	}
	writeSuccess(w)
}

// nonce looks the chat's nonce up, waiting up to OpenWait while the chat is
// not recorded yet.
func (h *VAWebhookHandler) nonce(ctx context.Context, chat bridge.AgentChatID) (string, error) {
	if chat == "" {
		return "", fmt.Errorf("servicenow: va callback without clientSessionId: %w", bridge.ErrNotFound)
	}
	deadline := time.Now().Add(h.cfg.OpenWait)
	for {
		data, err := h.sessions.DeskData(ctx, chat)
		if !errors.Is(err, bridge.ErrNotFound) || time.Now().After(deadline) {
			return parseVAData(data).Nonce, err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

func writeSuccess(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"status":"success"}`)
}

// VACallback is a parsed Virtual Agent callback.
type VACallback struct {
	RequestID       string
	ClientSessionID string
	Nonce           string // clientVariables.nonce
	Completed       bool
	TakeControl     bool
	Items           []VAItem
}

// VAItem is one element of a callback's body.
type VAItem struct {
	UIType      string // OutputText, ActionMsg, OutputLink, …
	ActionType  string // for ActionMsg: StartTypingIndicator, System, …
	Text        string // value (or label) of outputs; message of ActionMsg
	MessageID   string
	SpinnerType string
	WaitTime    string
	FromAgent   bool // agentInfo.sentFromAgent
	AgentName   string
	// Files are what an agent's link or image output carries (vaFile);
	// Text is then the link's header, if any.
	Files []bridge.Attachment
	hash  string // stable id of the item when it has no messageId
}

// maxVAItems bounds the items of one callback.
const maxVAItems = 200

// ParseVACallback reads a callback body. It needs a JSON object with a
// clientSessionId; body may be an array of items or a single item. Fields of
// the wrong type are tolerated where ServiceNow is known to vary (strings,
// numbers and booleans are read as text).
func ParseVACallback(data []byte) (VACallback, error) {
	var w struct {
		RequestID       field                      `json:"requestId"`
		ClientSessionID field                      `json:"clientSessionId"`
		ClientVariables map[string]json.RawMessage `json:"clientVariables"`
		Body            json.RawMessage            `json:"body"`
		Completed       field                      `json:"completed"`
		TakeControl     field                      `json:"takeControl"`
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return VACallback{}, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return VACallback{}, err
	}
	cb := VACallback{
		RequestID:       w.RequestID.Value,
		ClientSessionID: strings.TrimSpace(w.ClientSessionID.Value),
		Completed:       truthy(w.Completed.Value),
		TakeControl:     truthy(w.TakeControl.Value),
	}
	if cb.ClientSessionID == "" || len(cb.ClientSessionID) > 256 {
		return VACallback{}, errors.New("no usable clientSessionId")
	}
	if raw, ok := w.ClientVariables["nonce"]; ok {
		n, err := scalar(raw)
		if err == nil {
			cb.Nonce = n
		}
	}
	var raws []json.RawMessage
	body := bytes.TrimSpace(w.Body)
	switch {
	case len(body) == 0 || string(body) == "null":
	case body[0] == '[':
		if err := json.Unmarshal(body, &raws); err != nil {
			return VACallback{}, fmt.Errorf("body: %w", err)
		}
	case body[0] == '{':
		raws = []json.RawMessage{body}
	default:
		return VACallback{}, errors.New("body is not an array or object")
	}
	if len(raws) > maxVAItems {
		return VACallback{}, fmt.Errorf("body has %d items, at most %d allowed", len(raws), maxVAItems)
	}
	for i, raw := range raws {
		it, err := parseVAItem(raw)
		if err != nil {
			return VACallback{}, fmt.Errorf("body item %d: %w", i, err)
		}
		if f, header, ok := vaFile(it.UIType, raw); ok && it.FromAgent {
			it.Files, it.Text = []bridge.Attachment{f}, header
		}
		sum := sha256.Sum256(append([]byte(cb.RequestID+"\x00"+strconv.Itoa(i)+"\x00"), raw...))
		it.hash = "va:" + hex.EncodeToString(sum[:12])
		cb.Items = append(cb.Items, it)
	}
	return cb, nil
}

func parseVAItem(raw json.RawMessage) (VAItem, error) {
	var w struct {
		UIType      field           `json:"uiType"`
		ActionType  field           `json:"actionType"`
		Value       json.RawMessage `json:"value"`
		Label       field           `json:"label"`
		Header      field           `json:"header"`
		Message     field           `json:"message"`
		MessageID   field           `json:"messageId"`
		SpinnerType field           `json:"spinnerType"`
		WaitTime    field           `json:"waitTime"`
		AgentInfo   *struct {
			SentFromAgent field `json:"sentFromAgent"`
			AgentName     field `json:"agentName"`
		} `json:"agentInfo"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return VAItem{}, err
	}
	it := VAItem{
		UIType:      w.UIType.Value,
		ActionType:  w.ActionType.Value,
		MessageID:   strings.TrimSpace(w.MessageID.Value),
		SpinnerType: w.SpinnerType.Value,
		WaitTime:    w.WaitTime.Value,
	}
	if len(it.MessageID) > 128 {
		it.MessageID = ""
	}
	if w.AgentInfo != nil {
		it.FromAgent = truthy(w.AgentInfo.SentFromAgent.Value)
		it.AgentName = w.AgentInfo.AgentName.Display
	}
	if it.UIType == "ActionMsg" {
		it.Text = w.Message.Value
		return it, nil
	}
	// Outputs: value is a string (text, image URL, HTML) or an object (a
	// link's {"action": url}); label carries the text of some outputs.
	v := bytes.TrimSpace(w.Value)
	switch {
	case len(v) > 0 && v[0] == '{':
		var link struct {
			Action field `json:"action"`
		}
		if json.Unmarshal(v, &link) == nil {
			it.Text = strings.TrimSpace(strings.TrimSpace(w.Header.Value) + " " + link.Action.Value)
		}
	case len(v) > 0:
		s, err := scalar(v)
		if err != nil {
			return VAItem{}, fmt.Errorf("value: %w", err)
		}
		it.Text = s
	}
	if it.Text == "" {
		it.Text = w.Label.Value
	}
	return it, nil
}

func truthy(s string) bool { return strings.EqualFold(strings.TrimSpace(s), "true") }

// vaClassifier turns callbacks into events.
type vaClassifier struct {
	ends []EndPhrase // lower-cased
	idle []string
	join []string
}

func newVAClassifier(cfg VAWebhookConfig) vaClassifier {
	low := func(in []string) []string {
		out := make([]string, 0, len(in))
		for _, s := range in {
			if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	k := vaClassifier{idle: low(cfg.IdlePhrases), join: low(cfg.JoinPhrases)}
	for _, p := range cfg.EndPhrases {
		k.ends = append(k.ends, EndPhrase{Text: strings.ToLower(p.Text), Reason: p.Reason})
	}
	return k
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// events maps cb to events stamped at (one microsecond apart, in order).
func (k vaClassifier) events(chat bridge.AgentChatID, cb VACallback, at time.Time) []bridge.AgentEvent {
	var out []bridge.AgentEvent
	ended := false
	add := func(ev bridge.AgentEvent) {
		ev.Chat = chat
		ev.At = at.Add(time.Duration(len(out)) * time.Microsecond)
		out = append(out, ev)
	}
	end := func(id string, reason bridge.CloseReason, author string) {
		if ended {
			return
		}
		ended = true
		if reason == bridge.ReasonIdleTimeout {
			// idle_timeout is legal only while live; the agent_closed that
			// follows ends a session that was still queued (and is ignored
			// by one that is already closing).
			add(bridge.AgentEvent{Kind: bridge.AgentEnded, ExternalID: id, Author: author, System: true, EndReason: reason})
			reason = bridge.ReasonAgentClosed
		}
		add(bridge.AgentEvent{Kind: bridge.AgentEnded, ExternalID: id, Author: author, System: true, EndReason: reason})
	}
	// SwitchToLiveAgent names nobody; the System text that announces the
	// agent ("Beth Anglin has entered the chat.") does, so the joined event
	// carries that name (the status card's "Connected to <agent>").
	joiner := ""
	for _, it := range cb.Items {
		if it.UIType == "ActionMsg" && it.ActionType == "System" && joiner == "" {
			joiner = k.joinerOf(strings.TrimSpace(it.Text))
		}
	}
	for _, it := range cb.Items {
		id := firstNonEmpty(it.MessageID, it.hash)
		text := strings.TrimSpace(it.Text)
		if it.UIType != "ActionMsg" {
			switch {
			case text == "" && len(it.Files) == 0:
			case it.FromAgent:
				add(bridge.AgentEvent{Kind: bridge.AgentMessage, ExternalID: id, Author: it.AgentName, Text: text, Attachments: it.Files})
			default:
				// The virtual agent itself ("Please stand by while I connect
				// you…"): shown while queued, dropped once live.
				add(bridge.AgentEvent{Kind: bridge.AgentWaiting, ExternalID: id, Text: text})
			}
			continue
		}
		switch it.ActionType {
		case "StartTypingIndicator", "StartTypingIndicatorActionMsg":
			add(bridge.AgentEvent{Kind: bridge.AgentTyping, ExternalID: id})
		case "StartSpinner":
			// The wait goes on the status card; the spinner's own message
			// ("Routing you to a live agent...") only repeats the bridge's
			// connecting notice, so it is shown only when there is no wait
			// to show.
			if d, ok := parseWaitTime(it.WaitTime); ok && d > 0 {
				add(bridge.AgentEvent{Kind: bridge.AgentWaiting, ExternalID: firstNonEmpty(it.MessageID, "spinner:"+it.WaitTime), EstimatedWait: d})
			} else if text != "" {
				add(bridge.AgentEvent{Kind: bridge.AgentWaiting, ExternalID: firstNonEmpty(it.MessageID, "spinner:"+text), Text: text})
			}
		case "SwitchToLiveAgent":
			add(bridge.AgentEvent{Kind: bridge.AgentJoined, ExternalID: "joined:" + string(chat), Author: joiner})
		case "SwitchToVirtualAgent":
			end("ended:"+string(chat), bridge.ReasonAgentClosed, "")
		case "System":
			lower := strings.ToLower(text)
			switch {
			case text == "":
			case containsAny(lower, k.join):
				add(bridge.AgentEvent{Kind: bridge.AgentJoined, ExternalID: "joined:" + string(chat), Author: joiner})
				add(bridge.AgentEvent{Kind: bridge.AgentMessage, ExternalID: id, Text: text, System: true})
			default:
				reason, ok := k.endReason(lower)
				if !ok {
					// The idle reminder, transfers and anything unknown: shown,
					// never an end.
					add(bridge.AgentEvent{Kind: bridge.AgentMessage, ExternalID: id, Text: text, System: true})
					break
				}
				if reason != bridge.ReasonIdleTimeout && !ended {
					// Stored like Connect's closing line: the ending notice
					// tells the user, not this text.
					add(bridge.AgentEvent{Kind: bridge.AgentMessage, ExternalID: id, Text: text, System: true, EndReason: reason})
				}
				end(id+":ended", reason, "")
			}
		}
	}
	if cb.Completed || cb.TakeControl {
		end("ended:"+string(chat), bridge.ReasonAgentClosed, "")
	}
	return out
}

// joinerOf returns the name before a join phrase ("Beth Anglin has entered
// the chat." → "Beth Anglin"), or "". The phrase is looked for as written
// (lower case), in the text itself: lower-casing the text could move the
// byte offsets of the name.
func (k vaClassifier) joinerOf(text string) string {
	for _, p := range k.join {
		if i := strings.Index(text, p); i > 0 {
			return strings.TrimSpace(text[:i])
		}
	}
	return ""
}

// endReason returns the close reason of an ending System text (lower-cased)
// and false for every other text.
func (k vaClassifier) endReason(lower string) (bridge.CloseReason, bool) {
	if containsAny(lower, k.idle) {
		return bridge.ReasonIdleTimeout, true
	}
	for _, p := range k.ends {
		if strings.Contains(lower, p.Text) {
			return p.Reason, true
		}
	}
	return "", false
}

// parseWaitTime reads a StartSpinner's waitTime: bot-api.md documents a
// string such as "8 Seconds" (also "13 Seconds" in its synchronous example);
// minutes and hours are read the same way, and a bare number as seconds.
func parseWaitTime(s string) (time.Duration, bool) {
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "" {
		return 0, false
	}
	i := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 || n > 1e6 || math.IsNaN(n) {
		return 0, false
	}
	var per time.Duration
	switch {
	case unit == "" || strings.HasPrefix(unit, "s"):
		per = time.Second
	case strings.HasPrefix(unit, "m"):
		per = time.Minute
	case strings.HasPrefix(unit, "h"):
		per = time.Hour
	default:
		return 0, false
	}
	return time.Duration(n * float64(per)), true
}
