package rasa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/handoffhq/handoff/bridge"
)

// Defaults used when the corresponding Config field is zero.
const (
	// DefaultTimeout bounds one call. Rasa answers a message only after its
	// whole prediction loop, custom actions (each an HTTP call to the action
	// server) included; a typical chain takes a few seconds, a slow one
	// (an action calling a backend) 10 s or more. 18 s stays under the
	// dispatcher's call deadline (two thirds of the 30 s lease).
	DefaultTimeout           = 18 * time.Second
	DefaultSlotHandoffActive = "handoff_active"
	DefaultSlotOutcome       = "handoff_outcome"
	// DefaultHandoffReason is the reason given to a handoff payload without one.
	DefaultHandoffReason = "unspecified"
)

// maxResponseBytes bounds what the client reads from Rasa. A tracker of a long
// conversation is the largest answer; 32 MiB is far beyond any sane one.
const maxResponseBytes = 32 << 20

// Config configures a Client.
type Config struct {
	// URL is Rasa's base URL, e.g. "http://rasa:5005" (a path prefix is kept,
	// for a Rasa behind a reverse proxy). Required; it must not carry a query.
	URL string
	// Token is Rasa's --auth-token. When set it is sent as ?token= on every
	// request (the REST channel ignores it; the HTTP API requires it).
	Token string
	// Timeout bounds each call, on top of the caller's context. Default
	// DefaultTimeout (18 s).
	Timeout time.Duration
	// SlotHandoffActive is the bool slot set to false on handback. Default
	// "handoff_active".
	SlotHandoffActive string
	// SlotOutcome is the slot set to the close reason on handback. Default
	// "handoff_outcome".
	SlotOutcome string
	// HTTPClient is used for all calls. Default: a client whose Timeout is
	// Timeout. A supplied client is used as is (the per-call context deadline
	// still applies).
	HTTPClient *http.Client
	// Logger receives warnings about malformed bot payloads. Default: discard.
	Logger *slog.Logger
}

// Client talks to one Rasa server. It is safe for concurrent use.
type Client struct {
	base        string // scheme://host[/prefix], no trailing slash
	token       string
	timeout     time.Duration
	slotActive  string
	slotOutcome string
	hc          *http.Client
	log         *slog.Logger
}

var _ bridge.Bot = (*Client)(nil)

// New checks cfg and returns a Client. It makes no request.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.URL) == "" {
		return nil, errors.New("rasa: URL is required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("rasa: bad URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("rasa: URL %q: scheme must be http or https", cfg.URL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("rasa: URL %q has no host", cfg.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("rasa: URL must not carry a query, fragment or user info (set Token for --auth-token)")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("rasa: Timeout %v is negative", cfg.Timeout)
	}
	c := &Client{
		base:        strings.TrimRight(u.String(), "/"),
		token:       cfg.Token,
		timeout:     cfg.Timeout,
		slotActive:  cfg.SlotHandoffActive,
		slotOutcome: cfg.SlotOutcome,
		hc:          cfg.HTTPClient,
		log:         cfg.Logger,
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.slotActive == "" {
		c.slotActive = DefaultSlotHandoffActive
	}
	if c.slotOutcome == "" {
		c.slotOutcome = DefaultSlotOutcome
	}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: c.timeout}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

type webhookRequest struct {
	Sender   string         `json:"sender"`
	Message  string         `json:"message"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Send posts the user's message to Rasa's REST channel and returns the bot's
// replies in order (none is a valid answer). Transport failures and 5xx are
// returned as plain errors (retryable); 429, and 503 with Retry-After, as a
// *bridge.ThrottledError; other 4xx (but 408, 409) are Permanent;
// 401/403 match bridge.ErrUnauthorized.
//
// Rasa runs the whole prediction loop (custom actions included) before
// answering, so a timeout does not mean the message was not processed. The
// message therefore carries in.Key as metadata.activity_id, which Rasa stores
// on the "user" tracker event; with in.Retry the tracker is read first, and
// if its latest user event carries in.Key nothing is sent: the bot events
// after it are returned as the replies. (A retry that reads the tracker while
// Rasa is still processing the earlier attempt cannot see it; Timeout is
// therefore longer than a typical action-server chain.)
func (c *Client) Send(ctx context.Context, in bridge.BotInput) ([]bridge.BotReply, error) {
	if in.Conversation == "" {
		return nil, bridge.Permanent(errors.New("rasa: send: empty conversation id"))
	}
	if in.Retry && in.Key != "" {
		data, err := c.do(ctx, "read tracker before a retry", http.MethodGet, c.conversationPath(in.Conversation, "/tracker"), nil, nil)
		if err != nil {
			return nil, err
		}
		replies, done, err := answeredInTracker(data, in.Key, c.log.With("conversation_id", string(in.Conversation)))
		if err != nil {
			return nil, fmt.Errorf("rasa: read tracker before a retry: %w", err)
		}
		if done {
			c.log.InfoContext(ctx, "rasa: an earlier attempt was processed; its replies are taken from the tracker",
				"conversation_id", string(in.Conversation), "activity_id", in.Key, "replies", len(replies))
			return replies, nil
		}
	}
	meta := in.Metadata
	if in.Key != "" {
		meta = make(map[string]any, len(in.Metadata)+1)
		for k, v := range in.Metadata {
			meta[k] = v
		}
		meta[MetadataKey] = in.Key
	}
	body := webhookRequest{Sender: string(in.Conversation), Message: in.Text, Metadata: meta}
	data, err := c.do(ctx, "send", http.MethodPost, "/webhooks/rest/webhook", nil, body)
	if err != nil {
		return nil, err
	}
	replies, err := parseReplies(data, c.log.With("conversation_id", string(in.Conversation)))
	if err != nil {
		return nil, fmt.Errorf("rasa: send: %w", err)
	}
	return replies, nil
}

// Context reads the conversation's tracker (events after the latest restart)
// and returns what it says about the current Rasa session. Rasa creates a
// tracker for an unknown conversation instead of failing, so that case is an
// empty BotContext and nil. ErrNotFound is returned only when Rasa answers 404
// with its own error envelope (a 404 without it means a wrong URL and is a
// Permanent StatusError).
func (c *Client) Context(ctx context.Context, conv bridge.ConversationID) (bridge.BotContext, error) {
	if conv == "" {
		return bridge.BotContext{}, bridge.Permanent(errors.New("rasa: read tracker: empty conversation id"))
	}
	data, err := c.do(ctx, "read tracker", http.MethodGet, c.conversationPath(conv, "/tracker"), nil, nil)
	if err != nil {
		return bridge.BotContext{}, err
	}
	bc, err := parseTracker(data)
	if err != nil {
		return bridge.BotContext{}, fmt.Errorf("rasa: read tracker: %w", err)
	}
	return bc, nil
}

// slotEvent and plainEvent are the tracker events Handback appends; separate
// types keep "value": false and "value": null on the wire.
type slotEvent struct {
	Event string `json:"event"`
	Name  string `json:"name"`
	Value any    `json:"value"`
}

type plainEvent struct {
	Event string `json:"event"`
}

// handbackEvents returns the events Handback appends, in order.
func (c *Client) handbackEvents(hb bridge.Handback) []any {
	var outcome any
	if hb.Reason != "" {
		outcome = string(hb.Reason)
	}
	events := []any{
		slotEvent{Event: "slot", Name: c.slotActive, Value: false},
		slotEvent{Event: "slot", Name: c.slotOutcome, Value: outcome},
		plainEvent{Event: "resume"},
	}
	if hb.Restart {
		events = append(events, plainEvent{Event: "restart"})
	}
	return events
}

// Handback appends the handback events to the conversation's tracker (see the
// package documentation for the events and their order). It asks Rasa for no
// events in the answer (include_events=NONE) and executes no side effects. Safe
// to retry. Errors as for Send.
func (c *Client) Handback(ctx context.Context, conv bridge.ConversationID, hb bridge.Handback) error {
	if conv == "" {
		return bridge.Permanent(errors.New("rasa: handback: empty conversation id"))
	}
	q := url.Values{"include_events": {"NONE"}}
	_, err := c.do(ctx, "handback", http.MethodPost, c.conversationPath(conv, "/tracker/events"), q, c.handbackEvents(hb))
	return err
}

// Ping checks that Rasa answers its authenticated /status endpoint, i.e. the
// API is enabled, the token is accepted and a model is loaded (Rasa answers 409
// while none is).
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.do(ctx, "status", http.MethodGet, "/status", nil, nil)
	return err
}

// do makes one call and returns the body of a 2xx answer.
func (c *Client) do(ctx context.Context, op, method, path string, q url.Values, body any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, bridge.Permanent(fmt.Errorf("rasa: %s: encode request: %w", op, err))
		}
		rd = bytes.NewReader(b)
	}
	if c.token != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("token", c.token)
	}
	target := c.base + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("rasa: %s: build request: %w", op, redactErr(err))
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "handoff-bridge")

	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("rasa: %s: %w", op, redactErr(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("rasa: %s: read response: %w", op, redactErr(err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := statusError(op, resp.StatusCode, data)
		if until, ok := throttledUntil(resp.StatusCode, resp.Header.Get("Retry-After"), time.Now()); ok {
			return nil, &bridge.ThrottledError{Destination: "rasa", Until: until, Err: err}
		}
		return nil, err
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("rasa: %s: response larger than %d bytes", op, maxResponseBytes)
	}
	return data, nil
}

// conversationPath returns "/conversations/{id}{suffix}" with id escaped as
// described in the package documentation. An id that needs escaping reaches a
// different tracker than the REST channel's (Rasa does not decode the path);
// that is logged, not refused, so a handoff still works without bot context.
func (c *Client) conversationPath(conv bridge.ConversationID, suffix string) string {
	esc := escapePath(string(conv))
	if esc != string(conv) {
		c.log.Warn("rasa: conversation id has characters Rasa's tracker API cannot address unescaped; tracker calls will miss the conversation",
			"conversation_id", string(conv))
	}
	return "/conversations/" + esc + suffix
}

// escapePath percent-encodes the bytes of s that are not RFC 3986 path
// characters (pchar or '/'); everything else is left as is so that Rasa, which
// does not decode path parameters, sees the id unchanged.
func escapePath(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if pathChar(ch) {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&15])
	}
	return b.String()
}

func pathChar(ch byte) bool {
	switch {
	case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9':
		return true
	}
	switch ch {
	case '-', '.', '_', '~', // unreserved
		'!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', // sub-delims
		':', '@', '/':
		return true
	}
	return false
}

// redactErr removes the token from the URL a *url.Error carries.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
	}
	return err
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.IndexByte(s, '?'); i >= 0 {
			return s[:i]
		}
		return s
	}
	q := u.Query()
	if q.Has("token") {
		q.Set("token", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// defaultThrottle is how long a 429 without Retry-After makes the bridge wait.
const defaultThrottle = 5 * time.Second

// throttledUntil reports whether an answer asks the bridge to wait (429, or
// 503 with Retry-After) and until when. Retry-After is delay-seconds or an
// HTTP-date (RFC 9110 §10.2.3); an unreadable one, or one more than a day
// ahead, counts as absent.
func throttledUntil(status int, retryAfter string, now time.Time) (time.Time, bool) {
	if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
		return time.Time{}, false
	}
	v := strings.TrimSpace(retryAfter)
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil && secs <= 24*3600 {
		return now.Add(time.Duration(secs) * time.Second), true
	}
	if at, err := http.ParseTime(v); err == nil && !at.After(now.Add(24*time.Hour)) {
		if at.Before(now) {
			at = now
		}
		return at, true
	}
	if status == http.StatusTooManyRequests {
		return now.Add(defaultThrottle), true
	}
	return time.Time{}, false // a 503 without a usable Retry-After is an ordinary failure
}

// statusError turns a non-2xx answer into the error the bridge expects.
func statusError(op string, status int, body []byte) error {
	se := &bridge.StatusError{System: "rasa", Op: op, Status: status}
	var rasaEnvelope bool
	se.Message, se.Detail, rasaEnvelope = errorEnvelope(body)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("%w: %w", se, bridge.ErrUnauthorized)
	case status == http.StatusNotFound && rasaEnvelope && op == "read tracker":
		return bridge.Permanent(fmt.Errorf("%w: %w", se, bridge.ErrNotFound))
	case status == http.StatusRequestTimeout || status == http.StatusConflict || status == http.StatusTooManyRequests:
		return se
	case status >= 400 && status < 500:
		return bridge.Permanent(se)
	}
	return se
}

// errorEnvelope extracts the message and reason of Rasa's error envelope, or
// Sanic's {"description","status","message"}, or a short text of any other
// body. rasa reports whether the body was Rasa's own envelope.
func errorEnvelope(body []byte) (message, detail string, rasa bool) {
	var env map[string]any
	if json.Unmarshal(body, &env) == nil && env != nil {
		message = clip(stringField(env, "message"))
		detail = clip(stringField(env, "reason"))
		rasa = stringField(env, "status") == "failure"
		if detail == "" {
			detail = clip(stringField(env, "description"))
		}
		return message, detail, rasa
	}
	return clip(string(body)), "", false
}

// clip makes s a single short printable line.
func clip(s string) string {
	const limit = 300
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
