package store

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm/clause"

	"github.com/handoffhq/handoff/bridge"
)

type csatRow struct {
	SessionID      string `gorm:"column:session_id;primaryKey"`
	ConversationID string `gorm:"column:conversation_id"`
	CardID         string `gorm:"column:card_id"`
	PromptedMS     int64  `gorm:"column:prompted_at"`
	ExpiresMS      int64  `gorm:"column:expires_at"`
	State          string `gorm:"column:state"`
}

func (csatRow) TableName() string { return "csat_prompts" }

func (r csatRow) prompt() bridge.CSATPrompt {
	return bridge.CSATPrompt{Session: bridge.SessionID(r.SessionID), Conversation: bridge.ConversationID(r.ConversationID),
		CardID: r.CardID, PromptedAt: fromMS(r.PromptedMS), ExpiresAt: fromMS(r.ExpiresMS), State: r.State}
}

// PutCSATPrompt inserts or replaces the rating card of p.Session.
func (t *tx) PutCSATPrompt(ctx context.Context, p bridge.CSATPrompt) error {
	if p.Session == "" {
		return errors.New("store: put rating card: empty session id")
	}
	row := csatRow{SessionID: string(p.Session), ConversationID: string(p.Conversation), CardID: p.CardID,
		PromptedMS: toMS(p.PromptedAt), ExpiresMS: toMS(p.ExpiresAt), State: p.State}
	err := t.q(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "session_id"}}, UpdateAll: true}).Create(&row).Error
	if err != nil {
		return wrap(fmt.Sprintf("put rating card of session %q", p.Session), err)
	}
	return nil
}

// CSATPrompt returns the rating card of session; ErrNotFound if none.
func (t *tx) CSATPrompt(ctx context.Context, session bridge.SessionID) (bridge.CSATPrompt, error) {
	var row csatRow
	if err := t.q(ctx).Where("session_id = ?", string(session)).Take(&row).Error; err != nil {
		return bridge.CSATPrompt{}, wrap(fmt.Sprintf("rating card of session %q", session), err)
	}
	return row.prompt(), nil
}

// OpenCSATPrompts returns up to limit open rating cards, soonest to expire
// first (the partial index csat_prompts_open).
func (t *tx) OpenCSATPrompts(ctx context.Context, limit int) ([]bridge.CSATPrompt, error) {
	var rows []csatRow
	if err := t.q(ctx).Where("state = ?", bridge.CSATOpen).Order("expires_at, session_id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, wrap("open rating cards", err)
	}
	out := make([]bridge.CSATPrompt, len(rows))
	for i, r := range rows {
		out[i] = r.prompt()
	}
	return out, nil
}
