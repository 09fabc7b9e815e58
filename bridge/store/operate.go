package store

import (
	"context"
	"fmt"

	"time"

	"github.com/handoffhq/handoff/bridge"
)

// What operators inspect and repair: the outbox and the sessions (the
// `handoff outbox` and `handoff sessions` commands, and the outbox age
// metric).

// OutboxEntry is an outbox item with its status (pending, done or dead).
type OutboxEntry struct {
	bridge.OutboxItem
	Status string
}

// OutboxItems returns up to limit items, newest first: the dead ones when
// dead, else the pending ones.
func (s *Store) OutboxItems(ctx context.Context, dead bool, limit int) ([]OutboxEntry, error) {
	status := statusPending
	if dead {
		status = statusDead
	}
	var rows []outboxRow
	err := s.db.WithContext(ctx).Where("status = ?", status).Order("id DESC").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, wrap("list "+status+" outbox items", err)
	}
	out := make([]OutboxEntry, len(rows))
	for i, r := range rows {
		out[i] = OutboxEntry{OutboxItem: r.domain(), Status: r.Status}
	}
	return out, nil
}

// RetryDeadOutbox makes the dead item id pending again with a fresh attempt
// and failure budget, due at now. It fails with bridge.ErrNotFound when id does not exist
// and bridge.ErrConflict when it is not dead (pending items retry by
// themselves; done items must not run twice).
func (s *Store) RetryDeadOutbox(ctx context.Context, id int64, now time.Time) error {
	res := s.db.WithContext(ctx).Model(&outboxRow{}).Where("id = ? AND status = ?", id, statusDead).Updates(map[string]any{
		"status": statusPending, "attempts": 0, "failing_since": 0, "next_attempt_at": toMS(now), "claimed_until": nil,
		"claim_token": "", "updated_at": toMS(now),
	})
	if res.Error != nil {
		return wrap(fmt.Sprintf("retry outbox item %d", id), res.Error)
	}
	if res.RowsAffected == 1 {
		return nil
	}
	var r outboxRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return wrap(fmt.Sprintf("retry outbox item %d", id), err)
	}
	return fmt.Errorf("store: retry outbox item %d: it is %s, not dead: %w", id, r.Status, bridge.ErrConflict)
}

// OldestPendingOutbox returns when the oldest pending item was created, or
// the zero time when nothing is pending.
func (s *Store) OldestPendingOutbox(ctx context.Context) (time.Time, error) {
	var ms *int64
	err := s.db.WithContext(ctx).Model(&outboxRow{}).Where("status = ?", statusPending).Select("MIN(created_at)").Scan(&ms).Error
	if err != nil {
		return time.Time{}, wrap("oldest pending outbox item", err)
	}
	if ms == nil {
		return time.Time{}, nil
	}
	return fromMS(*ms), nil
}

// Sessions returns up to limit sessions, most recently updated first; only
// those in state when state is not empty.
func (s *Store) Sessions(ctx context.Context, state bridge.State, limit int) ([]bridge.Session, error) {
	q := s.db.WithContext(ctx).Order("updated_at DESC, id").Limit(limit)
	if state != "" {
		q = q.Where("state = ?", string(state))
	}
	var rows []sessionRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, wrap("list sessions", err)
	}
	out := make([]bridge.Session, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}
