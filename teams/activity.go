package teams

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/infracloudio/msbotbuilder-go/schema"

	"github.com/handoffhq/handoff/bridge"
)

// wireActivity is schema.Activity with the fields its types cannot decode
// robustly (a non-object value, odd timestamps, channelData) replaced by raw
// JSON that mapActivity interprets itself.
type wireActivity struct {
	schema.Activity
	From           wireAccount     `json:"from"`
	Timestamp      json.RawMessage `json:"timestamp,omitempty"`
	LocalTimestamp json.RawMessage `json:"localTimestamp,omitempty"`
	Expiration     json.RawMessage `json:"expiration,omitempty"`
	Value          json.RawMessage `json:"value,omitempty"`
	ChannelData    json.RawMessage `json:"channelData,omitempty"`
}

// wireAccount is the sender, with the e-mail fields some Teams payloads carry.
type wireAccount struct {
	schema.ChannelAccount
	UserPrincipalName string `json:"userPrincipalName,omitempty"`
	Email             string `json:"email,omitempty"`
}

// decodeActivity decodes an activity defensively: the body must be a JSON
// object, but a field of an unexpected type (say "isGroup":"yes") is skipped
// rather than failing the whole activity, as Teams adds shapes over time.
func decodeActivity(body []byte) (*wireActivity, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("teams: activity is not a JSON object")
	}
	var a wireActivity
	if err := json.Unmarshal(body, &a); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) || typeErr.Field == "" {
			return nil, fmt.Errorf("teams: decode activity: %w", err)
		}
		// A field of the wrong type was skipped; the rest is decoded.
	}
	return &a, nil
}

// checkActivity refuses what no Teams activity lacks: an id, a sender and a
// recipient (each with an id), and a "text" that is a string when present.
// Activities failing it would be stored under no key or answered to no one.
func checkActivity(body []byte, a *wireActivity) error {
	var raw struct {
		Text json.RawMessage `json:"text"`
	}
	_ = json.Unmarshal(body, &raw) // the body decoded once already
	if t := bytes.TrimSpace(raw.Text); len(t) > 0 && t[0] != '"' && !bytes.Equal(t, []byte("null")) {
		return fmt.Errorf("teams: activity text is not a string (%.20s)", t)
	}
	switch {
	case strings.TrimSpace(a.ID) == "":
		return errors.New("teams: activity without id")
	case strings.TrimSpace(a.From.ID) == "":
		return errors.New("teams: activity without from.id")
	case strings.TrimSpace(a.Recipient.ID) == "":
		return errors.New("teams: activity without recipient.id")
	}
	return nil
}

// Attachment content types that carry no link worth passing on.
const (
	contentTypeHTML         = "text/html"
	contentTypeFileDownload = "application/vnd.microsoft.teams.file.download.info"
)

// mapActivity reduces an authenticated activity to what the relay needs. It
// returns ok=false for activity types the bridge does not act on, and an
// error when an activity it would act on lacks its conversation.
func mapActivity(a *wireActivity, now time.Time) (bridge.UserActivity, bool, error) {
	ua := bridge.UserActivity{ID: a.ID, At: parseTime(a.Timestamp, now)}
	switch a.Type {
	case schema.Message:
		ua.Kind = bridge.ActivityMessage
		if sub := submitValue(a.Value); sub != nil && strings.TrimSpace(a.Text) == "" {
			ua.Submit = sub // a card's own action: data, never text
			break
		}
		ua.Text = messageText(a)
		ua.LostFiles = lostFiles(a)
		if ua.Text == "" && len(ua.LostFiles) == 0 {
			return bridge.UserActivity{}, false, nil
		}
	case schema.ConversationUpdate:
		ua.Kind = bridge.ActivityUpdate
		switch {
		case containsAccount(a.MembersAdded, a.Recipient.ID):
			ua.Kind = bridge.ActivityInstall
		case containsAccount(a.MembersRemoved, a.Recipient.ID):
			ua.Kind = bridge.ActivityRemoved
		}
	case schema.InstallationUpdate:
		switch strings.ToLower(a.Action) {
		case "add":
			ua.Kind = bridge.ActivityInstall
		case "remove":
			ua.Kind = bridge.ActivityRemoved
		default: // add-upgrade, remove-upgrade
			ua.Kind = bridge.ActivityUpdate
		}
	case schema.Typing:
		ua.Kind = bridge.ActivityTyping
	default:
		return bridge.UserActivity{}, false, nil
	}
	if a.Conversation.ID == "" {
		return bridge.UserActivity{}, false, fmt.Errorf("teams: %s activity without conversation id", a.Type)
	}
	ua.Ref = conversationRef(a, now)
	ua.UserEmail = a.From.UserPrincipalName
	if ua.UserEmail == "" {
		ua.UserEmail = a.From.Email
	}
	return ua, true, nil
}

// conversationRef captures what a proactive send to the conversation needs.
func conversationRef(a *wireActivity, now time.Time) bridge.ConversationRef {
	convType := a.Conversation.ConversationType
	if convType == "" && a.Conversation.IsGroup {
		convType = "groupChat"
	}
	tenant := a.Conversation.TenantID
	if tenant == "" {
		tenant = channelDataTenant(a.ChannelData)
	}
	return bridge.ConversationRef{
		Conversation:     bridge.ConversationID(a.Conversation.ID),
		ServiceURL:       a.ServiceURL,
		ChannelID:        a.ChannelID,
		ConversationType: convType,
		TenantID:         tenant,
		BotID:            a.Recipient.ID,
		BotName:          a.Recipient.Name,
		UserID:           a.From.ID,
		UserName:         a.From.Name,
		UserAADID:        a.From.AadObjectID,
		Locale:           a.Locale,
		UpdatedAt:        now,
	}
}

// messageText is the text of a message activity: the typed text or, when
// there is none, the card submit's value; attachment links follow on their
// own lines.
func messageText(a *wireActivity) string {
	text := strings.TrimSpace(a.Text)
	if text == "" {
		text = valueText(a.Value)
	}
	var lines []string
	if text != "" {
		lines = append(lines, text)
	}
	for _, att := range a.Attachments {
		if link := attachmentLink(att); link != "" {
			lines = append(lines, link)
		}
	}
	return strings.Join(lines, "\n")
}

// submitValue returns the value of a card submit whose data names a bridge
// action (bridge.SubmitAction "handoff.…", Button.Data), with the card's
// input values, as strings; nil for any other value.
func submitValue(raw json.RawMessage) map[string]string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v map[string]any
	if len(bytes.TrimSpace(raw)) == 0 || dec.Decode(&v) != nil {
		return nil
	}
	if action, ok := v[bridge.SubmitAction].(string); !ok || !strings.HasPrefix(action, "handoff.") {
		return nil
	}
	out := make(map[string]string, len(v))
	for k, x := range v {
		switch x := x.(type) {
		case string:
			out[k] = x
		case json.Number:
			out[k] = x.String()
		}
	}
	return out
}

// valueText renders a card submit's value: its "payload" or "text" string
// field, else the value as compact JSON (without Teams' "msteams" routing
// hints). A bare string is used as is.
func valueText(raw json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if len(bytes.TrimSpace(raw)) == 0 || dec.Decode(&v) != nil || v == nil {
		return ""
	}
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x)
	case map[string]any:
		for _, k := range []string{"payload", "text"} {
			if s, ok := x[k].(string); ok && strings.TrimSpace(s) != "" {
				return strings.TrimSpace(s)
			}
		}
		delete(x, "msteams")
		if len(x) == 0 {
			return ""
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// attachmentLink renders a file as "name (type): url", or "" when it has no
// http(s) link or is not a file (the HTML copy of the message, cards). A
// file the user sends in a Teams 1:1 chat arrives as
// application/vnd.microsoft.teams.file.download.info with content
// {downloadUrl, uniqueId, fileType}; images and other clients' files carry
// contentUrl.
func attachmentLink(att schema.Attachment) string {
	if !isFile(att) {
		return ""
	}
	link, kind := fileLink(att)
	u, err := url.Parse(link)
	if link == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || connectorAttachment(u) {
		return ""
	}
	name := strings.TrimSpace(att.Name)
	switch {
	case name == "" && kind == "":
		return link
	case name == "":
		return kind + ": " + link
	case kind == "":
		return name + ": " + link
	}
	return name + " (" + kind + "): " + link
}

// connectorAttachment reports whether u is the Bot Connector's attachment
// API (GET /v3/attachments/{id}/views/{view}): where Teams keeps an image the
// employee pasted. It answers only with the bot's token, so the agent could
// not open the link: the file counts as one that cannot be passed on.
func connectorAttachment(u *url.URL) bool {
	return strings.Contains(u.Path, "/v3/attachments/")
}

// isFile reports whether an attachment is a file (not the HTML copy of the
// text, not a card).
func isFile(att schema.Attachment) bool {
	ct := strings.ToLower(att.ContentType)
	return ct != contentTypeHTML && !strings.HasPrefix(ct, "application/vnd.microsoft.card.") && ct != "text/plain"
}

// fileLink returns a file's link and its type: the file.download.info
// fileType ("pdf"), else the content type.
func fileLink(att schema.Attachment) (link, kind string) {
	link, kind = att.ContentURL, att.ContentType
	if strings.EqualFold(att.ContentType, contentTypeFileDownload) {
		kind = ""
		if m, ok := att.Content.(map[string]any); ok {
			if link == "" {
				link, _ = m["downloadUrl"].(string)
			}
			kind, _ = m["fileType"].(string)
		}
	}
	return link, strings.TrimSpace(kind)
}

// lostFiles names the files of a message that cannot be passed on: no
// http(s) link to give the agent (e.g. an inline image sent as data).
func lostFiles(a *wireActivity) []string {
	var out []string
	for _, att := range a.Attachments {
		if isFile(att) && attachmentLink(att) == "" {
			name := strings.TrimSpace(att.Name)
			if name == "" {
				name = strings.TrimSpace(att.ContentType)
			}
			if name == "" {
				name = "file"
			}
			out = append(out, name)
		}
	}
	return out
}

func containsAccount(accounts []schema.ChannelAccount, id string) bool {
	return id != "" && slices.ContainsFunc(accounts, func(a schema.ChannelAccount) bool { return a.ID == id })
}

func channelDataTenant(raw json.RawMessage) string {
	var cd struct {
		Tenant struct {
			ID string `json:"id"`
		} `json:"tenant"`
	}
	if json.Unmarshal(raw, &cd) != nil {
		return ""
	}
	return cd.Tenant.ID
}

func parseTime(raw json.RawMessage, fallback time.Time) time.Time {
	var s string
	if json.Unmarshal(raw, &s) != nil || s == "" {
		return fallback
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.IsZero() {
		return fallback
	}
	return t
}
