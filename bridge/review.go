package bridge

import "time"

// ReviewRecord is why a handoff happened and how it ended: the raw material of
// the weekly conversation-driven-development review. Bot turns (training data
// candidates) and human turns are kept apart so the human conversation never
// leaks into bot training data by accident.
type ReviewRecord struct {
	SessionID SessionID `json:"session_id"`
	StartedAt time.Time `json:"started_at"`
	UserKey   string    `json:"user_key"` // salted hash of the AAD object id
	TenantID  string    `json:"tenant_id"`

	// The trigger.
	Reason             string  `json:"reason"`
	Queue              string  `json:"queue,omitempty"`
	Intent             string  `json:"intent,omitempty"`
	Confidence         float64 `json:"confidence"`
	RunnerUpIntent     string  `json:"runner_up_intent,omitempty"`
	RunnerUpConfidence float64 `json:"runner_up_confidence"`
	ActiveLoop         string  `json:"active_loop,omitempty"`
	TriggerAction      string  `json:"trigger_action,omitempty"`
	BotTurns           []Turn  `json:"bot_turns"`

	// The outcome (zero until the session ends).
	EndedAt       time.Time   `json:"ended_at,omitzero"`
	CloseReason   CloseReason `json:"close_reason,omitempty"`
	WaitMillis    int64       `json:"wait_ms"`     // handoff → agent's first message (0 if none came)
	DurationMilli int64       `json:"duration_ms"` // handoff → end
	UserMessages  int         `json:"user_messages"`
	AgentMessages int         `json:"agent_messages"`
	AgentChatID   AgentChatID `json:"agent_chat_id,omitempty"`
	HumanTurns    []Turn      `json:"human_turns"`

	// What the people involved said about it afterwards.
	Verdict *Verdict `json:"verdict,omitempty"` // the agent's private labels
	CSAT    *CSAT    `json:"csat,omitempty"`    // the employee's rating
}

// Verdict is what the agent who handled a handoff says it was, written in the
// desk chat as private labels ("#topic reset MFA on new phone",
// "#bot-could-have password_reset", "#needed-human"). The employee never sees
// them.
type Verdict struct {
	Topic        string    `json:"topic,omitempty"`          // what the case was, in the agent's words
	BotCouldHave string    `json:"bot_could_have,omitempty"` // the intent that could have solved it
	NeededHuman  bool      `json:"needed_human,omitempty"`   // only a person could have solved it
	Agent        string    `json:"agent,omitempty"`          // who labelled it last
	At           time.Time `json:"at"`
}

// CSAT is the employee's rating of an agent-handled chat.
type CSAT struct {
	Rating  int       `json:"rating"` // 1 to 5
	Comment string    `json:"comment,omitempty"`
	At      time.Time `json:"at"`
}

// Annotation is the bot team's review of one handoff, made in the review
// inbox. It only ever concerns the bot part of the conversation.
type Annotation struct {
	SessionID SessionID `json:"session_id"`
	Reviewed  bool      `json:"reviewed"`
	// Intents maps the index of a user turn in ReviewRecord.BotTurns to the
	// intent the reviewer says it was.
	Intents map[int]string `json:"intents,omitempty"`
	// ExpectedAction is the action the bot should have taken instead of
	// handing off (the end of the exported test story).
	ExpectedAction string    `json:"expected_action,omitempty"`
	Note           string    `json:"note,omitempty"`
	UpdatedBy      string    `json:"updated_by,omitempty"`
	UpdatedAt      time.Time `json:"updated_at,omitzero"`
}

// AuditEntry is one change to an annotation: who, when, what.
type AuditEntry struct {
	SessionID SessionID `json:"session_id"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"` // e.g. "intent", "reviewed", "note"
	Detail    string    `json:"detail,omitempty"`
	At        time.Time `json:"at"`
}

// ReviewCase is a review record with its annotation (zero if none).
type ReviewCase struct {
	Record     ReviewRecord
	Annotation Annotation
}

// ReviewQuery selects review cases. Zero fields do not filter.
type ReviewQuery struct {
	From, To        time.Time // handoff started in [From, To)
	Reason          string
	Intent          string  // the bot's top intent at the handoff
	ConfidenceBelow float64 // 0: any confidence
	Topic           string  // the agent's topic label, matched without regard to case
	CSATMax         int     // rated at most this (1 to 5); 0: any, rated or not
	Reviewed        *bool
	Offset, Limit   int // Limit 0: no limit
	Newest          bool
}
