package teamstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Activity is a Teams-shaped activity as the channel posts it to a bot.
type Activity struct {
	Type           string         `json:"type"`
	ID             string         `json:"id,omitempty"`
	Timestamp      time.Time      `json:"timestamp,omitzero"`
	LocalTimestamp string         `json:"localTimestamp,omitempty"`
	ServiceURL     string         `json:"serviceUrl"`
	ChannelID      string         `json:"channelId"`
	From           Account        `json:"from"`
	Conversation   Conversation   `json:"conversation"`
	Recipient      Account        `json:"recipient"`
	Text           string         `json:"text,omitempty"`
	TextFormat     string         `json:"textFormat,omitempty"`
	Locale         string         `json:"locale,omitempty"`
	Attachments    []Attachment   `json:"attachments,omitempty"`
	Entities       []any          `json:"entities,omitempty"`
	ChannelData    map[string]any `json:"channelData,omitempty"`
	Value          any            `json:"value,omitempty"`
	Action         string         `json:"action,omitempty"`
	MembersAdded   []Account      `json:"membersAdded,omitempty"`
	MembersRemoved []Account      `json:"membersRemoved,omitempty"`
	ReplyToID      string         `json:"replyToId,omitempty"`
}

// Account is a user or bot in an activity.
type Account struct {
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	AADObjectID string `json:"aadObjectId,omitempty"`
}

// Conversation is the conversation of an activity.
type Conversation struct {
	ID               string `json:"id"`
	ConversationType string `json:"conversationType,omitempty"`
	TenantID         string `json:"tenantId,omitempty"`
	IsGroup          bool   `json:"isGroup,omitempty"`
}

// Attachment is a file, image or card attached to an activity.
type Attachment struct {
	ContentType string `json:"contentType"`
	ContentURL  string `json:"contentUrl,omitempty"`
	Name        string `json:"name,omitempty"`
	Content     any    `json:"content,omitempty"`
}

// User is a Teams user.
type User struct {
	ID          string // "29:…"
	Name        string
	AADObjectID string
}

// NewUser returns a user with ids derived from name.
func NewUser(name string) User {
	h := sha256.Sum256([]byte(name))
	return User{
		ID:          "29:1" + base64.RawURLEncoding.EncodeToString(h[:24]),
		Name:        name,
		AADObjectID: fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16]),
	}
}

// Channel plays Teams: it builds activities for a bot and posts them to the
// bot's messaging endpoint with a token minted by Issuer.
type Channel struct {
	Issuer     *Issuer
	AppID      string // the bot's app id: the token audience; the bot is "28:"+AppID
	BotName    string
	ServiceURL string // the serviceUrl of the activities, e.g. Connector.ServiceURL()
	BotURL     string // the bot's messaging endpoint, e.g. http://127.0.0.1:3978/api/messages
	TenantID   string
	// HTTPClient posts the activities; default http.DefaultClient.
	HTTPClient *http.Client
}

var activitySeq atomic.Int64

// BotID is the bot's channel account id.
func (c *Channel) BotID() string { return "28:" + c.AppID }

// ConversationID returns the id of u's personal (1:1) conversation with the
// bot, stable for the pair.
func (c *Channel) ConversationID(u User) string {
	h := sha256.Sum256([]byte(c.AppID + "|" + u.ID))
	return "a:1" + base64.RawURLEncoding.EncodeToString(h[:30])
}

// base builds an activity of type typ from u in the personal conversation.
func (c *Channel) base(u User, typ string) Activity {
	now := time.Now().UTC()
	tenant := c.TenantID
	return Activity{
		Type:           typ,
		ID:             fmt.Sprintf("%d%06d", now.UnixMilli(), activitySeq.Add(1)%1_000_000),
		Timestamp:      now,
		LocalTimestamp: now.Format("2006-01-02T15:04:05.000Z07:00"),
		ServiceURL:     c.ServiceURL,
		ChannelID:      "msteams",
		From:           Account(u),
		Conversation:   Conversation{ID: c.ConversationID(u), ConversationType: "personal", TenantID: tenant},
		Recipient:      Account{ID: c.BotID(), Name: c.BotName},
		Locale:         "en-US",
		ChannelData:    map[string]any{"tenant": map[string]any{"id": tenant}},
	}
}

// Message is a text message from u.
func (c *Channel) Message(u User, text string) Activity {
	a := c.base(u, "message")
	a.Text = text
	a.TextFormat = "plain"
	a.Entities = []any{map[string]any{"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web", "timezone": "Europe/Berlin"}}
	return a
}

// CardSubmit is what Teams posts when u presses an Action.Submit button:
// a message without text whose value is the action's data.
func (c *Channel) CardSubmit(u User, value any) Activity {
	a := c.base(u, "message")
	a.Value = value
	return a
}

// ConversationUpdate is posted when the bot is added to u's personal scope:
// membersAdded holds the bot.
func (c *Channel) ConversationUpdate(u User) Activity {
	a := c.base(u, "conversationUpdate")
	a.MembersAdded = []Account{{ID: c.BotID()}}
	a.ChannelData["eventType"] = "teamMemberAdded"
	return a
}

// InstallationUpdate is posted when u installs ("add") or uninstalls
// ("remove") the app.
func (c *Channel) InstallationUpdate(u User, action string) Activity {
	a := c.base(u, "installationUpdate")
	a.Action = action
	return a
}

// Typing is posted while u types.
func (c *Channel) Typing(u User) Activity { return c.base(u, "typing") }

// Token mints a token of kind for activities carrying c.ServiceURL.
func (c *Channel) Token(kind TokenKind) string {
	return c.Issuer.Mint(kind, c.AppID, c.ServiceURL)
}

// Post sends a to the bot with a valid token for a.ServiceURL and returns the
// HTTP status.
func (c *Channel) Post(ctx context.Context, a Activity) (int, error) {
	return c.PostWithAuth(ctx, a, "Bearer "+c.Issuer.Mint(TokenValid, c.AppID, a.ServiceURL))
}

// PostWithAuth sends a with the given Authorization header ("" = none).
func (c *Channel) PostWithAuth(ctx context.Context, a Activity, authorization string) (int, error) {
	body, err := json.Marshal(a)
	if err != nil {
		return 0, fmt.Errorf("teamstest: encode activity: %w", err)
	}
	return c.PostRaw(ctx, body, authorization)
}

// PostRaw sends body as it is with the given Authorization header.
func (c *Channel) PostRaw(ctx context.Context, body []byte, authorization string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BotURL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}

// Bearer formats a token as an Authorization header value.
func Bearer(token string) string { return "Bearer " + strings.TrimSpace(token) }
