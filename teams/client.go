package teams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/infracloudio/msbotbuilder-go/schema"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/handoffhq/handoff/bridge"
)

// Defaults of ClientConfig.
const (
	DefaultTokenURL            = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
	DefaultMultiTenantTokenURL = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
	DefaultScope               = "https://api.botframework.com/.default"
	DefaultMaxMessageBytes     = 80 << 10
)

// DefaultServiceURLHosts are the Bot Connector hosts Teams gives as
// serviceUrl: the public cloud (smba.trafficmanager.net, whose regional
// services are paths such as /amer/ or /emea/), GCC, GCC High and DoD.
var DefaultServiceURLHosts = []string{
	"smba.trafficmanager.net",
	"smba.infra.gcc.teams.microsoft.com",
	"smba.infra.gov.teams.microsoft.us",
	"smba.infra.dod.teams.microsoft.us",
}

// ClientConfig configures Client. Zero fields take the defaults noted.
type ClientConfig struct {
	// AppID and AppPassword are the bot's Entra app credentials. Required
	// unless AnonymousDev.
	AppID       string
	AppPassword string
	// TenantID replaces {tenant} in TokenURL (single-tenant bots, the default
	// for new bots).
	TenantID string
	// MultiTenant selects the legacy botframework.com token tenant.
	MultiTenant bool
	// TokenURL is the client-credentials endpoint; "{tenant}" is replaced by
	// TenantID. Default DefaultTokenURL, or DefaultMultiTenantTokenURL.
	TokenURL string
	// Scope requested for the token. Default DefaultScope.
	Scope string
	// AllowedServiceURLHosts are the only hosts the bot token is ever sent
	// to: exact host names, or "*.example.com" for any subdomain. Ports are
	// not compared. Default DefaultServiceURLHosts.
	AllowedServiceURLHosts []string
	// ExtraServiceURLHosts are allowed in addition (e.g. "127.0.0.1" for a
	// local fake connector). Plain http is accepted only for loopback hosts.
	ExtraServiceURLHosts []string
	// AnonymousDev sends no token at all and allows only loopback service
	// URLs (the Agents Playground's mock connector). Never in production.
	AnonymousDev bool
	// Timeout bounds one HTTP attempt. Default 30 s.
	Timeout time.Duration
	// MaxRetries is how many times a 412/429/5xx or transport failure is
	// retried. Default 5; negative means no retries.
	MaxRetries int
	// RetryBaseDelay and RetryMaxDelay shape the exponential backoff with
	// jitter used when no Retry-After is given. Defaults 1 s and 30 s.
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// MaxRetryAfter is the longest Retry-After honoured in place; a longer
	// one ends Send with a retryable error. Default 2 min.
	MaxRetryAfter time.Duration
	// Pacing spaces requests out under Teams' rate limits.
	Pacing Pacing
	// MaxMessageBytes is the largest activity sent, measured as Teams does:
	// the payload encoded in UTF-16. Longer text is split into several
	// activities marked "[continued]". Default 80 KiB (Teams allows ~100 KB).
	MaxMessageBytes int
	// MaxParts caps how many activities one text is split into; the rest is
	// dropped and the last part marked "[message truncated]". Default 10.
	MaxParts int
	// HTTPClient sends the requests (its redirects are never followed).
	// Default: a new client with http.DefaultTransport.
	HTTPClient *http.Client
}

// Client sends messages to Teams conversations through the Bot Connector
// REST API. It implements bridge.UserChannel and is safe for concurrent use.
type Client struct {
	cfg     ClientConfig
	log     *slog.Logger
	hosts   serviceHosts
	http    *http.Client
	tokens  *tokenCache // nil in AnonymousDev
	pacer   *pacer
	partial *partialLog
}

var _ bridge.UserChannel = (*Client)(nil)

// NewClient checks cfg, fills in the defaults and returns the client. No
// token is fetched until the first send.
func NewClient(cfg ClientConfig, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.AllowedServiceURLHosts == nil {
		cfg.AllowedServiceURLHosts = DefaultServiceURLHosts
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = 5
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.RetryBaseDelay <= 0 {
		cfg.RetryBaseDelay = time.Second
	}
	if cfg.RetryMaxDelay <= 0 {
		cfg.RetryMaxDelay = 30 * time.Second
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 2 * time.Minute
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxMessageBytes < 4096 {
		return nil, fmt.Errorf("teams: client: MaxMessageBytes %d is below 4096", cfg.MaxMessageBytes)
	}
	if cfg.MaxParts <= 0 {
		cfg.MaxParts = 10
	}
	hc := &http.Client{}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		hc = &c
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	c := &Client{cfg: cfg, log: log, http: hc, pacer: newPacer(cfg.Pacing), partial: newPartialLog()}
	c.hosts = newServiceHosts(cfg.AllowedServiceURLHosts, cfg.ExtraServiceURLHosts, cfg.AnonymousDev)
	if cfg.AnonymousDev {
		log.Warn("teams: ANONYMOUS DEV MODE: sending without a token, to loopback service URLs only; never run this in production")
		return c, nil
	}
	if cfg.AppID == "" || cfg.AppPassword == "" {
		return nil, errors.New("teams: client: AppID and AppPassword are required")
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = DefaultTokenURL
		if cfg.MultiTenant {
			cfg.TokenURL = DefaultMultiTenantTokenURL
		}
	}
	if strings.Contains(cfg.TokenURL, "{tenant}") {
		if cfg.TenantID == "" {
			return nil, errors.New("teams: client: TenantID is required for a single-tenant bot (or set MultiTenant)")
		}
		cfg.TokenURL = strings.ReplaceAll(cfg.TokenURL, "{tenant}", url.PathEscape(cfg.TenantID))
	}
	if cfg.Scope == "" {
		cfg.Scope = DefaultScope
	}
	c.cfg = cfg
	c.tokens = &tokenCache{
		client: hc,
		cc: clientcredentials.Config{
			ClientID:     cfg.AppID,
			ClientSecret: cfg.AppPassword,
			TokenURL:     cfg.TokenURL,
			Scopes:       []string{cfg.Scope},
			AuthStyle:    oauth2.AuthStyleInParams,
		},
	}
	return c, nil
}

// Send delivers m to the conversation: the text first (split into several
// activities when it is too long), then the image, then the buttons as an
// Adaptive Card. It returns the id of the first activity ("" when Teams
// answered 202 without one).
//
// Errors: a Permanent error when ref's service URL is not allow-listed (no
// token leaves the process), when the message is empty or another 4xx comes
// back (*bridge.StatusError inside); bridge.ErrUserUnreachable on 403
// MessageWritesBlocked (and the other "bot blocked/removed" codes);
// bridge.ErrUnauthorized when the credentials are refused; a
// *bridge.ThrottledError when 429 (or 503 with Retry-After) asks for a wait
// that outlasts the retries, MaxRetryAfter or ctx's deadline; a plain error
// when 412/5xx or transport failures outlast the retries. If Send fails after
// some activities went out, a later Send of the same message to the same
// conversation resumes after them instead of repeating them.
func (c *Client) Send(ctx context.Context, ref bridge.ConversationRef, m bridge.UserMessage) (string, error) {
	ep, err := c.endpoint(ctx, ref)
	if err != nil {
		return "", err
	}
	pieces, err := c.pieces(ref, m)
	if err != nil {
		return "", err
	}
	cp, release, err := c.pacer.acquire(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("teams: send: %w", err)
	}
	defer release()

	key := partialKeyOf(ref, m)
	start, id := c.partial.resume(key)
	if start > 0 {
		c.log.InfoContext(ctx, "teams: resuming a partly sent message", "conversation_id", string(ref.Conversation), "sent_parts", start, "parts", len(pieces))
	}
	for i := start; i < len(pieces); i++ {
		pid, err := c.sendPiece(ctx, cp, ep, pieces[i], 0)
		if err != nil {
			if i > 0 {
				c.partial.record(key, i, id)
			}
			return "", err
		}
		if i == 0 {
			id = pid
		}
	}
	c.partial.forget(key)
	return id, nil
}

// Typing shows the typing indicator. It is best effort: when a send to the
// conversation is under way or its pacing budget is used up, it does
// nothing; it is never retried. Returns ErrUserUnreachable like Send, and
// other failures as plain errors.
func (c *Client) Typing(ctx context.Context, ref bridge.ConversationRef) error {
	ep, err := c.endpoint(ctx, ref)
	if err != nil {
		return err
	}
	cp, release, ok := c.pacer.tryAcquire(ref)
	if !ok {
		return nil
	}
	defer release()
	if c.pacer.take(cp) > 0 {
		c.log.DebugContext(ctx, "teams: typing skipped: pacing", "conversation_id", string(ref.Conversation))
		return nil
	}
	act := c.base(ref)
	act.Type = string(schema.Typing)
	body, err := marshalActivity(act)
	if err != nil {
		return err
	}
	res, err := c.do(ctx, http.MethodPost, ep, body)
	c.pacer.observe(cp, err == nil && res.status == http.StatusTooManyRequests)
	if err != nil {
		return err
	}
	if res.status/100 == 2 {
		return nil
	}
	if res.status == http.StatusUnauthorized {
		c.tokens.invalidate(res.token)
	}
	return c.statusErr("send typing", res)
}

// piece is one activity of a message.
type piece struct {
	act    outActivity
	isText bool
	text   string // text pieces: the text without marker
	marker string // text pieces: appended marker ("" for the last part)
}

func (p piece) activity() outActivity {
	a := p.act
	if p.isText {
		a.Text = p.text + p.marker
	}
	return a
}

// outActivity is the activity we send: only the fields Teams needs, with no
// zero timestamps or empty objects.
type outActivity struct {
	Type         string                     `json:"type"`
	ID           string                     `json:"id,omitempty"` // updates only
	Text         string                     `json:"text,omitempty"`
	From         schema.ChannelAccount      `json:"from,omitzero"`
	Recipient    schema.ChannelAccount      `json:"recipient,omitzero"`
	Conversation schema.ConversationAccount `json:"conversation,omitzero"`
	Attachments  []schema.Attachment        `json:"attachments,omitempty"`
}

func (c *Client) base(ref bridge.ConversationRef) outActivity {
	return outActivity{
		Type:      string(schema.Message),
		From:      schema.ChannelAccount{ID: ref.BotID, Name: ref.BotName},
		Recipient: schema.ChannelAccount{ID: ref.UserID, Name: ref.UserName, AadObjectID: ref.UserAADID},
		Conversation: schema.ConversationAccount{
			ID:               string(ref.Conversation),
			ConversationType: ref.ConversationType,
			TenantID:         ref.TenantID,
		},
	}
}

// pieces turns m into the activities to send, in order.
func (c *Client) pieces(ref bridge.ConversationRef, m bridge.UserMessage) ([]piece, error) {
	base := c.base(ref)
	var ps []piece
	text := strings.TrimSpace(m.Text)
	switch {
	case m.Author != "":
		// Who is speaking: the agent's name in bold on its own line.
		text = strings.TrimSpace(authorLine(m.Author) + text)
	case m.Notice && text != "":
		text = noticePrefix + text
	}
	if text != "" {
		env, err := marshalActivity(base)
		if err != nil {
			return nil, err
		}
		budget := c.cfg.MaxMessageBytes - utf16Size(env) - 2*len(`,"text":""`) - jsonUTF16Size(truncatedMarker)
		parts := splitText(text, budget)
		truncated := len(parts) > c.cfg.MaxParts
		if truncated {
			parts = parts[:c.cfg.MaxParts]
		}
		for i, t := range parts {
			p := piece{act: base, isText: true, text: t, marker: continuedMarker}
			if i == len(parts)-1 {
				p.marker = ""
				if truncated {
					p.marker = truncatedMarker
				}
			}
			ps = append(ps, p)
		}
	}
	if m.ImageURL != "" {
		u, err := url.Parse(m.ImageURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, bridge.Permanent(fmt.Errorf("teams: image URL %q is not an http(s) URL", m.ImageURL))
		}
		a := base
		a.Attachments = []schema.Attachment{{ContentType: imageContentType(u.Path), ContentURL: m.ImageURL}}
		ps = append(ps, piece{act: a})
	}
	for _, at := range m.Attachments {
		card, err := attachmentCard(at)
		if err != nil {
			return nil, err
		}
		a := base
		a.Attachments = []schema.Attachment{card}
		ps = append(ps, piece{act: a})
	}
	if len(m.Buttons) > 0 {
		a := base
		a.Attachments = []schema.Attachment{buttonCard(m.Buttons)}
		ps = append(ps, piece{act: a})
	}
	if len(ps) == 0 {
		return nil, bridge.Permanent(errors.New("teams: empty message"))
	}
	return ps, nil
}

func imageContentType(p string) string {
	switch strings.ToLower(path.Ext(p)) {
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".gif":
		return "image/gif"
	default:
		return "image/png"
	}
}

// noticePrefix marks the bridge's own notices, so they read apart from the
// bot's and the agent's messages.
const noticePrefix = "ℹ️ "

// authorLine renders who is speaking: the agent's name in bold on a line of
// its own, above the message.
func authorLine(author string) string { return "**" + escapeMarkdown(author) + "**\n\n" }

// ReadMessage undoes what Send adds to a message's text: it returns the
// agent's name (when the text starts with it), the message itself, and
// whether it is a bridge notice. Tests and the demo page use it to compare
// what Teams shows with what the bridge stored.
func ReadMessage(text string) (author, body string, notice bool) {
	if rest, ok := strings.CutPrefix(text, noticePrefix); ok {
		return "", rest, true
	}
	if rest, ok := strings.CutPrefix(text, "**"); ok {
		if i := strings.Index(rest, "**\n\n"); i > 0 {
			return unescapeMarkdown(rest[:i]), rest[i+len("**\n\n"):], false
		}
		if name, ok := strings.CutSuffix(rest, "**"); ok && !strings.Contains(name, "**") {
			return unescapeMarkdown(name), "", false // a name line alone (attachments follow)
		}
	}
	return "", text, false
}

// Quick-reply buttons are plain Action.Submit actions: a click posts a
// message activity whose value is the data, and Handler reads the payload
// from it. No msteams imBack/messageBack hint is added: Microsoft's own Teams
// client in the Agents Playground refuses to submit an action that carries
// one ("Cannot add property msTeams, object is not extensible"; proved with
// real clicks by TestPlaygroundInBrowser), while the plain submit works there
// and in Teams.
type submitData struct {
	Payload string `json:"payload"`
}

func submitAction(b bridge.Button) cardAction {
	if len(b.Data) > 0 {
		return cardAction{Type: "Action.Submit", Title: b.Title, Data: b.Data}
	}
	title, payload := b.Title, b.Payload
	if title == "" {
		title = payload
	}
	if payload == "" {
		payload = title
	}
	return cardAction{Type: "Action.Submit", Title: title, Data: submitData{Payload: payload}}
}

func marshalActivity(a outActivity) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(a); err != nil {
		return nil, fmt.Errorf("teams: encode activity: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// errMessageTooBig marks a 413 MessageSizeTooBig answer.
var errMessageTooBig = errors.New("teams: message too big")

// minSplitBytes is the smallest text Send still halves after a 413.
const minSplitBytes = 2048

// sendPiece posts one activity; a text refused as too big is halved and its
// halves sent instead (recursively, a few times at most).
func (c *Client) sendPiece(ctx context.Context, cp *convPace, ep string, p piece, depth int) (string, error) {
	body, err := marshalActivity(p.activity())
	if err != nil {
		return "", err
	}
	id, err := c.post(ctx, cp, ep, body)
	if !errors.Is(err, errMessageTooBig) || !p.isText || depth >= 6 || jsonUTF16Size(p.text) < minSplitBytes {
		return id, err
	}
	halves := splitText(p.text, jsonUTF16Size(p.text)/2+16)
	c.log.WarnContext(ctx, "teams: message too big for Teams, sending it in parts", "conversation_id", p.act.Conversation.ID, "parts", len(halves), "payload_utf16_bytes", utf16Size(body))
	id = ""
	for i, h := range halves {
		hp := p
		hp.text, hp.marker = h, continuedMarker
		if i == len(halves)-1 {
			hp.marker = p.marker
		}
		hid, err := c.sendPiece(ctx, cp, ep, hp, depth+1)
		if err != nil {
			return "", err
		}
		if i == 0 {
			id = hid
		}
	}
	return id, nil
}

// post sends one activity, paced and retried. It returns the new activity id.
func (c *Client) post(ctx context.Context, cp *convPace, ep string, body []byte) (string, error) {
	return c.call(ctx, cp, http.MethodPost, ep, body)
}

// call makes one paced, retried request (POST a new activity, PUT an update)
// and returns the activity id of the answer.
func (c *Client) call(ctx context.Context, cp *convPace, method, ep string, body []byte) (string, error) {
	reauthed := false
	for attempt := 0; ; attempt++ {
		// Fetch the token before the pacer admits the request, so a token
		// renewal cannot hold admitted requests back and release them in a
		// clump that the connector would count in one window.
		if c.tokens != nil {
			if _, err := c.tokens.get(ctx); err != nil {
				return "", err
			}
		}
		if err := c.pacer.wait(ctx, cp); err != nil {
			return "", fmt.Errorf("teams: send activity: %w", err)
		}
		res, err := c.do(ctx, method, ep, body)
		c.pacer.observe(cp, err == nil && res.status == http.StatusTooManyRequests)
		var wait time.Duration
		var lastErr error
		throttled := false
		switch {
		case err != nil:
			if ctx.Err() != nil || bridge.IsPermanent(err) {
				return "", err
			}
			lastErr, wait = err, c.backoff(attempt)
		case res.status/100 == 2:
			var rr schema.ResourceResponse
			if len(bytes.TrimSpace(res.body)) > 0 {
				_ = json.Unmarshal(res.body, &rr) // a body that is not a ResourceResponse just has no id
			}
			return rr.ID, nil
		case res.status == http.StatusUnauthorized && !reauthed && c.tokens != nil:
			c.log.InfoContext(ctx, "teams: connector refused the token; fetching a new one")
			c.tokens.invalidate(res.token)
			reauthed = true
			attempt--
			continue
		case res.status == http.StatusTooManyRequests || res.status == http.StatusServiceUnavailable && res.header.Get("Retry-After") != "":
			lastErr, throttled = c.statusErr("send activity", res), true
			wait = c.backoff(attempt)
			if d, ok := retryAfter(res.header.Get("Retry-After"), time.Now()); ok {
				wait = d
			}
		case res.status == http.StatusPreconditionFailed || res.status >= 500:
			lastErr, wait = c.statusErr("send activity", res), c.backoff(attempt)
		default:
			return "", c.statusErr("send activity", res)
		}
		if throttled && c.outlasts(ctx, attempt, wait) {
			// The connector asked us to wait longer than this call may: hand
			// the wait to the caller, which reschedules without counting a
			// failure and backs off every conversation.
			return "", &bridge.ThrottledError{Destination: "teams", Until: time.Now().Add(wait), Err: lastErr}
		}
		if attempt >= c.cfg.MaxRetries {
			return "", fmt.Errorf("teams: send activity: gave up after %d attempts: %w", attempt+1, lastErr)
		}
		if wait > c.cfg.MaxRetryAfter {
			return "", fmt.Errorf("teams: send activity: asked to wait %s: %w", wait, lastErr)
		}
		c.log.DebugContext(ctx, "teams: retrying send", "attempt", attempt+1, "wait", wait, "err", lastErr)
		if err := sleep(ctx, wait); err != nil {
			return "", fmt.Errorf("teams: send activity: %w (last error: %w)", err, lastErr)
		}
	}
}

// outlasts reports whether waiting wait before the next attempt is beyond
// what this call may do: no retries left, longer than MaxRetryAfter, or past
// ctx's deadline.
func (c *Client) outlasts(ctx context.Context, attempt int, wait time.Duration) bool {
	if attempt >= c.cfg.MaxRetries || wait > c.cfg.MaxRetryAfter {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && time.Now().Add(wait).After(dl)
}

// response is what one HTTP attempt returned.
type response struct {
	status int
	header http.Header
	body   []byte
	token  string // the bearer used, to invalidate it on 401
}

// do makes one HTTP attempt.
func (c *Client) do(ctx context.Context, method, ep string, body []byte) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, ep, bytes.NewReader(body))
	if err != nil {
		return response{}, bridge.Permanent(fmt.Errorf("teams: build request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept", "application/json")
	var token string
	if c.tokens != nil {
		if token, err = c.tokens.get(ctx); err != nil {
			return response{}, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("teams: post activity: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil && resp.StatusCode/100 != 2 {
		return response{}, fmt.Errorf("teams: read response: %w", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b, token: token}, nil
}

// Error codes meaning Teams will not deliver to the conversation any more:
// the user blocked or removed the bot, or an admin disabled it. Teams puts
// them in error.code, or as a subCode inside a JSON document carried in the
// "message" string next to "errorCode": 209, depending on the service.
var unreachableCodes = []string{"MessageWritesBlocked", "ConversationBlockedByUser", "BotNotInConversationRoster", "BotDisabledByAdmin"}

// errorCodeWritesBlocked is Teams' numeric errorCode for MessageWritesBlocked.
const errorCodeWritesBlocked = 209

// statusErr turns a non-2xx answer into the error Send returns.
func (c *Client) statusErr(op string, res response) error {
	info := parseErrorBody(res.body)
	se := &bridge.StatusError{System: "teams", Op: op, Status: res.status, Message: info.message, Detail: info.code}
	switch {
	case res.status == http.StatusForbidden && info.unreachable():
		return fmt.Errorf("teams: %s: %w: %w", op, bridge.ErrUserUnreachable, se)
	case res.status == http.StatusUnauthorized:
		return fmt.Errorf("teams: %s: %w: %w", op, bridge.ErrUnauthorized, se)
	case res.status == http.StatusRequestEntityTooLarge:
		return bridge.Permanent(fmt.Errorf("%w: %w", errMessageTooBig, se))
	case res.status == http.StatusTooManyRequests || res.status == http.StatusPreconditionFailed || res.status >= 500:
		return se
	default:
		return bridge.Permanent(se)
	}
}

// errorBody is what we make of a Bot Connector error answer.
type errorBody struct {
	code      string   // error.code (or the first code found)
	message   string   // error.message, else the top-level message/details
	codes     []string // every code/subCode found, however nested
	errorCode int      // Teams' numeric errorCode, 0 if none
	raw       []byte
}

func (e errorBody) unreachable() bool {
	if e.errorCode == errorCodeWritesBlocked {
		return true
	}
	for _, want := range unreachableCodes {
		for _, c := range e.codes {
			if strings.EqualFold(c, want) {
				return true
			}
		}
		// The envelope nesting varies between services; the code itself is
		// distinctive enough to trust anywhere in the body.
		if bytes.Contains(e.raw, []byte(want)) {
			return true
		}
	}
	return false
}

// parseErrorBody reads both envelope shapes Teams uses:
// {"error":{"code","message","innerHttpError"}} and
// {"errorCode":209,"message":"{\"subCode\":\"MessageWritesBlocked\",\"details\":…}"}.
func parseErrorBody(body []byte) errorBody {
	e := errorBody{raw: body}
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		ErrorCode json.Number `json:"errorCode"`
		Message   string      `json:"message"`
	}
	_ = json.Unmarshal(body, &env) // not an envelope: the status alone tells
	e.code, e.message = env.Error.Code, env.Error.Message
	if n, err := env.ErrorCode.Int64(); err == nil {
		e.errorCode = int(n)
	}
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > 8 {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if s, ok := val.(string); ok && s != "" && (strings.EqualFold(k, "code") || strings.EqualFold(k, "subCode")) {
					e.codes = append(e.codes, s)
				}
				walk(val, depth+1)
			}
		case []any:
			for _, val := range x {
				walk(val, depth+1)
			}
		case string: // a JSON document inside a string
			if t := strings.TrimSpace(x); strings.HasPrefix(t, "{") {
				var inner any
				if json.Unmarshal([]byte(t), &inner) == nil {
					walk(inner, depth+1)
					if m, ok := inner.(map[string]any); ok && e.message == "" {
						e.message, _ = m["details"].(string)
					}
				}
			}
		}
	}
	var v any
	if json.Unmarshal(body, &v) == nil {
		walk(v, 0)
	}
	if e.message == "" {
		e.message = env.Message
	}
	if e.code == "" && len(e.codes) > 0 {
		e.code = e.codes[0]
	}
	return e
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(h, 64); err == nil {
		if !(s >= 0 && s <= 24*3600) { // also NaN, which compares false
			return 0, false
		}
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// backoff is exponential with jitter: a random delay in [d/2, d] where
// d = RetryBaseDelay × 2^attempt, capped at RetryMaxDelay.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.RetryBaseDelay << min(attempt, 20)
	if d <= 0 || d > c.cfg.RetryMaxDelay {
		d = c.cfg.RetryMaxDelay
	}
	return d/2 + rand.N(d/2+1)
}

// endpoint checks ref and returns its send-to-conversation URL. A service URL
// whose host is not allow-listed is refused before any token is fetched.
func (c *Client) endpoint(ctx context.Context, ref bridge.ConversationRef) (string, error) {
	if ref.Conversation == "" {
		return "", bridge.Permanent(errors.New("teams: conversation reference has no conversation id"))
	}
	u, err := c.hosts.check(ref.ServiceURL)
	if err != nil {
		c.log.WarnContext(ctx, "teams: refusing to send to a service URL that is not allow-listed", "service_url", ref.ServiceURL, "conversation_id", string(ref.Conversation))
		return "", bridge.Permanent(err)
	}
	base := strings.TrimSuffix(u.String(), "/")
	return base + "/v3/conversations/" + escapeSegment(string(ref.Conversation)) + "/activities", nil
}

// escapeSegment escapes a conversation id like JavaScript's
// encodeURIComponent, as Microsoft's SDKs do (":" "@" ";" included).
func escapeSegment(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// tokenCache holds the bot's access token and fetches a new one shortly
// before it expires. It is safe for concurrent use.
type tokenCache struct {
	cc     clientcredentials.Config
	client *http.Client

	mu  sync.Mutex
	tok *oauth2.Token
}

// get returns a valid access token. A refusal by the token endpoint (4xx)
// wraps bridge.ErrUnauthorized; other failures are plain errors.
func (t *tokenCache) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != nil && time.Until(t.tok.Expiry) > time.Minute {
		return t.tok.AccessToken, nil
	}
	tok, err := t.cc.Token(context.WithValue(ctx, oauth2.HTTPClient, t.client))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode/100 == 4 && re.Response.StatusCode != http.StatusTooManyRequests {
			return "", fmt.Errorf("teams: token: %w: %w", bridge.ErrUnauthorized, err)
		}
		return "", fmt.Errorf("teams: token: %w", err)
	}
	if tok.AccessToken == "" {
		return "", errors.New("teams: token: empty access token")
	}
	if tok.Expiry.IsZero() {
		tok.Expiry = time.Now().Add(5 * time.Minute)
	}
	t.tok = tok
	return tok.AccessToken, nil
}

// invalidate forgets the token if it is still the one that was refused.
func (t *tokenCache) invalidate(used string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != nil && t.tok.AccessToken == used {
		t.tok = nil
	}
}
