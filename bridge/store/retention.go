package store

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// PruneRelayData deletes what the relay no longer needs:
//
//   - closed sessions that closed before `before`, with their messages,
//     cursors and outbox rows (the foreign keys cascade), so the employee's
//     name, e-mail and every message of those chats are gone;
//   - messages written before `before` in sessions the bot still owns (a
//     conversation that never ends keeps one bot session);
//   - done outbox rows finished before doneBefore (dead rows stay until
//     their session goes, for inspection).
//
// Sessions with an outbox item still pending are left alone. It returns how
// many sessions, messages (including those of the deleted sessions) and done
// outbox rows were deleted, in one transaction.
func (s *Store) PruneRelayData(ctx context.Context, before, doneBefore time.Time) (sessions, messages, outbox int64, err error) {
	cut, doneCut := ceilMS(before), ceilMS(doneBefore)
	const busy = "SELECT session_id FROM outbox WHERE status = 'pending'"
	err = s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		old := db.Model(&sessionRow{}).Select("id").
			Where("state = ? AND closed_at > 0 AND closed_at < ?", "closed", cut).
			Where("id NOT IN (" + busy + ")")
		if err := db.Model(&messageRow{}).Where("session_id IN (?)", old).Count(&messages).Error; err != nil {
			return err
		}
		res := db.Where("state = ? AND closed_at > 0 AND closed_at < ?", "closed", cut).
			Where("id NOT IN (" + busy + ")").Delete(&sessionRow{})
		if res.Error != nil {
			return res.Error
		}
		sessions = res.RowsAffected
		res = db.Where("created_at < ?", cut).
			Where("session_id IN (?)", db.Model(&sessionRow{}).Select("id").Where("state = ?", "bot")).
			Where("session_id NOT IN (" + busy + ")").Delete(&messageRow{})
		if res.Error != nil {
			return res.Error
		}
		messages += res.RowsAffected
		res = db.Where("status = ? AND updated_at < ?", "done", doneCut).Delete(&outboxRow{})
		if res.Error != nil {
			return res.Error
		}
		outbox = res.RowsAffected
		return nil
	})
	if err != nil {
		return 0, 0, 0, wrap("prune relay data", err)
	}
	return sessions, messages, outbox, nil
}
