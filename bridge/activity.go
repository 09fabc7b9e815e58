package bridge

import "time"

// ActivityKind is the kind of an inbound Teams activity the relay acts on.
type ActivityKind string

const (
	ActivityMessage ActivityKind = "message"   // the employee wrote (or submitted a card)
	ActivityInstall ActivityKind = "install"   // the bot was added: store the ref, welcome the user
	ActivityUpdate  ActivityKind = "update"    // conversationUpdate/installationUpdate: refresh the ref
	ActivityTyping  ActivityKind = "typing"    // the employee is typing
	ActivityRemoved ActivityKind = "uninstall" // the bot was removed: end any open session
)

// UserActivity is an authenticated inbound Teams activity reduced to what the
// relay needs. The teams package builds it after verifying the token.
type UserActivity struct {
	Kind ActivityKind
	ID   string // activity id: the de-duplication key of a message
	Ref  ConversationRef
	// Text is the message text; a card submit's value is rendered into it (its
	// "payload"/"text" field, else compact JSON), and attachment links are
	// appended on their own lines.
	Text      string
	UserEmail string // e-mail/UPN when Teams gave one
	// LostFiles names the files of the message that could not be passed on
	// (no link to give the agent); the employee is told so.
	LostFiles []string
	// Submit is the data of a card button that carries Data (Button.Data),
	// with the card's input values: such a submit is never text. Nil for
	// typed text and for buttons with a plain Payload.
	Submit map[string]string
	At     time.Time
}

// Personal reports whether the activity comes from a 1:1 chat, the only kind
// the bridge relays.
func (a UserActivity) Personal() bool {
	return a.Ref.ConversationType == "" || a.Ref.ConversationType == "personal"
}
