package slack

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Wire types of the Slack Web API, Events API and interactivity payloads: only
// the fields the desk reads or writes. Examples of each are in testdata/.

// apiResponse is the envelope every Web API method answers with.
type apiResponse struct {
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	Warning  string `json:"warning,omitempty"`
	Needed   string `json:"needed,omitempty"`   // missing_scope: the scope needed
	Provided string `json:"provided,omitempty"` // missing_scope: the scopes granted
}

// message is a Slack message as returned by conversations.replies/history and
// carried by message events.
type message struct {
	Type       string    `json:"type,omitempty"`
	Subtype    string    `json:"subtype,omitempty"`
	User       string    `json:"user,omitempty"`
	BotID      string    `json:"bot_id,omitempty"`
	Text       string    `json:"text"`
	TS         string    `json:"ts"`
	ThreadTS   string    `json:"thread_ts,omitempty"`
	Blocks     []block   `json:"blocks,omitempty"`
	Files      []file    `json:"files,omitempty"`
	Edited     *edited   `json:"edited,omitempty"`
	Metadata   *metadata `json:"metadata,omitempty"`
	ReplyCount int       `json:"reply_count,omitempty"`
}

type edited struct {
	User string `json:"user"`
	TS   string `json:"ts"`
}

type file struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Title      string `json:"title,omitempty"`
	Mimetype   string `json:"mimetype,omitempty"`
	Permalink  string `json:"permalink,omitempty"`
	URLPrivate string `json:"url_private,omitempty"`
	Size       int64  `json:"size,omitempty"`
}

// metadata is Slack's message metadata: the bridge marks its own posts with
// it so a retry can find an earlier attempt.
type metadata struct {
	EventType    string         `json:"event_type"`
	EventPayload map[string]any `json:"event_payload"`
}

// block is one Block Kit block, kept as raw JSON fields so the desk can copy
// the parent's blocks when it updates them.
type block map[string]any

// Event types of the bridge's message metadata.
const (
	metaOpened  = "handoff_opened"  // the parent message: payload session
	metaMessage = "handoff_message" // a relayed employee message or note: payload key
	metaEnded   = "handoff_ended"   // the outcome line in the thread
)

// envelope is an Events API request body: url_verification or event_callback.
type envelope struct {
	Token     string          `json:"token"`
	Type      string          `json:"type"`
	Challenge string          `json:"challenge,omitempty"`
	TeamID    string          `json:"team_id,omitempty"`
	APIAppID  string          `json:"api_app_id,omitempty"`
	EventID   string          `json:"event_id,omitempty"`
	EventTime int64           `json:"event_time,omitempty"`
	Event     json.RawMessage `json:"event,omitempty"`
}

// messageEvent is the inner event of a message event callback. For subtype
// message_changed the new version is in Message; for message_deleted,
// DeletedTS names the removed message.
type messageEvent struct {
	message
	Channel         string   `json:"channel"`
	ChannelType     string   `json:"channel_type,omitempty"`
	EventTS         string   `json:"event_ts,omitempty"`
	Hidden          bool     `json:"hidden,omitempty"`
	DeletedTS       string   `json:"deleted_ts,omitempty"`
	Message         *message `json:"message,omitempty"`
	PreviousMessage *message `json:"previous_message,omitempty"`
}

// interaction is an interactivity payload (the form field "payload").
type interaction struct {
	Type      string `json:"type"`
	Token     string `json:"token,omitempty"`
	APIAppID  string `json:"api_app_id,omitempty"`
	TriggerID string `json:"trigger_id,omitempty"`
	User      struct {
		ID       string `json:"id"`
		Username string `json:"username,omitempty"`
		Name     string `json:"name,omitempty"`
		TeamID   string `json:"team_id,omitempty"`
	} `json:"user"`
	Container struct {
		Type      string `json:"type"`
		MessageTS string `json:"message_ts"`
		ChannelID string `json:"channel_id"`
	} `json:"container"`
	Channel struct {
		ID   string `json:"id"`
		Name string `json:"name,omitempty"`
	} `json:"channel"`
	Message     *message `json:"message,omitempty"`
	ResponseURL string   `json:"response_url,omitempty"`
	Actions     []action `json:"actions"`
}

type action struct {
	ActionID string `json:"action_id"`
	BlockID  string `json:"block_id,omitempty"`
	Type     string `json:"type"`
	Value    string `json:"value,omitempty"`
	ActionTS string `json:"action_ts,omitempty"`
}

// Action ids of the parent message's buttons.
const (
	actionTake  = "handoff_take"
	actionClose = "handoff_close"
)

// parseTS turns a Slack ts ("1712345678.000100": seconds and a per-channel
// sequence in microsecond digits) into a time. It orders messages of one
// channel exactly as Slack does.
func parseTS(ts string) (time.Time, error) {
	sec, frac, ok := strings.Cut(ts, ".")
	if sec == "" || (ok && (frac == "" || len(frac) > 9)) {
		return time.Time{}, fmt.Errorf("slack: bad ts %q", ts)
	}
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || s < 0 {
		return time.Time{}, fmt.Errorf("slack: bad ts %q", ts)
	}
	var ns int64
	if ok {
		n, err := strconv.ParseInt(frac, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("slack: bad ts %q", ts)
		}
		for i := len(frac); i < 9; i++ {
			n *= 10
		}
		ns = n
	}
	return time.Unix(s, ns).UTC(), nil
}

// ChatID returns the desk chat id of the thread whose parent is ts in channel.
func ChatID(channel, ts string) bridge.AgentChatID {
	return bridge.AgentChatID(channel + ":" + ts)
}

// SplitChatID returns the channel and parent ts of a desk chat id.
func SplitChatID(chat bridge.AgentChatID) (channel, ts string, err error) {
	channel, ts, ok := strings.Cut(string(chat), ":")
	if !ok || channel == "" || ts == "" {
		return "", "", bridge.Permanent(fmt.Errorf("slack: chat id %q is not <channel>:<thread_ts>", chat))
	}
	return channel, ts, nil
}
