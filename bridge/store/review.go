package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/handoffhq/handoff/bridge"
)

// PutReview inserts or replaces the review record of r.SessionID. StartedAt
// and EndedAt are stored with millisecond precision (UTC).
func (t *tx) PutReview(ctx context.Context, r bridge.ReviewRecord) error {
	if r.SessionID == "" {
		return errors.New("store: put review: empty session id")
	}
	row, err := reviewToRow(r)
	if err != nil {
		return wrap(fmt.Sprintf("put review of session %q", r.SessionID), err)
	}
	err = t.q(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "session_id"}},
		UpdateAll: true,
	}).Create(&row).Error
	if err != nil {
		return wrap(fmt.Sprintf("put review of session %q", r.SessionID), err)
	}
	return nil
}

// Review returns the session's review record; ErrNotFound if absent.
func (t *tx) Review(ctx context.Context, session bridge.SessionID) (bridge.ReviewRecord, error) {
	what := fmt.Sprintf("review of session %q", session)
	var row reviewRow
	if err := t.q(ctx).Where("session_id = ?", string(session)).Take(&row).Error; err != nil {
		return bridge.ReviewRecord{}, wrap(what, err)
	}
	r, err := decodeReview([]byte(row.Record))
	if err != nil {
		return bridge.ReviewRecord{}, wrap(what, err)
	}
	return r, nil
}

// Reviews streams the records whose handoff started in [from, to), oldest
// first (ties by session id), one row at a time: memory does not grow with
// the number of records. An error from fn stops the stream and is returned
// unchanged. The stream reads on the read pool (SQLite file databases), so a
// slow fn (an export streaming to a slow HTTP client) never holds the writer;
// with sqlite::memory: it holds the one connection and fn must not use the
// Store.
func (s *Store) Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
	rows, err := s.reader().WithContext(ctx).Model(&reviewRow{}).Select("record").
		Where("started_at >= ? AND started_at < ?", ceilMS(from), ceilMS(to)).
		Order("started_at, session_id").Rows()
	if err != nil {
		return wrap("stream reviews", err)
	}
	defer rows.Close()
	var raw []byte
	for rows.Next() {
		if err := rows.Scan(&raw); err != nil {
			return wrap("stream reviews", err)
		}
		r, err := decodeReview(raw)
		if err != nil {
			return wrap("stream reviews", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return wrap("stream reviews", err)
	}
	return nil
}

// DeleteReviewsBefore deletes the records whose handoff started before t, with
// their annotations and audit log, and returns how many records were deleted.
func (s *Store) DeleteReviewsBefore(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		res := db.Where("started_at < ?", ceilMS(t)).Delete(&reviewRow{})
		if res.Error != nil {
			return res.Error
		}
		n = res.RowsAffected
		// Annotations and their audit log go with their record.
		const orphan = "session_id NOT IN (SELECT session_id FROM review_records)"
		if err := db.Where(orphan).Delete(&annotationRow{}).Error; err != nil {
			return err
		}
		return db.Where(orphan).Delete(&auditRow{}).Error
	})
	if err != nil {
		return 0, wrap("delete reviews", err)
	}
	return n, nil
}
