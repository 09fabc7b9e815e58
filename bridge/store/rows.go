package store

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Row structs mirror the tables of migrations/*/00001_init.sql. They are kept
// apart from the domain types so the schema can change without touching
// bridge, and so gorm's conventions (CreatedAt auto-filling, soft delete)
// never apply: time fields end in MS and are plain int64 Unix milliseconds.

type sessionRow struct {
	ID                  string `gorm:"column:id;primaryKey"`
	ConversationID      string `gorm:"column:conversation_id"`
	State               string `gorm:"column:state"`
	CloseReason         string `gorm:"column:close_reason"`
	UserID              string `gorm:"column:user_id"`
	UserName            string `gorm:"column:user_name"`
	UserAADID           string `gorm:"column:user_aad_id"`
	UserEmail           string `gorm:"column:user_email"`
	TenantID            string `gorm:"column:tenant_id"`
	AgentChatID         string `gorm:"column:agent_chat_id"`
	Queue               string `gorm:"column:queue"`
	Reason              string `gorm:"column:reason"`
	DeskData            string `gorm:"column:desk_data"`
	DeskPosts           int    `gorm:"column:desk_posts"`
	StatusCardID        string `gorm:"column:status_card_id"`
	CreatedMS           int64  `gorm:"column:created_at"`
	QueuedMS            int64  `gorm:"column:queued_at"`
	LiveMS              int64  `gorm:"column:live_at"`
	ClosedMS            int64  `gorm:"column:closed_at"`
	UpdatedMS           int64  `gorm:"column:updated_at"`
	LastAgentActivityMS int64  `gorm:"column:last_agent_activity"`
}

func (sessionRow) TableName() string { return "sessions" }

func sessionToRow(s bridge.Session) sessionRow {
	return sessionRow{
		ID:                  string(s.ID),
		ConversationID:      string(s.Conversation),
		State:               string(s.State),
		CloseReason:         string(s.CloseReason),
		UserID:              s.UserID,
		UserName:            s.UserName,
		UserAADID:           s.UserAADID,
		UserEmail:           s.UserEmail,
		TenantID:            s.TenantID,
		AgentChatID:         string(s.AgentChatID),
		Queue:               s.Queue,
		Reason:              s.Reason,
		DeskData:            s.DeskData,
		DeskPosts:           s.DeskPosts,
		StatusCardID:        s.StatusCardID,
		CreatedMS:           toMS(s.CreatedAt),
		QueuedMS:            toMS(s.QueuedAt),
		LiveMS:              toMS(s.LiveAt),
		ClosedMS:            toMS(s.ClosedAt),
		UpdatedMS:           toMS(s.UpdatedAt),
		LastAgentActivityMS: toMS(s.LastAgentActivity),
	}
}

// columns returns every column but the key, for UPDATE (a map, so zero
// values are written too).
func (r sessionRow) columns() map[string]any {
	return map[string]any{
		"conversation_id":     r.ConversationID,
		"state":               r.State,
		"close_reason":        r.CloseReason,
		"user_id":             r.UserID,
		"user_name":           r.UserName,
		"user_aad_id":         r.UserAADID,
		"user_email":          r.UserEmail,
		"tenant_id":           r.TenantID,
		"agent_chat_id":       r.AgentChatID,
		"queue":               r.Queue,
		"reason":              r.Reason,
		"desk_data":           r.DeskData,
		"desk_posts":          r.DeskPosts,
		"status_card_id":      r.StatusCardID,
		"created_at":          r.CreatedMS,
		"queued_at":           r.QueuedMS,
		"live_at":             r.LiveMS,
		"closed_at":           r.ClosedMS,
		"updated_at":          r.UpdatedMS,
		"last_agent_activity": r.LastAgentActivityMS,
	}
}

func (r sessionRow) domain() bridge.Session {
	return bridge.Session{
		ID:                bridge.SessionID(r.ID),
		Conversation:      bridge.ConversationID(r.ConversationID),
		State:             bridge.State(r.State),
		CloseReason:       bridge.CloseReason(r.CloseReason),
		UserID:            r.UserID,
		UserName:          r.UserName,
		UserAADID:         r.UserAADID,
		UserEmail:         r.UserEmail,
		TenantID:          r.TenantID,
		AgentChatID:       bridge.AgentChatID(r.AgentChatID),
		Queue:             r.Queue,
		Reason:            r.Reason,
		DeskData:          r.DeskData,
		DeskPosts:         r.DeskPosts,
		StatusCardID:      r.StatusCardID,
		CreatedAt:         fromMS(r.CreatedMS),
		QueuedAt:          fromMS(r.QueuedMS),
		LiveAt:            fromMS(r.LiveMS),
		ClosedAt:          fromMS(r.ClosedMS),
		UpdatedAt:         fromMS(r.UpdatedMS),
		LastAgentActivity: fromMS(r.LastAgentActivityMS),
	}
}

type messageRow struct {
	ID         int64   `gorm:"column:id;primaryKey;autoIncrement"`
	SessionID  string  `gorm:"column:session_id"`
	Source     string  `gorm:"column:source"`
	ExternalID *string `gorm:"column:external_id"` // nil: never de-duplicated
	Author     string  `gorm:"column:author"`
	Body       string  `gorm:"column:body"`
	Buttons    *string `gorm:"column:buttons"`     // JSON; nil when there are none
	Attach     *string `gorm:"column:attachments"` // JSON; nil when there are none
	ImageURL   string  `gorm:"column:image_url"`
	System     bool    `gorm:"column:is_system"`
	SentMS     int64   `gorm:"column:sent_at"`
	CreatedMS  int64   `gorm:"column:created_at"`
}

func (messageRow) TableName() string { return "messages" }

func messageToRow(m *bridge.Message) (messageRow, error) {
	r := messageRow{
		SessionID: string(m.SessionID),
		Source:    string(m.Source),
		Author:    m.Author,
		Body:      m.Text,
		ImageURL:  m.ImageURL,
		System:    m.System,
		SentMS:    toMS(m.SentAt),
		CreatedMS: toMS(m.CreatedAt),
	}
	if m.ExternalID != "" {
		ext := m.ExternalID
		r.ExternalID = &ext
	}
	if len(m.Buttons) > 0 {
		raw, err := json.Marshal(m.Buttons)
		if err != nil {
			return r, fmt.Errorf("encode buttons: %w", err)
		}
		b := string(raw)
		r.Buttons = &b
	}
	if len(m.Attachments) > 0 {
		raw, err := json.Marshal(m.Attachments)
		if err != nil {
			return r, fmt.Errorf("encode attachments: %w", err)
		}
		a := string(raw)
		r.Attach = &a
	}
	return r, nil
}

func (r messageRow) domain() (bridge.Message, error) {
	m := bridge.Message{
		ID:        r.ID,
		SessionID: bridge.SessionID(r.SessionID),
		Source:    bridge.Source(r.Source),
		Author:    r.Author,
		Text:      r.Body,
		ImageURL:  r.ImageURL,
		System:    r.System,
		SentAt:    fromMS(r.SentMS),
		CreatedAt: fromMS(r.CreatedMS),
	}
	if r.ExternalID != nil {
		m.ExternalID = *r.ExternalID
	}
	if r.Buttons != nil && *r.Buttons != "" {
		if err := json.Unmarshal([]byte(*r.Buttons), &m.Buttons); err != nil {
			return m, fmt.Errorf("decode buttons of message %d: %w", r.ID, err)
		}
	}
	if r.Attach != nil && *r.Attach != "" {
		if err := json.Unmarshal([]byte(*r.Attach), &m.Attachments); err != nil {
			return m, fmt.Errorf("decode attachments of message %d: %w", r.ID, err)
		}
	}
	return m, nil
}

func messagesFromRows(rows []messageRow) ([]bridge.Message, error) {
	out := make([]bridge.Message, 0, len(rows))
	for _, r := range rows {
		m, err := r.domain()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

type conversationRefRow struct {
	ConversationID   string `gorm:"column:conversation_id;primaryKey"`
	ServiceURL       string `gorm:"column:service_url"`
	ChannelID        string `gorm:"column:channel_id"`
	ConversationType string `gorm:"column:conversation_type"`
	TenantID         string `gorm:"column:tenant_id"`
	BotID            string `gorm:"column:bot_id"`
	BotName          string `gorm:"column:bot_name"`
	UserID           string `gorm:"column:user_id"`
	UserName         string `gorm:"column:user_name"`
	UserAADID        string `gorm:"column:user_aad_id"`
	Locale           string `gorm:"column:locale"`
	UserEmail        string `gorm:"column:user_email"`
	WelcomedMS       int64  `gorm:"column:welcomed_at"`
	UpdatedMS        int64  `gorm:"column:updated_at"`
}

func (conversationRefRow) TableName() string { return "conversation_refs" }

func refToRow(ref bridge.ConversationRef) conversationRefRow {
	return conversationRefRow{
		ConversationID:   string(ref.Conversation),
		ServiceURL:       ref.ServiceURL,
		ChannelID:        ref.ChannelID,
		ConversationType: ref.ConversationType,
		TenantID:         ref.TenantID,
		BotID:            ref.BotID,
		BotName:          ref.BotName,
		UserID:           ref.UserID,
		UserName:         ref.UserName,
		UserAADID:        ref.UserAADID,
		Locale:           ref.Locale,
		UserEmail:        ref.UserEmail,
		WelcomedMS:       toMS(ref.WelcomedAt),
		UpdatedMS:        toMS(ref.UpdatedAt),
	}
}

func (r conversationRefRow) domain() bridge.ConversationRef {
	return bridge.ConversationRef{
		Conversation:     bridge.ConversationID(r.ConversationID),
		ServiceURL:       r.ServiceURL,
		ChannelID:        r.ChannelID,
		ConversationType: r.ConversationType,
		TenantID:         r.TenantID,
		BotID:            r.BotID,
		BotName:          r.BotName,
		UserID:           r.UserID,
		UserName:         r.UserName,
		UserAADID:        r.UserAADID,
		Locale:           r.Locale,
		UserEmail:        r.UserEmail,
		WelcomedAt:       fromMS(r.WelcomedMS),
		UpdatedAt:        fromMS(r.UpdatedMS),
	}
}

type cursorRow struct {
	SessionID string `gorm:"column:session_id;primaryKey"`
	CursorMS  int64  `gorm:"column:cursor_at"`
	UpdatedMS int64  `gorm:"column:updated_at"`
}

func (cursorRow) TableName() string { return "cursors" }

// Outbox statuses.
const (
	statusPending = "pending"
	statusDone    = "done"
	statusDead    = "dead"
)

type outboxRow struct {
	ID             int64  `gorm:"column:id;primaryKey;autoIncrement"`
	SessionID      string `gorm:"column:session_id"`
	ConversationID string `gorm:"column:conversation_id"`
	Lane           string `gorm:"column:lane"`
	Kind           string `gorm:"column:kind"`
	Payload        string `gorm:"column:payload"`
	Status         string `gorm:"column:status"`
	Attempts       int    `gorm:"column:attempts"`
	NextAttemptMS  int64  `gorm:"column:next_attempt_at"`
	ClaimedUntilMS *int64 `gorm:"column:claimed_until"` // nil: not leased
	LastError      string `gorm:"column:last_error"`
	CreatedMS      int64  `gorm:"column:created_at"`
	UpdatedMS      int64  `gorm:"column:updated_at"`
	ClaimToken     string `gorm:"column:claim_token"`
	ClaimOwner     string `gorm:"column:claim_owner"`
	FailingSinceMS int64  `gorm:"column:failing_since"`
}

func (outboxRow) TableName() string { return "outbox" }

func outboxToRow(it bridge.OutboxItem, now time.Time) outboxRow {
	lane := it.Lane
	if lane == "" {
		lane = bridge.LaneOf(it.Kind)
	}
	return outboxRow{
		SessionID:      string(it.SessionID),
		ConversationID: string(it.Conversation),
		Lane:           string(lane),
		Kind:           string(it.Kind),
		Payload:        string(it.Payload),
		Status:         statusPending,
		Attempts:       it.Attempts,
		NextAttemptMS:  toMS(it.NextAttemptAt),
		LastError:      it.LastError,
		CreatedMS:      toMS(it.CreatedAt),
		UpdatedMS:      toMS(now),
	}
}

func (r outboxRow) domain() bridge.OutboxItem {
	it := bridge.OutboxItem{
		ID:            r.ID,
		SessionID:     bridge.SessionID(r.SessionID),
		Conversation:  bridge.ConversationID(r.ConversationID),
		Lane:          bridge.Lane(r.Lane),
		Kind:          bridge.OutboxKind(r.Kind),
		Attempts:      r.Attempts,
		NextAttemptAt: fromMS(r.NextAttemptMS),
		LastError:     r.LastError,
		CreatedAt:     fromMS(r.CreatedMS),
		Claim:         r.ClaimToken,
		FailingSince:  fromMS(r.FailingSinceMS),
	}
	if r.Payload != "" {
		it.Payload = json.RawMessage(r.Payload)
	}
	return it
}

type reviewRow struct {
	SessionID   string  `gorm:"column:session_id;primaryKey"`
	StartedMS   int64   `gorm:"column:started_at"`
	EndedMS     int64   `gorm:"column:ended_at"`
	TenantID    string  `gorm:"column:tenant_id"`
	Reason      string  `gorm:"column:reason"`
	Intent      string  `gorm:"column:intent"`
	CloseReason string  `gorm:"column:close_reason"`
	Confidence  float64 `gorm:"column:confidence"`
	Topic       string  `gorm:"column:topic"`
	CSAT        int     `gorm:"column:csat"`
	Record      string  `gorm:"column:record"`
}

func (reviewRow) TableName() string { return "review_records" }

// reviewToRow normalizes the record's own times to what the columns hold
// (ms, UTC), so the JSON and the filter columns always agree.
func reviewToRow(r bridge.ReviewRecord) (reviewRow, error) {
	r.StartedAt = fromMS(toMS(r.StartedAt))
	r.EndedAt = fromMS(toMS(r.EndedAt))
	raw, err := json.Marshal(r)
	if err != nil {
		return reviewRow{}, fmt.Errorf("encode review record: %w", err)
	}
	return reviewRow{
		SessionID:   string(r.SessionID),
		StartedMS:   toMS(r.StartedAt),
		EndedMS:     toMS(r.EndedAt),
		TenantID:    r.TenantID,
		Reason:      r.Reason,
		Intent:      r.Intent,
		CloseReason: string(r.CloseReason),
		Confidence:  finiteOr0(r.Confidence),
		Topic:       topicOf(r),
		CSAT:        csatOf(r),
		Record:      string(raw),
	}, nil
}

func finiteOr0(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

func topicOf(r bridge.ReviewRecord) string {
	if r.Verdict == nil {
		return ""
	}
	return r.Verdict.Topic
}

func csatOf(r bridge.ReviewRecord) int {
	if r.CSAT == nil {
		return 0
	}
	return r.CSAT.Rating
}

func decodeReview(raw []byte) (bridge.ReviewRecord, error) {
	var r bridge.ReviewRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("decode review record: %w", err)
	}
	return r, nil
}

// toMS is the stored form of t: Unix milliseconds, 0 for the zero time.
func toMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS is the inverse of toMS: UTC, the zero time for 0.
func fromMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// ceilMS is the smallest stored value v with fromMS(v) >= t, so that for a
// stored v: v >= ceilMS(t) ⇔ time(v) >= t, and v < ceilMS(t) ⇔ time(v) < t.
func ceilMS(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}
