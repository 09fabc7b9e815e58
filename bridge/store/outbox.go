package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/handoffhq/handoff/bridge"
)

// laneLockClass is the first key of the two-key advisory locks that
// serialize PostgreSQL enqueuers of one lane ('HAND'); the second key is a
// hash of the lane. Two-key locks never collide with goose's one-key lock.
const laneLockClass = 0x48414e44

// Enqueue appends items to the outbox; IDs are assigned in slice order. An
// empty Lane is filled from the kind. On PostgreSQL it first takes a
// transaction-level advisory lock per lane (in a fixed order), so two
// transactions enqueueing to one lane commit in id order: otherwise a later
// id could commit first and be dispatched before an earlier one.
func (t *tx) Enqueue(ctx context.Context, items ...bridge.OutboxItem) error {
	if len(items) == 0 {
		return nil
	}
	now := t.s.now()
	rows := make([]outboxRow, len(items))
	for i, it := range items {
		if it.SessionID == "" || it.Conversation == "" || it.Kind == "" {
			return fmt.Errorf("store: enqueue: item %d needs a session, a conversation and a kind", i)
		}
		rows[i] = outboxToRow(it, now)
	}
	if t.s.dialect == DialectPostgres {
		if err := t.lockLanes(ctx, rows); err != nil {
			return err
		}
	}
	// One INSERT per item: a multi-row insert does not promise id order.
	for i := range rows {
		if err := t.q(ctx).Create(&rows[i]).Error; err != nil {
			return wrap(fmt.Sprintf("enqueue %s for session %q", rows[i].Kind, rows[i].SessionID), err)
		}
	}
	return nil
}

// lockLanes takes the advisory lock of every lane of rows, in ascending key
// order so that two Enqueue calls cannot deadlock on each other. The locks
// are held until commit. (A transaction that calls Enqueue several times can
// still deadlock with another one; PostgreSQL then aborts one of them and its
// Update returns the error.)
func (t *tx) lockLanes(ctx context.Context, rows []outboxRow) error {
	keys := make([]int32, 0, len(rows))
	for _, r := range rows {
		h := fnv.New32a()
		h.Write([]byte(r.ConversationID + "\x00" + r.Lane))
		keys = append(keys, int32(h.Sum32()))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	for _, k := range keys {
		if err := t.q(ctx).Exec("SELECT pg_advisory_xact_lock(?, ?)", laneLockClass, k).Error; err != nil {
			return wrap("enqueue: lock lane", err)
		}
	}
	return nil
}

// CompleteOutbox marks a dispatched item done; ErrNotFound if absent.
func (t *tx) CompleteOutbox(ctx context.Context, id int64) error {
	return t.setOutbox(ctx, id, "complete", map[string]any{
		"status":        statusDone,
		"claimed_until": nil,
		"updated_at":    toMS(t.s.now()),
	})
}

// RetryOutbox releases the lease and makes the item due again at next,
// recording lastErr. The item keeps blocking its lane. ErrNotFound if absent.
func (t *tx) RetryOutbox(ctx context.Context, id int64, next time.Time, lastErr string) error {
	return t.setOutbox(ctx, id, "retry", map[string]any{
		"next_attempt_at": toMS(next),
		"claimed_until":   nil,
		"last_error":      lastErr,
		"updated_at":      toMS(t.s.now()),
	})
}

// FailOutbox marks the item dead; it is kept for inspection and no longer
// blocks its lane. ErrNotFound if absent.
func (t *tx) FailOutbox(ctx context.Context, id int64, lastErr string) error {
	return t.setOutbox(ctx, id, "fail", map[string]any{
		"status":        statusDead,
		"claimed_until": nil,
		"last_error":    lastErr,
		"updated_at":    toMS(t.s.now()),
	})
}

func (t *tx) setOutbox(ctx context.Context, id int64, op string, cols map[string]any) error {
	res := t.q(ctx).Model(&outboxRow{}).Where("id = ?", id).Updates(cols)
	if res.Error != nil {
		return wrap(fmt.Sprintf("%s outbox item %d", op, id), res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("store: %s outbox item %d: %w", op, id, bridge.ErrNotFound)
	}
	return nil
}

// OutboxStats counts items by status; every status is present, 0 if none.
// CountSessions counts sessions by state with one GROUP BY.
func (t *tx) CountSessions(ctx context.Context) (map[bridge.State]int, error) {
	var rows []struct {
		State string
		N     int
	}
	err := t.q(ctx).Model(&sessionRow{}).Select("state, COUNT(*) AS n").Group("state").Find(&rows).Error
	if err != nil {
		return nil, wrap("session counts", err)
	}
	out := make(map[bridge.State]int, len(bridge.States))
	for _, s := range bridge.States {
		out[s] = 0
	}
	for _, r := range rows {
		out[bridge.State(r.State)] = r.N
	}
	return out, nil
}

func (t *tx) OutboxStats(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		Status string
		N      int
	}
	err := t.q(ctx).Model(&outboxRow{}).Select("status, COUNT(*) AS n").Group("status").Find(&rows).Error
	if err != nil {
		return nil, wrap("outbox stats", err)
	}
	out := map[string]int{statusPending: 0, statusDone: 0, statusDead: 0}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}

// How the claim finds work, in two statements of one transaction:
//
//  1. headsSQL reads the oldest pending item of every lane (one row per lane:
//     id, next_attempt_at, claimed_until) in a single scan of the partial lane
//     index, cost O(pending items). Done and dead items are not in that index,
//     so they never block a lane. Go keeps the heads that are due and not
//     leased, lowest ids first, at most limit of them.
//  2. lockSQL re-reads exactly those ids with the same conditions and, on
//     PostgreSQL, FOR UPDATE SKIP LOCKED: a head another worker holds is
//     skipped, and one claimed or finished since step 1 fails the re-check on
//     its new version. A row cannot stop being its lane's head between the
//     steps, because Enqueue serializes each lane so ids of a lane commit in
//     order.
//
// Single-statement shapes (NOT EXISTS per row; IN, ANY or a join against the
// grouped heads) were measured and rejected: with stale statistics, as after
// any burst of new rows, PostgreSQL planned them as nested loops that
// re-scanned the heads or the backlog per candidate row, O(n²), a second or
// more per claim with a few thousand pending items. Both statements here read
// one table, so every plan the planner can pick is linear.
const (
	headsSQLPostgres = `SELECT DISTINCT ON (conversation_id, lane) id, next_attempt_at, claimed_until
FROM outbox WHERE status = 'pending'
ORDER BY conversation_id, lane, id`
	// SQLite returns the bare columns of the row holding MIN(id).
	headsSQLSQLite = `SELECT MIN(id) AS id, next_attempt_at, claimed_until
FROM outbox WHERE status = 'pending'
GROUP BY conversation_id, lane`
	lockSQL = `SELECT * FROM outbox
WHERE id IN ? AND status = 'pending'
  AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)
ORDER BY id`
)

type laneHead struct {
	ID             int64  `gorm:"column:id"`
	NextAttemptMS  int64  `gorm:"column:next_attempt_at"`
	ClaimedUntilMS *int64 `gorm:"column:claimed_until"`
}

// claimable reports whether the head is due and not leased at nowMS.
func (h laneHead) claimable(nowMS int64) bool {
	return h.NextAttemptMS <= nowMS && (h.ClaimedUntilMS == nil || *h.ClaimedUntilMS < nowMS)
}

// ClaimOutbox leases up to limit due items until now+lease and returns them
// with Attempts incremented, oldest first. Only the oldest pending item of a
// lane is claimable, so a lane is dispatched strictly in order; items leased
// by another worker are skipped (FOR UPDATE SKIP LOCKED on PostgreSQL; on
// SQLite the single connection serializes claims). Returns an empty slice
// when nothing is due. It may return fewer than limit items while others are
// due, when another worker holds some of the chosen ones.
func (s *Store) ClaimOutbox(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]bridge.OutboxItem, error) {
	if limit <= 0 {
		return []bridge.OutboxItem{}, nil
	}
	nowMS := now.UnixMilli()
	until := now.Add(lease).UnixMilli()
	headsSQL, lock := headsSQLSQLite, ""
	if s.dialect == DialectPostgres {
		headsSQL, lock = headsSQLPostgres, "\nFOR UPDATE SKIP LOCKED"
	}
	var rows []outboxRow
	err := s.db.WithContext(ctx).Transaction(func(gtx *gorm.DB) error {
		var heads []laneHead
		if err := gtx.Raw(headsSQL).Find(&heads).Error; err != nil {
			return err
		}
		ids := make([]int64, 0, min(limit, len(heads)))
		for _, h := range heads {
			if h.claimable(nowMS) {
				ids = append(ids, h.ID)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		slices.Sort(ids)
		ids = ids[:min(limit, len(ids))]
		if err := gtx.Raw(lockSQL+lock, ids, nowMS, nowMS).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		ids = ids[:0]
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		return gtx.Model(&outboxRow{}).Where("id IN ?", ids).Updates(map[string]any{
			"attempts":      gorm.Expr("attempts + 1"),
			"claimed_until": until,
			"updated_at":    toMS(s.now()),
		}).Error
	})
	if err != nil {
		return nil, wrap("claim outbox", err)
	}
	out := make([]bridge.OutboxItem, len(rows))
	for i, r := range rows {
		r.Attempts++
		out[i] = r.domain()
	}
	if len(out) > 0 {
		s.logger.DebugContext(ctx, "outbox claimed", slog.Int("count", len(out)), slog.Int64("first_outbox_id", out[0].ID))
	}
	return out, nil
}
