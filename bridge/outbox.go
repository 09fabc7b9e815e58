package bridge

import (
	"encoding/json"
	"time"
)

// Lane groups outbox items that must be dispatched in order: one lane per
// conversation and destination, so a slow desk never holds up Teams sends and
// the order within each direction holds.
type Lane string

const (
	LaneUser Lane = "user" // sends to Teams
	LaneDesk Lane = "desk" // calls to the agent desk
	LaneBot  Lane = "bot"  // calls to Rasa
)

// OutboxKind names the outward call an outbox item performs.
type OutboxKind string

const (
	KindBotSend     OutboxKind = "bot.send"     // relay a stored user message to the bot
	KindBotHandback OutboxKind = "bot.handback" // append handback events
	KindDeskOpen    OutboxKind = "desk.open"    // open the desk chat
	KindDeskSend    OutboxKind = "desk.send"    // post a stored user message to the agent
	KindDeskLeave   OutboxKind = "desk.leave"   // leave the chat, then finish closing
	KindDeskTyping  OutboxKind = "desk.typing"  // show the user typing to the agent (desks that can)
	KindDeskReceipt OutboxKind = "desk.receipt" // tell the desk an agent message reached the user
	KindDeskNote    OutboxKind = "desk.note"    // post a stored bridge note to the agent only (dropped once the chat is gone)
	KindUserSend    OutboxKind = "user.send"    // send a stored message to Teams
	KindUserTyping  OutboxKind = "user.typing"  // show the agent typing in Teams
	KindUserCard    OutboxKind = "user.card"    // send or update the session's live status card
	KindUserCSAT    OutboxKind = "user.csat"    // send or update the rating card of an ended chat
)

// LaneOf returns the lane an item of kind k travels in.
func LaneOf(k OutboxKind) Lane {
	switch k {
	case KindBotSend, KindBotHandback:
		return LaneBot
	case KindDeskOpen, KindDeskSend, KindDeskLeave, KindDeskTyping, KindDeskReceipt, KindDeskNote:
		return LaneDesk
	default:
		return LaneUser
	}
}

// OutboxItem is one durable outward call.
type OutboxItem struct {
	ID            int64
	SessionID     SessionID
	Conversation  ConversationID
	Lane          Lane
	Kind          OutboxKind
	Payload       json.RawMessage // kind-specific, see OutboxPayload
	Attempts      int             // attempts made so far (incremented by the claim)
	NextAttemptAt time.Time
	LastError     string
	CreatedAt     time.Time
	// Claim is the fencing token of the claim that handed the item out: the
	// outcome of the item is recorded only while the claim is still its own
	// (see ClaimRequest).
	Claim string
	// FailingSince is when the current run of non-throttle failures began;
	// zero while the item has not failed (or only was throttled).
	FailingSince time.Time
}

// ClaimRequest asks the store for due outbox items.
type ClaimRequest struct {
	Now   time.Time
	Limit int           // at most this many items (the free workers)
	Lease time.Duration // the items are ours until Now+Lease (extendable)
	// Owner names the claiming process, so that a restarted process can take
	// back its own stale claims at once (ReleaseOutboxClaims).
	Owner string
}

// OutboxRetry records a failed or throttled attempt.
type OutboxRetry struct {
	Next    time.Time // when the item is due again
	LastErr string
	// Throttled: the destination asked us to wait. The attempt is not counted
	// and FailingSince is left alone.
	Throttled bool
	// FailingSince is stored when the item had none (the first failure of a run).
	FailingSince time.Time
}

// OutboxPayload is the payload of every kind; unused fields are omitted.
type OutboxPayload struct {
	MessageID int64       `json:"message_id,omitempty"` // bot.send, desk.send, user.send
	Reason    CloseReason `json:"reason,omitempty"`     // desk.leave, bot.handback
	Restart   bool        `json:"restart,omitempty"`    // bot.handback
	Card      *Card       `json:"card,omitempty"`       // user.card: the card as it should look now
}

// NewOutboxItem builds an item for kind with its lane and payload set.
func NewOutboxItem(s SessionID, conv ConversationID, k OutboxKind, p OutboxPayload, now time.Time) OutboxItem {
	raw, _ := json.Marshal(p) // a struct of plain fields cannot fail to marshal
	return OutboxItem{SessionID: s, Conversation: conv, Lane: LaneOf(k), Kind: k, Payload: raw, NextAttemptAt: now, CreatedAt: now}
}

// DecodePayload returns the item's payload.
func (it OutboxItem) DecodePayload() (OutboxPayload, error) {
	var p OutboxPayload
	if len(it.Payload) == 0 {
		return p, nil
	}
	err := json.Unmarshal(it.Payload, &p)
	return p, err
}
