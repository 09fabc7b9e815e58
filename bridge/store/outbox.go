package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
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

// enqueueClaimedSQL inserts an outbox item, claimed (attempt 1, leased,
// a token and owner) when nothing is pending in its lane and the lane is
// not throttled, and returns the row: the lane check and the insert in one
// statement. The parameters are typed, as PostgreSQL cannot infer them from
// a SELECT's outputs.
const enqueueClaimedSQL = `INSERT INTO outbox (session_id, conversation_id, lane, kind, payload, status, attempts,
  next_attempt_at, claimed_until, last_error, created_at, updated_at, claim_token, claim_owner, failing_since)
SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), 'pending',
  CASE WHEN f.free THEN 1 ELSE CAST(? AS INTEGER) END,
  CAST(? AS BIGINT), CASE WHEN f.free THEN CAST(? AS BIGINT) END, CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT),
  CASE WHEN f.free THEN CAST(? AS TEXT) ELSE '' END, CASE WHEN f.free THEN CAST(? AS TEXT) ELSE '' END, CAST(? AS BIGINT)
FROM (SELECT NOT EXISTS (SELECT 1 FROM outbox WHERE conversation_id = ? AND lane = ? AND status = 'pending')
  AND NOT EXISTS (SELECT 1 FROM outbox_throttles WHERE lane = ? AND until_at > ?) AS free) AS f
RETURNING *`

// EnqueueClaimed appends it and claims it at once when nothing else is
// pending in its lane and the lane is not throttled (see bridge.Tx). The
// lane's lock (PostgreSQL) is taken first, so no other transaction can
// enqueue to the lane until this one ends, and the check sees every item of
// the lane committed before. The check and the insert are one statement
// (enqueueClaimedSQL); an item that could not be claimed anyway (not due
// yet, no owner or lease) is inserted without the check.
func (t *tx) EnqueueClaimed(ctx context.Context, it bridge.OutboxItem, req bridge.ClaimRequest) (bridge.OutboxItem, bool, error) {
	if it.SessionID == "" || it.Conversation == "" || it.Kind == "" {
		return it, false, fmt.Errorf("store: enqueue: the item needs a session, a conversation and a kind")
	}
	now := t.s.now()
	row := outboxToRow(it, now)
	if t.s.dialect == DialectPostgres {
		if err := t.lockLanes(ctx, []outboxRow{row}); err != nil {
			return it, false, err
		}
	}
	nowMS := req.Now.UnixMilli()
	if row.NextAttemptMS > nowMS || req.Owner == "" || req.Lease <= 0 {
		if err := t.q(ctx).Create(&row).Error; err != nil {
			return it, false, wrap(fmt.Sprintf("enqueue %s for session %q", row.Kind, row.SessionID), err)
		}
		return row.domain(), false, nil
	}
	until := req.Now.Add(req.Lease).UnixMilli()
	var got outboxRow
	err := t.q(ctx).Raw(enqueueClaimedSQL,
		row.SessionID, row.ConversationID, row.Lane, row.Kind, row.Payload, row.Attempts,
		row.NextAttemptMS, until, row.LastError, row.CreatedMS, row.UpdatedMS,
		newToken(), req.Owner, row.FailingSinceMS,
		row.ConversationID, row.Lane, row.Lane, nowMS).Scan(&got).Error
	if err == nil && got.ID == 0 {
		err = errors.New("the insert returned no row")
	}
	if err != nil {
		return it, false, wrap(fmt.Sprintf("enqueue %s for session %q", row.Kind, row.SessionID), err)
	}
	return got.domain(), got.ClaimToken != "", nil
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

// CompleteOutbox marks a dispatched item done. ErrNotFound if absent;
// ErrLeaseLost if claim is not the item's current claim.
func (t *tx) CompleteOutbox(ctx context.Context, id int64, claim string) error {
	_, err := t.CompleteOutboxNext(ctx, id, claim)
	return err
}

// completeSQL marks a pending item done if claim is still its claim token,
// and returns whether a later item of its lane is pending (read through
// the partial lane index). One raw statement: the dispatcher runs it for
// every delivered item.
const completeSQL = `UPDATE outbox SET status = 'done', claimed_until = NULL, claim_token = '', updated_at = ?
WHERE id = ? AND status = 'pending' AND claim_token = ? AND claim_token <> ''
RETURNING EXISTS (SELECT 1 FROM outbox AS o WHERE o.conversation_id = outbox.conversation_id
  AND o.lane = outbox.lane AND o.status = 'pending' AND o.id > outbox.id)`

// CompleteOutboxNext marks a dispatched item done, as CompleteOutbox, and
// reports whether a later item of its lane is pending.
func (t *tx) CompleteOutboxNext(ctx context.Context, id int64, claim string) (next bool, err error) {
	rows, err := t.q(ctx).Raw(completeSQL, toMS(t.s.now()), id, claim).Rows()
	if err != nil {
		return false, wrap(fmt.Sprintf("complete outbox item %d", id), err)
	}
	defer rows.Close()
	done := rows.Next()
	if done {
		err = rows.Scan(&next)
	}
	if err == nil {
		err = rows.Err()
	}
	if err == nil {
		err = rows.Close() // frees the connection for outboxMiss
	}
	if err != nil {
		return false, wrap(fmt.Sprintf("complete outbox item %d", id), err)
	}
	if !done {
		return false, t.s.outboxMiss(t.q(ctx), id, "complete")
	}
	return next, nil
}

// RetryOutbox releases the claim and makes the item due again at r.Next,
// recording r.LastErr. A throttled retry takes the claim's attempt back and
// leaves failing_since alone; a failure sets failing_since if it was unset.
// The item keeps blocking its lane. ErrNotFound, ErrLeaseLost as for
// CompleteOutbox.
func (t *tx) RetryOutbox(ctx context.Context, id int64, claim string, r bridge.OutboxRetry) error {
	cols := map[string]any{
		"next_attempt_at": toMS(r.Next),
		"claimed_until":   nil,
		"claim_token":     "",
		"last_error":      r.LastErr,
		"updated_at":      toMS(t.s.now()),
	}
	if r.Throttled {
		cols["attempts"] = gorm.Expr("CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END")
	} else if since := toMS(r.FailingSince); since != 0 {
		cols["failing_since"] = gorm.Expr("CASE WHEN failing_since = 0 THEN ? ELSE failing_since END", since)
	}
	return t.setOutbox(ctx, id, claim, "retry", cols)
}

// FailOutbox marks the item dead; it is kept for inspection and no longer
// blocks its lane. ErrNotFound, ErrLeaseLost as for CompleteOutbox.
func (t *tx) FailOutbox(ctx context.Context, id int64, claim string, lastErr string) error {
	return t.setOutbox(ctx, id, claim, "fail", map[string]any{
		"status":        statusDead,
		"claimed_until": nil,
		"claim_token":   "",
		"last_error":    lastErr,
		"updated_at":    toMS(t.s.now()),
	})
}

// setOutbox updates the pending item id if claim is still its claim token.
func (t *tx) setOutbox(ctx context.Context, id int64, claim, op string, cols map[string]any) error {
	res := t.q(ctx).Model(&outboxRow{}).Where("id = ? AND status = ? AND claim_token = ? AND claim_token <> ''", id, statusPending, claim).Updates(cols)
	if res.Error != nil {
		return wrap(fmt.Sprintf("%s outbox item %d", op, id), res.Error)
	}
	if res.RowsAffected == 1 {
		return nil
	}
	return t.s.outboxMiss(t.q(ctx), id, op)
}

// outboxMiss explains why a fenced update of item id changed nothing:
// ErrNotFound if the item does not exist, ErrLeaseLost otherwise.
func (s *Store) outboxMiss(q *gorm.DB, id int64, op string) error {
	var n int64
	if err := q.Model(&outboxRow{}).Where("id = ?", id).Count(&n).Error; err != nil {
		return wrap(fmt.Sprintf("%s outbox item %d", op, id), err)
	}
	if n == 0 {
		return fmt.Errorf("store: %s outbox item %d: %w", op, id, bridge.ErrNotFound)
	}
	return fmt.Errorf("store: %s outbox item %d: %w", op, id, bridge.ErrLeaseLost)
}

// SetThrottle records that lane's destination is throttled until until,
// never moving an existing later until back.
func (t *tx) SetThrottle(ctx context.Context, lane bridge.Lane, until time.Time) error {
	now := toMS(t.s.now())
	err := t.q(ctx).Exec(`INSERT INTO outbox_throttles (lane, until_at, updated_at) VALUES (?, ?, ?)
ON CONFLICT (lane) DO UPDATE SET until_at = CASE WHEN excluded.until_at > outbox_throttles.until_at
  THEN excluded.until_at ELSE outbox_throttles.until_at END, updated_at = excluded.updated_at`,
		string(lane), toMS(until), now).Error
	if err != nil {
		return wrap(fmt.Sprintf("set throttle of lane %s", lane), err)
	}
	return nil
}

// Throttle returns until when lane is throttled after now; zero otherwise.
func (t *tx) Throttle(ctx context.Context, lane bridge.Lane, now time.Time) (time.Time, error) {
	var untils []int64
	err := t.q(ctx).Raw("SELECT until_at FROM outbox_throttles WHERE lane = ? AND until_at > ?", string(lane), now.UnixMilli()).Scan(&untils).Error
	if err != nil {
		return time.Time{}, wrap(fmt.Sprintf("throttle of lane %s", lane), err)
	}
	if len(untils) == 0 {
		return time.Time{}, nil
	}
	return fromMS(untils[0]), nil
}

// ExtendOutbox moves the lease of a claimed item to until. ErrLeaseLost if
// claim is not the item's claim any more.
func (s *Store) ExtendOutbox(ctx context.Context, id int64, claim string, until time.Time) error {
	q := s.db.WithContext(ctx)
	res := q.Model(&outboxRow{}).Where("id = ? AND status = ? AND claim_token = ? AND claim_token <> ''", id, statusPending, claim).
		Updates(map[string]any{"claimed_until": toMS(until), "updated_at": toMS(s.now())})
	if res.Error != nil {
		return wrap(fmt.Sprintf("extend outbox item %d", id), res.Error)
	}
	if res.RowsAffected == 1 {
		return nil
	}
	return s.outboxMiss(q, id, "extend")
}

// ReleaseOutboxClaims makes every pending item claimed by owner due at once
// and returns how many it released. Their claim tokens are cleared, so a
// worker still holding one can no longer record an outcome.
func (s *Store) ReleaseOutboxClaims(ctx context.Context, owner string) (int, error) {
	if owner == "" {
		return 0, nil
	}
	res := s.db.WithContext(ctx).Model(&outboxRow{}).
		Where("claim_owner = ? AND status = ? AND claimed_until IS NOT NULL", owner, statusPending).
		Updates(map[string]any{"claimed_until": nil, "claim_token": "", "updated_at": toMS(s.now())})
	if res.Error != nil {
		return 0, wrap(fmt.Sprintf("release outbox claims of %q", owner), res.Error)
	}
	return int(res.RowsAffected), nil
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

// How the claim finds work, in two statements:
//
//  1. headsSQL reads the oldest pending item of every lane that is not
//     throttled (one row per lane: id, next_attempt_at, claimed_until) in a
//     single scan of the partial lane index, cost O(pending items). Done and
//     dead items are not in that index, so they never block a lane. The
//     throttle check removes whole lanes (lane is part of the grouping), so a
//     throttled lane's later items never stand in for its head; it reads
//     outbox_throttles, one row per lane kind, once (a hashed subplan), not
//     per outbox row. Go keeps the heads that are due and not leased, lowest
//     ids first, at most limit of them.
//  2. claimSQL leases exactly those ids, re-checking the same conditions, in
//     one UPDATE … RETURNING. On PostgreSQL the ids are first locked FOR
//     UPDATE SKIP LOCKED in an uncorrelated ARRAY subquery (evaluated once,
//     before the update): a head another worker holds is skipped, and one
//     claimed or finished since step 1 fails the re-check on its new
//     version. A row cannot stop being its lane's head between the steps,
//     because Enqueue serializes each lane so ids of a lane commit in order.
//
// On PostgreSQL the two statements run outside a transaction: under READ
// COMMITTED each statement of a transaction takes its own snapshot anyway,
// and the row locks that matter are taken and used within the one UPDATE,
// so BEGIN and COMMIT would only add two round trips. On SQLite they run in
// one (IMMEDIATE) transaction on the one writer connection, as before.
//
// Single-statement shapes (NOT EXISTS per row; IN, ANY or a join against the
// grouped heads) were measured and rejected: with stale statistics, as after
// any burst of new rows, PostgreSQL planned them as nested loops that
// re-scanned the heads or the backlog per candidate row, O(n²), a second or
// more per claim with a few thousand pending items. The heads statement
// reads the outbox once and the small throttle table once; the claim
// statement reads the chosen ids by primary key; so every plan the planner
// can pick is linear.
const (
	headsSQLPostgres = `SELECT DISTINCT ON (conversation_id, lane) id, lane, next_attempt_at, claimed_until
FROM outbox WHERE status = 'pending'
  AND lane NOT IN (SELECT lane FROM outbox_throttles WHERE until_at > ?)
ORDER BY conversation_id, lane, id`
	// SQLite returns the bare columns of the row holding MIN(id).
	headsSQLSQLite = `SELECT MIN(id) AS id, lane, next_attempt_at, claimed_until
FROM outbox WHERE status = 'pending'
  AND lane NOT IN (SELECT lane FROM outbox_throttles WHERE until_at > ?)
GROUP BY conversation_id, lane`
	// The ids travel as one array literal, so the statement's text (and
	// the driver's prepared statement) is the same for any number of them.
	claimSQLPostgres = `UPDATE outbox SET attempts = attempts + 1, claimed_until = ?, claim_token = ?, claim_owner = ?, updated_at = ?
WHERE id = ANY(ARRAY(SELECT id FROM outbox
  WHERE id = ANY(CAST(CAST(? AS TEXT) AS BIGINT[])) AND status = 'pending'
    AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)
  FOR UPDATE SKIP LOCKED))
RETURNING *`
	claimSQLSQLite = `UPDATE outbox SET attempts = attempts + 1, claimed_until = ?, claim_token = ?, claim_owner = ?, updated_at = ?
WHERE id IN ? AND status = 'pending'
  AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)
RETURNING *`
)

type laneHead struct {
	ID             int64  `gorm:"column:id"`
	Lane           string `gorm:"column:lane"`
	NextAttemptMS  int64  `gorm:"column:next_attempt_at"`
	ClaimedUntilMS *int64 `gorm:"column:claimed_until"`
}

// claimable reports whether the head is due and not leased at nowMS.
func (h laneHead) claimable(nowMS int64) bool {
	return h.NextAttemptMS <= nowMS && (h.ClaimedUntilMS == nil || *h.ClaimedUntilMS < nowMS)
}

// pgIDs is a PostgreSQL array literal of ids, e.g. {1,2,3}.
func pgIDs(ids []int64) string {
	b := make([]byte, 0, 2+8*len(ids))
	b = append(b, '{')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, '}'))
}

// ClaimOutbox leases up to req.Limit due items until req.Now+req.Lease, under
// one fresh claim token per call and req.Owner, in one UPDATE, and returns
// them with Attempts incremented, oldest first. Only the oldest pending item of a lane is
// claimable, so a lane is dispatched strictly in order; items leased by
// another worker are skipped (FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite
// the single connection serializes claims), and so are lanes whose kind is
// throttled at req.Now. Returns an empty slice when nothing is due. It may
// return fewer than req.Limit items while others are due, when another
// worker holds some of the chosen ones. Two statements (see headsSQL): on
// PostgreSQL two round trips, one when nothing is due.
func (s *Store) ClaimOutbox(ctx context.Context, req bridge.ClaimRequest) ([]bridge.OutboxItem, error) {
	if req.Limit <= 0 {
		return []bridge.OutboxItem{}, nil
	}
	limit := req.Limit
	nowMS := req.Now.UnixMilli()
	until := req.Now.Add(req.Lease).UnixMilli()
	var rows []outboxRow
	claim := func(q *gorm.DB) error {
		headsSQL := headsSQLSQLite
		if s.dialect == DialectPostgres {
			headsSQL = headsSQLPostgres
		}
		var heads []laneHead
		if err := q.Raw(headsSQL, nowMS).Find(&heads).Error; err != nil {
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
		// One UPDATE for the whole claim, under one fresh token: a token
		// fences together with its item's id (every outcome matches both),
		// and the next claim of any of these items gets a new token, so a
		// token shared by the items of one claim fences exactly as well as
		// one per item.
		var idArg any = ids
		claimSQL := claimSQLSQLite
		if s.dialect == DialectPostgres {
			idArg, claimSQL = pgIDs(ids), claimSQLPostgres
		}
		return q.Raw(claimSQL, until, newToken(), req.Owner, toMS(s.now()), idArg, nowMS, nowMS).Find(&rows).Error
	}
	var err error
	if s.dialect == DialectPostgres {
		err = claim(s.db.WithContext(ctx))
	} else {
		err = s.db.WithContext(ctx).Transaction(claim)
	}
	if err != nil {
		return nil, wrap("claim outbox", err)
	}
	// RETURNING gives the rows as updated (Attempts incremented, the new
	// claim), in no promised order.
	slices.SortFunc(rows, func(a, b outboxRow) int { return cmp.Compare(a.ID, b.ID) })
	out := make([]bridge.OutboxItem, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	if len(out) > 0 {
		s.logger.DebugContext(ctx, "outbox claimed", slog.Int("count", len(out)), slog.Int64("first_outbox_id", out[0].ID))
	}
	return out, nil
}

// newToken returns a random claim token.
func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
