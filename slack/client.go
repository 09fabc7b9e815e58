package slack

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
	"sync"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// DefaultAPIURL is where Slack's Web API methods live.
const DefaultAPIURL = "https://slack.com/api/"

// Config configures a Client.
type Config struct {
	// Token is the bot token (xoxb-…) with the scopes of manifest.yml.
	Token string
	// Channel is the id (C…) of the support channel handoffs are posted to.
	// The app must be a member (/invite @app).
	Channel string
	// APIURL overrides DefaultAPIURL (tests point it at slacktest).
	APIURL string
	// Timeout bounds one Web API call. Default 10 s.
	Timeout time.Duration
	// TranscriptTurns bounds the transcript shown in the parent message
	// (default 10).
	TranscriptTurns int
	HTTPClient      *http.Client
	Logger          *slog.Logger
	Now             func() time.Time
}

// Client talks to Slack's Web API. It is the Slack bridge.AgentDesk.
type Client struct {
	cfg  Config
	api  *url.URL
	hc   *http.Client
	log  *slog.Logger
	now  func() time.Time
	mu   sync.Mutex
	name map[string]string // user id → display name
}

// New validates cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.Token == "" {
		return nil, errors.New("slack: a bot token (xoxb-…) is required")
	}
	if cfg.Channel == "" {
		return nil, errors.New("slack: the support channel id (C…) is required")
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if !strings.HasSuffix(cfg.APIURL, "/") {
		cfg.APIURL += "/"
	}
	u, err := url.Parse(cfg.APIURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("slack: API URL %q is not an http(s) URL", cfg.APIURL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.TranscriptTurns <= 0 {
		cfg.TranscriptTurns = 10
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Client{cfg: cfg, api: u, hc: hc, log: log, now: now, name: map[string]string{}}, nil
}

// Channel returns the support channel's id.
func (c *Client) Channel() string { return c.cfg.Channel }

// APIError is an answer of Slack with "ok": false.
type APIError struct {
	Method string
	Code   string // Slack's error code, e.g. channel_not_found
	Needed string // for missing_scope
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("slack: %s: %s", e.Method, e.Code)
	if hint := hints[e.Code]; hint != "" {
		msg += " (" + hint + ")"
	}
	if e.Needed != "" {
		msg += " (add the scope " + e.Needed + " to the app and reinstall it)"
	}
	return msg
}

// hints say what to do about the errors an operator can fix.
var hints = map[string]string{
	"channel_not_found":      "check HANDOFF_SLACK_CHANNEL: it must be a channel id such as C0123ABCD the app can see; a private channel stays invisible until the app is invited with /invite @<app name>",
	"not_in_channel":         "invite the app to the support channel with /invite @<app name>",
	"invalid_auth":           "check HANDOFF_SLACK_BOT_TOKEN: it must be the app's xoxb- bot token",
	"not_authed":             "HANDOFF_SLACK_BOT_TOKEN is missing",
	"token_revoked":          "the app was uninstalled or its token revoked: reinstall it and update HANDOFF_SLACK_BOT_TOKEN",
	"account_inactive":       "the app was uninstalled or its token revoked: reinstall it and update HANDOFF_SLACK_BOT_TOKEN",
	"is_archived":            "the support channel is archived: unarchive it or configure another one",
	"not_allowed_token_type": "Socket Mode needs the app-level token (xapp-…) with the connections:write scope in HANDOFF_SLACK_APP_TOKEN, not the bot token",
}

// classify maps Slack's error codes onto the bridge's error kinds.
func classify(e *APIError) error {
	switch e.Code {
	case "invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "no_permission", "missing_scope":
		return fmt.Errorf("%w: %w", bridge.ErrUnauthorized, e)
	case "channel_not_found", "not_in_channel", "is_archived", "thread_not_found", "message_not_found":
		return fmt.Errorf("%w: %w", bridge.ErrChatClosed, e)
	case "internal_error", "fatal_error", "service_unavailable", "request_timeout":
		return e // retryable
	}
	return bridge.Permanent(e)
}

// call invokes a Web API method. A JSON body is sent as JSON (write methods);
// url.Values as a form (read methods, which do not accept JSON). out receives
// the decoded answer when ok is true.
func (c *Client) call(ctx context.Context, method string, in any, out any) error {
	return c.callAs(ctx, c.cfg.Token, method, in, out)
}

// callAs is call with another token (the app-level token of Socket Mode).
func (c *Client) callAs(ctx context.Context, token, method string, in any, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var (
		body  io.Reader
		ctype string
	)
	switch v := in.(type) {
	case url.Values:
		body, ctype = strings.NewReader(v.Encode()), "application/x-www-form-urlencoded"
	default:
		raw, err := json.Marshal(in)
		if err != nil {
			return bridge.Permanent(fmt.Errorf("slack: %s: encode request: %w", method, err))
		}
		body, ctype = bytes.NewReader(raw), "application/json; charset=utf-8"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.api.JoinPath(method).String(), body)
	if err != nil {
		return bridge.Permanent(fmt.Errorf("slack: %s: %w", method, err))
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("slack: %s: %w", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("slack: %s: read answer: %w", method, err)
	}
	var env apiResponse
	_ = json.Unmarshal(raw, &env) // a non-JSON answer leaves env zero
	if resp.StatusCode == http.StatusTooManyRequests || (resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "") {
		wait := retryAfter(resp.Header.Get("Retry-After"))
		se := &bridge.StatusError{System: "slack", Op: method, Status: resp.StatusCode, Message: env.Error}
		return &bridge.ThrottledError{Destination: "slack", Until: c.now().Add(wait), Err: se}
	}
	if resp.StatusCode != http.StatusOK {
		se := &bridge.StatusError{System: "slack", Op: method, Status: resp.StatusCode, Message: env.Error}
		if resp.StatusCode >= 500 {
			return se
		}
		return bridge.Permanent(se)
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("slack: %s: answer is not JSON: %w", method, err)
	}
	if !env.OK {
		if env.Error == "ratelimited" { // some methods say so in the body
			return &bridge.ThrottledError{Destination: "slack", Until: c.now().Add(time.Second), Err: &APIError{Method: method, Code: env.Error}}
		}
		return classify(&APIError{Method: method, Code: env.Error, Needed: env.Needed})
	}
	if env.Warning != "" {
		c.log.DebugContext(ctx, "slack warning", "method", method, "warning", env.Warning)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("slack: %s: decode answer: %w", method, err)
		}
	}
	return nil
}

// retryAfter parses Slack's Retry-After (seconds); a missing or bad value
// means one second, Slack's pace for posting to one channel.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return time.Second
	}
	if n > 3600 {
		n = 3600
	}
	return time.Duration(n) * time.Second
}

// AuthTest checks the token (auth.test) and returns the bot's user id.
func (c *Client) AuthTest(ctx context.Context) (userID string, err error) {
	var out struct {
		UserID string `json:"user_id"`
		BotID  string `json:"bot_id"`
		Team   string `json:"team"`
	}
	if err := c.call(ctx, "auth.test", url.Values{}, &out); err != nil {
		return "", err
	}
	return out.UserID, nil
}

type postMessage struct {
	Channel     string    `json:"channel"`
	Text        string    `json:"text"`
	Blocks      []block   `json:"blocks,omitempty"`
	ThreadTS    string    `json:"thread_ts,omitempty"`
	Metadata    *metadata `json:"metadata,omitempty"`
	UnfurlLinks bool      `json:"unfurl_links"`
	UnfurlMedia bool      `json:"unfurl_media"`
}

type postAnswer struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

func (c *Client) post(ctx context.Context, m postMessage) (postAnswer, error) {
	var out postAnswer
	err := c.call(ctx, "chat.postMessage", m, &out)
	return out, err
}

type updateMessage struct {
	Channel string  `json:"channel"`
	TS      string  `json:"ts"`
	Text    string  `json:"text"`
	Blocks  []block `json:"blocks"`
}

func (c *Client) update(ctx context.Context, m updateMessage) error {
	return c.call(ctx, "chat.update", m, nil)
}

type listAnswer struct {
	Messages []message `json:"messages"`
	HasMore  bool      `json:"has_more"`
	Meta     struct {
		NextCursor string `json:"next_cursor"`
	} `json:"response_metadata"`
}

// replies returns the whole thread of parent ts, parent first, with the
// messages' metadata.
func (c *Client) replies(ctx context.Context, channel, ts string) ([]message, error) {
	var all []message
	cursor := ""
	for range 50 {
		v := url.Values{"channel": {channel}, "ts": {ts}, "limit": {"200"}, "include_all_metadata": {"true"}}
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		var out listAnswer
		if err := c.call(ctx, "conversations.replies", v, &out); err != nil {
			return nil, err
		}
		all = append(all, out.Messages...)
		if cursor = out.Meta.NextCursor; !out.HasMore || cursor == "" {
			break
		}
	}
	return all, nil
}

// history returns the channel's top-level messages posted at or after oldest,
// with their metadata.
func (c *Client) history(ctx context.Context, channel string, oldest time.Time) ([]message, error) {
	var all []message
	cursor := ""
	for range 20 {
		v := url.Values{"channel": {channel}, "limit": {"200"}, "include_all_metadata": {"true"},
			"oldest": {strconv.FormatInt(oldest.Unix(), 10)}}
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		var out listAnswer
		if err := c.call(ctx, "conversations.history", v, &out); err != nil {
			return nil, err
		}
		all = append(all, out.Messages...)
		if cursor = out.Meta.NextCursor; !out.HasMore || cursor == "" {
			break
		}
	}
	return all, nil
}

// DisplayName returns how Slack shows user: the profile's display name, else
// the real name, else the user name; the id when users.info fails (the
// failure is logged, never fatal). Names are cached.
func (c *Client) DisplayName(ctx context.Context, user string) string {
	if user == "" {
		return ""
	}
	c.mu.Lock()
	n, ok := c.name[user]
	c.mu.Unlock()
	if ok {
		return n
	}
	var out struct {
		User struct {
			Name     string `json:"name"`
			RealName string `json:"real_name"`
			Profile  struct {
				DisplayName string `json:"display_name"`
				RealName    string `json:"real_name"`
			} `json:"profile"`
		} `json:"user"`
	}
	if err := c.call(ctx, "users.info", url.Values{"user": {user}}, &out); err != nil {
		c.log.WarnContext(ctx, "slack user name unavailable; showing the user id", "user", user, "err", err)
		return user
	}
	for _, n = range []string{out.User.Profile.DisplayName, out.User.Profile.RealName, out.User.RealName, out.User.Name, user} {
		if strings.TrimSpace(n) != "" {
			break
		}
	}
	c.mu.Lock()
	if len(c.name) > 10000 {
		clear(c.name)
	}
	c.name[user] = n
	c.mu.Unlock()
	return n
}
