package bridge

import (
	"strings"
	"time"
)

// SessionID identifies one stretch of a Teams conversation: from the first bot
// turn, through at most one handoff, to its close. A conversation has at most
// one session that is not closed.
type SessionID string

// ConversationID is the Teams (Bot Framework) conversation id, e.g. "a:1xYz…".
type ConversationID string

// AgentChatID identifies the chat on the agent desk: the Connect Support
// conversation "group" sys_id, or the Virtual Agent clientSessionId.
type AgentChatID string

// Session is one conversation stretch and its handoff, if any.
type Session struct {
	ID           SessionID
	Conversation ConversationID
	State        State
	CloseReason  CloseReason // set once the session starts closing

	// Who the employee is (from the Teams activity).
	UserID      string // Teams user id "29:…"
	UserName    string
	UserAADID   string // Entra (AAD) object id
	UserEmail   string // e-mail/UPN when known
	TenantID    string
	AgentChatID AgentChatID // set once the desk chat is open
	Queue       string      // desk queue requested by the handoff signal ("" = default)
	Reason      string      // why the bot handed off (handoff payload reason)
	// DeskData is the desk's own data for its chat (DeskChat.Data), stored
	// as the desk returned it from Open.
	DeskData string
	// DeskPosts counts the bridge's messages the desk confirmed in the chat
	// (see DeskMessage.Confirmed).
	DeskPosts int
	// StatusCardID is the channel's activity id of the live status card ("" until
	// it is sent, or when the channel gave none).
	StatusCardID string

	CreatedAt time.Time
	QueuedAt  time.Time // zero until handed off
	LiveAt    time.Time // zero until the agent's first message
	ClosedAt  time.Time // zero until closed
	UpdatedAt time.Time // last change of any kind
	// LastAgentActivity is the time of the last agent message (for the summary
	// shown to the user when a relay failure ends the session).
	LastAgentActivity time.Time
}

// DeskChat returns the session's desk chat as the desk's calls take it.
func (s *Session) DeskChat() DeskChat { return DeskChat{ID: s.AgentChatID, Data: s.DeskData} }

// Open reports whether the session still routes messages (any state but closed).
func (s *Session) Open() bool { return s.State != StateClosed }

// HumanOwned reports whether user messages go to the agent desk (queued or live).
func (s *Session) HumanOwned() bool { return s.State == StateQueued || s.State == StateLive }

// Source says where a message came from.
type Source string

const (
	SourceUser   Source = "user"   // the employee in Teams
	SourceBot    Source = "bot"    // Rasa
	SourceAgent  Source = "agent"  // a human agent (or the desk's system messages)
	SourceBridge Source = "bridge" // notices written by the bridge itself
)

// Message is a stored chat message of any source. (Session, Source, ExternalID)
// is unique: storing the same delivery twice is a no-op.
type Message struct {
	ID         int64
	SessionID  SessionID
	Source     Source
	ExternalID string // Teams activity id, ServiceNow sys_id, or a bridge-made id
	Author     string // display name of the sender
	Text       string
	Buttons    []Button
	ImageURL   string
	// Attachments are files that came with the message (links).
	Attachments []Attachment
	// System marks desk system messages (ServiceNow created_by "system").
	System bool
	// SentAt is the time the source gave the message (Teams timestamp, ServiceNow
	// timestamp in ms); it orders agent messages. CreatedAt is when we stored it.
	SentAt    time.Time
	CreatedAt time.Time
}

// Deliverable reports whether m has anything to show the employee: Teams
// refuses a message activity with no text and no attachments.
func (m Message) Deliverable() bool {
	return strings.TrimSpace(m.Text) != "" || len(m.Buttons) > 0 || m.ImageURL != "" || len(m.Attachments) > 0
}

// Button is a quick reply: Title is shown, Payload is sent back as the user's
// message when clicked.
type Button struct {
	Title   string `json:"title"`
	Payload string `json:"payload"`
	// Data, when set, is sent back as the card submit's data instead of
	// Payload (UserActivity.Submit): a card's own action, recognised by its
	// data and never taken for typed text.
	Data map[string]string `json:"data,omitempty"`
}

// ConversationRef is what the bridge needs to message a Teams conversation
// proactively. It is refreshed from every authenticated inbound activity.
type ConversationRef struct {
	Conversation     ConversationID
	ServiceURL       string
	ChannelID        string // "msteams"
	ConversationType string // "personal", "groupChat", "channel"
	TenantID         string
	BotID            string // "28:<app id>"
	BotName          string
	UserID           string // "29:…"
	UserName         string
	UserAADID        string
	Locale           string
	// UserEmail is the employee's e-mail (or UPN) from the channel's member
	// list, cached so it is looked up once per conversation.
	UserEmail string
	// WelcomedAt is when the conversation was greeted (zero: not yet); the
	// welcome is said once per conversation.
	WelcomedAt time.Time
	UpdatedAt  time.Time
}

// Turn is one line of a transcript.
type Turn struct {
	Role       string    `json:"role"` // "user", "bot", "agent", "system"
	Author     string    `json:"author,omitempty"`
	Text       string    `json:"text"`
	Intent     string    `json:"intent,omitempty"`
	Confidence float64   `json:"confidence,omitempty"`
	At         time.Time `json:"at"`
}

// Command is what an employee's message asks of the bridge itself.
type Command string

const (
	CommandNone    Command = ""
	CommandEndChat Command = "/end_chat"
	CommandRestart Command = "/restart"
)

// ParseCommand recognises /end_chat and /restart, trimmed and case-insensitive.
func ParseCommand(text string) Command {
	switch strings.ToLower(strings.TrimSpace(text)) {
	case string(CommandEndChat):
		return CommandEndChat
	case string(CommandRestart):
		return CommandRestart
	}
	return CommandNone
}
