package bridge

import (
	"context"
	"time"
)

// This file holds the interfaces the bridge uses to reach storage and the three
// outside systems. Adapters implement them and return concrete types; the
// comments say what each method returns on failure.

// Store is durable storage. Implemented by bridge/store (SQLite and PostgreSQL).
type Store interface {
	// Update runs fn in one read-write transaction. If fn returns an error the
	// transaction rolls back and Update returns that error unchanged (so
	// errors.Is works); a failure to begin or commit is returned wrapped.
	Update(ctx context.Context, fn func(tx Tx) error) error
	// ClaimOutbox leases up to req.Limit due outbox items until
	// req.Now+req.Lease, each under a fresh claim token (OutboxItem.Claim)
	// and req.Owner, with Attempts incremented. The items of one claim may
	// share a token: a token fences together with its item's id, and a later
	// claim of the item gets a new one. Only the oldest pending item
	// of each lane is ever claimable, so items of one lane are dispatched
	// strictly in order; an item leased by another worker is skipped, and so
	// is every lane whose kind is throttled (SetThrottle) at req.Now.
	// Returns an empty slice (not an error) when nothing is due.
	ClaimOutbox(ctx context.Context, req ClaimRequest) ([]OutboxItem, error)
	// ExtendOutbox moves the lease of a claimed item to until (the worker is
	// still calling out). ErrLeaseLost if the claim is no longer the item's.
	ExtendOutbox(ctx context.Context, id int64, claim string, until time.Time) error
	// ReleaseOutboxClaims gives back every pending item claimed by owner, so
	// that they are due at once, and returns how many. A process calls it
	// when it starts (its claims from before a crash are stale).
	ReleaseOutboxClaims(ctx context.Context, owner string) (int, error)
	// SerialWrites reports whether write transactions run one at a time
	// (SQLite's one writer), so that several units of work committed in one
	// transaction cost one commit instead of one each. Where transactions
	// run in parallel (PostgreSQL) the dispatcher commits each outcome on
	// its own at once.
	SerialWrites() bool
}

// Tx is the set of operations available inside Store.Update.
type Tx interface {
	// Session returns the session; ErrNotFound if there is none.
	Session(ctx context.Context, id SessionID) (Session, error)
	// OpenSession returns the conversation's session that is not closed;
	// ErrNotFound if every session of the conversation is closed (or none exists).
	OpenSession(ctx context.Context, conv ConversationID) (Session, error)
	// SessionByAgentChat returns the session bound to the desk chat; ErrNotFound
	// if no session has that chat id.
	SessionByAgentChat(ctx context.Context, chat AgentChatID) (Session, error)
	// CreateSession inserts s (ID, timestamps set by the caller). It returns
	// ErrConflict if the conversation already has an open session.
	CreateSession(ctx context.Context, s Session) error
	// UpdateSession writes the fields of s that differ from what this
	// transaction last read of the session (every field if it read none), if
	// the stored state still equals expect, and returns ErrConflict otherwise
	// (nothing written). So a concurrent transaction's change to another field
	// survives.
	UpdateSession(ctx context.Context, s Session, expect State) error
	// AddDeskPost counts one more message the desk confirmed for the session
	// (Session.DeskPosts) and sets its UpdatedAt to now, whatever its state,
	// in one write. ErrNotFound if there is no such session.
	AddDeskPost(ctx context.Context, id SessionID, now time.Time) error
	// CountSessions counts sessions by state (every state is a key, 0 if none).
	CountSessions(ctx context.Context) (map[State]int, error)
	// SessionsInStates returns all sessions in any of the states, oldest first.
	SessionsInStates(ctx context.Context, states ...State) ([]Session, error)

	// InsertMessage stores m and sets m.ID. If (SessionID, Source, ExternalID)
	// is already stored it does nothing and returns inserted=false, nil.
	InsertMessage(ctx context.Context, m *Message) (inserted bool, err error)
	// Message returns one message by id; ErrNotFound if absent.
	Message(ctx context.Context, id int64) (Message, error)
	// Messages returns the session's last limit messages (limit <= 0: all),
	// ordered oldest first by (SentAt, ID).
	Messages(ctx context.Context, session SessionID, limit int) ([]Message, error)
	// ConversationMessages returns the conversation's last limit messages across
	// all of its sessions, oldest first (used for the transcript given to agents).
	ConversationMessages(ctx context.Context, conv ConversationID, limit int) ([]Message, error)
	// CountMessages returns how many of the session's messages came from source.
	CountMessages(ctx context.Context, session SessionID, source Source) (int, error)

	// SessionsByAgentChats returns the session bound to each desk chat (the
	// newest when several are), reading many chats at once; chats without a
	// session are absent.
	SessionsByAgentChats(ctx context.Context, chats []AgentChatID) (map[AgentChatID]Session, error)
	// StoredMessages reports which of keys are stored, reading many at once.
	StoredMessages(ctx context.Context, keys []MessageKey) (map[MessageKey]bool, error)
	// PollTargets returns every queued or live session that has a desk chat,
	// with its cursor (zero when none is set), oldest first, in one query.
	PollTargets(ctx context.Context) ([]PollTarget, error)

	// Cursor returns the session's delivery cursor: the newest desk timestamp
	// seen by polling. Zero time and nil error when none is set yet.
	Cursor(ctx context.Context, session SessionID) (time.Time, error)
	// Cursors returns the cursors of many sessions in one read; sessions with
	// no cursor yet are absent from the map.
	Cursors(ctx context.Context, sessions []SessionID) (map[SessionID]time.Time, error)
	// SetCursor moves the session's cursor to at (the caller never moves it back).
	SetCursor(ctx context.Context, session SessionID, at time.Time) error
	// AdvanceCursors moves each session's cursor to its time unless the
	// cursor is already there or later, with one statement for up to
	// thousands of sessions. The sessions must exist.
	AdvanceCursors(ctx context.Context, cursors map[SessionID]time.Time) error

	// RememberActivity records that the conversation's activity was handled,
	// until expires. It returns false when the pair is already remembered and
	// not expired (a repeated delivery: the caller must do nothing); an
	// expired record is renewed and counts as new. It may delete a few
	// records that expired before now.
	RememberActivity(ctx context.Context, conv ConversationID, activityID string, now, expires time.Time) (bool, error)

	// PutConversationRef inserts or replaces the conversation's reference.
	PutConversationRef(ctx context.Context, ref ConversationRef) error
	// PutActivityRef stores the reference an activity carries, keeping what
	// the bridge learnt itself, in one write. A new reference is ref, with
	// UserEmail email when email is not empty and WelcomedAt welcome when
	// ref's is zero. A stored one takes ref's fields but keeps its UserEmail
	// (email when not empty; empty when ref names another, non-empty user)
	// and its WelcomedAt (welcome when it is zero). welcomed reports that
	// this call set WelcomedAt to a non-zero welcome.
	PutActivityRef(ctx context.Context, ref ConversationRef, email string, welcome time.Time) (welcomed bool, err error)
	// ConversationRef returns the stored reference; ErrNotFound if absent.
	ConversationRef(ctx context.Context, conv ConversationID) (ConversationRef, error)
	// ReadItem returns what an outbox item acts on, as Session(session),
	// Message(message) and, unless conv is empty, ConversationRef(conv)
	// would, in one read (one statement, one round trip): the error of the
	// first of them that fails, in that order (ErrNotFound if absent).
	ReadItem(ctx context.Context, session SessionID, message int64, conv ConversationID) (Session, Message, ConversationRef, error)

	// Enqueue appends items to the outbox (IDs assigned in order of the slice).
	Enqueue(ctx context.Context, items ...OutboxItem) error
	// EnqueueClaimed appends it like Enqueue and, if it is then the only
	// pending item of its lane, due at req.Now, and the lane's destination
	// is not throttled, claims it in the same transaction as ClaimOutbox
	// would (a fresh claim token, req.Owner, leased until req.Now+req.Lease,
	// Attempts 1) and returns it with claimed true: the caller dispatches it
	// once the transaction commits. Otherwise it stays unclaimed (claimed
	// false) and is claimed like any other item. req.Limit is not used.
	EnqueueClaimed(ctx context.Context, it OutboxItem, req ClaimRequest) (_ OutboxItem, claimed bool, _ error)
	// CompleteOutbox marks a dispatched item done. ErrNotFound if absent;
	// ErrLeaseLost if claim is no longer the item's claim (nothing written).
	CompleteOutbox(ctx context.Context, id int64, claim string) error
	// CompleteOutboxNext is CompleteOutbox that also reports whether a later
	// item of the item's lane is pending, as this transaction sees it: that
	// item is the lane's head now.
	CompleteOutboxNext(ctx context.Context, id int64, claim string) (next bool, err error)
	// RetryOutbox releases the claim and makes the item due again at r.Next;
	// a throttled retry gives the attempt back. ErrNotFound, ErrLeaseLost as
	// for CompleteOutbox.
	RetryOutbox(ctx context.Context, id int64, claim string, r OutboxRetry) error
	// FailOutbox marks the item dead: it is kept for inspection and no longer
	// blocks its lane. ErrNotFound, ErrLeaseLost as for CompleteOutbox.
	FailOutbox(ctx context.Context, id int64, claim string, lastErr string) error
	// SetThrottle records that the destination of lane (every lane of that
	// kind, e.g. LaneDesk) asked us to wait until until. An earlier until
	// never shortens a later one.
	SetThrottle(ctx context.Context, lane Lane, until time.Time) error
	// Throttle returns until when the lane kind is throttled; zero time when
	// it is not (or no longer).
	Throttle(ctx context.Context, lane Lane, now time.Time) (time.Time, error)
	// OutboxStats counts items by status ("pending", "done", "dead").
	OutboxStats(ctx context.Context) (map[string]int, error)

	// PutReview inserts or replaces the review record of r.SessionID.
	PutReview(ctx context.Context, r ReviewRecord) error
	// Review returns the session's review record; ErrNotFound if absent.
	Review(ctx context.Context, session SessionID) (ReviewRecord, error)

	// PutCSATPrompt inserts or replaces the rating card of p.Session.
	PutCSATPrompt(ctx context.Context, p CSATPrompt) error
	// CSATPrompt returns the rating card of an ended session; ErrNotFound if
	// it was offered none.
	CSATPrompt(ctx context.Context, session SessionID) (CSATPrompt, error)
	// OpenCSATPrompts returns up to limit rating cards still open (neither
	// answered nor expired), the soonest to expire first.
	OpenCSATPrompts(ctx context.Context, limit int) ([]CSATPrompt, error)
}

// MessageKey is the unique key of a stored message with an external id.
type MessageKey struct {
	Session    SessionID
	Source     Source
	ExternalID string
}

// BotInput is a user message relayed to the bot.
type BotInput struct {
	Conversation ConversationID // used as the bot's sender id
	Text         string
	Metadata     map[string]any // e.g. the Teams user's name and tenant
	// Key is the stable id of the message (the channel's activity id); the
	// bot stores it with the message.
	Key string
	// Retry is true when an earlier attempt may have reached the bot; the bot
	// should return its stored answer instead of processing Key again.
	Retry bool
}

// BotReply is one message the bot answered with.
type BotReply struct {
	Text     string
	Buttons  []Button
	ImageURL string
	Custom   map[string]any
	// Handoff is set when the reply's custom payload holds a "handoff" object.
	Handoff *HandoffSignal
}

// HandoffSignal is the bot's request to hand the conversation to a human.
type HandoffSignal struct {
	Reason string `json:"reason"`
	Queue  string `json:"queue,omitempty"`
}

// BotContext is what the bot's tracker says about the conversation so far.
type BotContext struct {
	LatestIntent       string
	Confidence         float64
	RunnerUpIntent     string
	RunnerUpConfidence float64
	ActiveLoop         string // active form/loop, "" if none
	LatestAction       string // the action that emitted the handoff signal
	// Turns are the user turns (with intent and confidence) and the bot's
	// replies between them, oldest first.
	Turns []Turn
}

// Handback tells the bot the human stretch is over.
type Handback struct {
	Reason  CloseReason
	Restart bool // the user asked for /restart: also append a restart event
}

// Bot is the conversational AI that owns a conversation in state bot.
// Implemented by rasa.Client.
type Bot interface {
	// Send relays one user message and returns the replies in order. Transport
	// failures and 5xx are returned as errors (retryable); 4xx as Permanent.
	// With in.Retry, a message the bot already processed under in.Key is not
	// processed again: its stored replies are returned.
	Send(ctx context.Context, in BotInput) ([]BotReply, error)
	// Context reads the conversation's tracker. ErrNotFound if the bot has no
	// tracker for it.
	Context(ctx context.Context, conv ConversationID) (BotContext, error)
	// Handback appends the handback events to the tracker. It is safe to retry.
	Handback(ctx context.Context, conv ConversationID, hb Handback) error
}

// Handoff is what the agent desk is told when a chat is opened.
type Handoff struct {
	Session      SessionID
	Conversation ConversationID
	UserName     string
	UserEmail    string
	UserID       string // Teams user id
	UserAADID    string
	TenantID     string
	Reason       string
	Queue        string // "" = the configured default queue
	Transcript   []Turn // the recent turns, oldest first (the desk bounds the size)
	// Retry is true when an earlier attempt to open this chat may have reached
	// the desk; the desk should adopt a chat that attempt opened.
	Retry bool
}

// DeskMessage is a user message posted to the agent.
type DeskMessage struct {
	Key  string // stable id of the message in our store
	Text string
	// Author is the employee's display name for a user message, "" for the
	// bridge's own notes to the agent.
	Author string
	// Retry is true when an earlier attempt may have reached the desk; the
	// desk should check whether it did before posting again.
	Retry    bool
	FirstTry time.Time
	// Confirmed is how many of the bridge's own messages (Send calls) the
	// desk has confirmed in this chat before this one. Messages of a chat are
	// sent strictly one after the other, so a desk that can count the
	// bridge-authored messages of a chat knows this one was posted when it
	// counts more than Confirmed: identical texts stay distinct messages.
	Confirmed int
}

// DeskChat is a chat on the desk as the desk's calls need it: its id, and the
// desk's own data for it, which the desk returned from Open and the bridge
// stores with the session without looking inside (e.g. the Virtual Agent
// desk's callback nonce and the employee's e-mail). It survives restarts with
// the session.
type DeskChat struct {
	ID   AgentChatID
	Data string
}

// AgentDesk is the human agents' side. Implemented by servicenow.Client
// (Connect Support) and servicenow.VAClient (Virtual Agent API).
type AgentDesk interface {
	// Open starts a chat and returns its id and the desk's data for it. A
	// desk that cannot take chats (unknown queue, feature off) returns a
	// Permanent error.
	Open(ctx context.Context, h Handoff) (DeskChat, error)
	// Send posts the user's message. ErrChatClosed if the chat is gone.
	Send(ctx context.Context, chat DeskChat, m DeskMessage) error
	// Leave ends the bridge's part in the chat. Leaving a chat that is already
	// closed or left returns nil; ErrChatClosed only if it cannot be located.
	Leave(ctx context.Context, chat DeskChat) error
}

// DeskOutcome is an optional AgentDesk feature: leave the chat knowing why it
// ended, so the desk can show the outcome to its agents. When a desk
// implements it, the relay calls LeaveWithOutcome instead of Leave; the same
// rules apply.
type DeskOutcome interface {
	LeaveWithOutcome(ctx context.Context, chat DeskChat, reason CloseReason) error
}

// DeskTyping is an optional AgentDesk feature: show the agent that the user
// is typing (the Virtual Agent API's TYPING action).
type DeskTyping interface {
	Typing(ctx context.Context, chat DeskChat) error
}

// DeskReceipts is an optional AgentDesk feature: report that an agent message
// reached the user (the Virtual Agent API's UPDATE_MESSAGES sent_to_user).
type DeskReceipts interface {
	Delivered(ctx context.Context, chat DeskChat, externalID string) error
}

// AgentEventKind classifies what happened on the desk.
type AgentEventKind string

const (
	AgentMessage AgentEventKind = "message" // an agent (or system) text for the user
	AgentJoined  AgentEventKind = "joined"  // an agent accepted the chat
	AgentTyping  AgentEventKind = "typing"  // the agent is typing
	AgentWaiting AgentEventKind = "waiting" // queue position / wait-time notice for the user
	AgentEnded   AgentEventKind = "ended"   // the chat ended on the desk side
)

// AgentEvent is one thing that happened in a desk chat, as seen by polling or a
// webhook.
type AgentEvent struct {
	Kind       AgentEventKind
	Chat       AgentChatID
	ExternalID string // ServiceNow sys_id / VA messageId: the de-duplication key
	Author     string
	Text       string
	At         time.Time // desk time (ms precision when the desk gives it)
	System     bool      // a desk system message (created_by "system")
	// Echo marks the bridge's own messages coming back; they move the cursor
	// but are never delivered.
	Echo bool
	// EndReason says why for Kind == AgentEnded (agent_closed or agent_left);
	// a message whose text is an end phrase carries it too.
	EndReason CloseReason
	// QueuePosition (1 = next) and EstimatedWait are set on AgentWaiting
	// events when the desk gives them (Connect: chat_queue_entry.position;
	// VA: the spinner's wait_time); 0 when unknown.
	QueuePosition int
	EstimatedWait time.Duration
	// Attachments are files the agent sent with a message.
	Attachments []Attachment
	// Joined marks a line the desk has the bridge write because it has no
	// join notice of its own: "<Author> joined the chat" (Texts.AgentJoined,
	// in the employee's language; Text is only the desk's English fallback).
	// Edited marks a new version of an agent message: Text is the new text,
	// shown marked as edited (Texts.AgentEdited).
	Joined bool
	Edited bool
}

// AgentFeed lists a chat's activity since a cursor: the polling engine.
type AgentFeed interface {
	// Poll returns the chat's events at or after since (">=": events sharing the
	// cursor's instant are returned again and de-duplicated by ExternalID),
	// oldest first, including echoes. ErrChatClosed if the chat cannot be found.
	Poll(ctx context.Context, chat AgentChatID, since time.Time) ([]AgentEvent, error)
}

// BatchAgentFeed polls many chats with few requests (ServiceNow Table API).
type BatchAgentFeed interface {
	// PollMany returns events per chat at or after each chat's cursor.
	PollMany(ctx context.Context, cursors map[AgentChatID]time.Time) (map[AgentChatID][]AgentEvent, error)
}

// UserMessage is what the bridge sends to the employee.
type UserMessage struct {
	Text     string
	Buttons  []Button
	ImageURL string
	// Notice marks bridge status lines (queue position, "an agent joined", …).
	Notice bool
	// Author is the human agent's display name on agent messages ("" for the
	// bot and for notices): the channel shows who is speaking.
	Author string
	// Attachments are files passed on (the agent's), shown as links.
	Attachments []Attachment
}

// Card is a small card the bridge shows the employee (the live status card,
// a rating card): a title, lines of text, facts and buttons. A button's
// Payload comes back as the user's message text when it is clicked.
type Card struct {
	Title string `json:"title,omitempty"`
	// Style colours the card's title: "" (default), "accent", "good",
	// "warning" or "attention".
	Style   string   `json:"style,omitempty"`
	Lines   []string `json:"lines,omitempty"`
	Facts   []Fact   `json:"facts,omitempty"`
	Buttons []Button `json:"buttons,omitempty"`
	// Links open a web page (the review inbox).
	Links []Link `json:"links,omitempty"`
	// Input is an optional free-text field; its value comes back with any
	// button's Data under Input.ID.
	Input *CardInput `json:"input,omitempty"`
}

// CardInput is a card's free-text field.
type CardInput struct {
	ID          string `json:"id"`
	Placeholder string `json:"placeholder,omitempty"`
	MaxLength   int    `json:"max_length,omitempty"`
}

// Link is a card action that opens URL in the browser.
type Link struct {
	Title string `json:"title"`
	URL   string `json:"url"`
}

// Fact is one "title: value" row of a Card.
type Fact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

// UserCards is an optional UserChannel feature: cards that can be replaced
// in place after they were sent. Implemented by teams.Client.
type UserCards interface {
	// SendCard posts c and returns the new activity id ("" when the channel
	// gave none: such a card cannot be updated later). Errors as Send.
	SendCard(ctx context.Context, ref ConversationRef, c Card) (string, error)
	// UpdateCard replaces the card activity id with c. ErrCardGone when the
	// channel no longer lets the bot change that activity (404/403): send a
	// new card instead. Other errors as Send.
	UpdateCard(ctx context.Context, ref ConversationRef, id string, c Card) error
}

// UserDirectory is an optional UserChannel feature: look the employee up in
// the channel's member list (Teams: GET /v3/conversations/{id}/members/{userId}).
type UserDirectory interface {
	// UserEmail returns the user's e-mail address (or user principal name).
	// ErrNotFound when the channel does not know the user.
	UserEmail(ctx context.Context, ref ConversationRef) (string, error)
}

// UserChannel is the employee's side. Implemented by teams.Client.
type UserChannel interface {
	// Send delivers m and returns the new activity id ("" when the channel
	// accepted it without one). ErrUserUnreachable when the user removed or
	// blocked the bot; other 4xx are Permanent; 429/5xx are retried inside and
	// returned as plain errors when retries run out.
	Send(ctx context.Context, ref ConversationRef, m UserMessage) (string, error)
	// Typing shows a typing indicator. Failures are not worth retrying.
	Typing(ctx context.Context, ref ConversationRef) error
}

// Reviewer builds why-handoff records. Implemented by review.Recorder; it does
// no I/O (the relay stores the record in its own transaction).
type Reviewer interface {
	// Start builds the record taken when a handoff starts.
	Start(s Session, sig HandoffSignal, bc BotContext, at time.Time) ReviewRecord
	// Finish adds the outcome when the session ends. human holds the messages of
	// the human stretch (user and agent), oldest first.
	Finish(r ReviewRecord, s Session, human []Message, at time.Time) ReviewRecord
}
