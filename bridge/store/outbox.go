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
// order so that two enqueuers cannot deadlock on each other.
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

// claimSQL returns the SQL selecting the claimable items: the oldest pending
// item of each lane (done and dead items do not block a lane), if it is due
// and not leased (or its lease ran out).
//
// The lane heads come from one grouped scan of the partial lane index, cost
// O(pending items), run once; the heads are then fetched by primary key. On
// PostgreSQL the heads are an ARRAY(...) init plan: written as IN (subquery)
// or as a join, stale statistics (a fresh burst of rows) made the planner
// re-run the aggregate or rescan the heads per candidate row, O(n²) and
// seconds per claim. SQLite runs IN (subquery) once by itself. A per-row NOT
// EXISTS probe for an older item of the lane was also tried and was several
// times slower with a backlog. The literal 'pending' lets both databases use
// the partial indexes.
func claimSQL(dialect string) string {
	heads := `SELECT MIN(h.id) FROM outbox AS h WHERE h.status = 'pending' GROUP BY h.conversation_id, h.lane`
	var where, lock string
	if dialect == DialectPostgres {
		where, lock = "o.id = ANY (ARRAY("+heads+"))", "\nFOR UPDATE OF o SKIP LOCKED"
	} else {
		where = "o.id IN (" + heads + ")"
	}
	return "SELECT o.* FROM outbox AS o\nWHERE " + where + `
  AND o.status = 'pending'
  AND o.next_attempt_at <= ?
  AND (o.claimed_until IS NULL OR o.claimed_until < ?)
ORDER BY o.id
LIMIT ?` + lock
}

// ClaimOutbox leases up to limit due items until now+lease and returns them
// with Attempts incremented, oldest first. Only the oldest pending item of a
// lane is claimable, so a lane is dispatched strictly in order; items leased
// by another worker are skipped (FOR UPDATE SKIP LOCKED on PostgreSQL; on
// SQLite the single connection serializes claims). Returns an empty slice
// when nothing is due.
func (s *Store) ClaimOutbox(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]bridge.OutboxItem, error) {
	if limit <= 0 {
		return []bridge.OutboxItem{}, nil
	}
	nowMS := now.UnixMilli()
	until := now.Add(lease).UnixMilli()
	query := claimSQL(s.dialect)
	var rows []outboxRow
	err := s.db.WithContext(ctx).Transaction(func(gtx *gorm.DB) error {
		if err := gtx.Raw(query, nowMS, nowMS, limit).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		ids := make([]int64, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
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
