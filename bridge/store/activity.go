package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// pruneActivityBatch bounds how many expired activity keys one call deletes,
// so pruning costs every request a little and none of them much.
const pruneActivityBatch = 20

const (
	rememberActivitySQL = `INSERT INTO activity_keys (conversation_id, activity_id, expires_at) VALUES (?, ?, ?)
ON CONFLICT (conversation_id, activity_id) DO UPDATE SET expires_at = excluded.expires_at
WHERE activity_keys.expires_at <= ?`
	// Expired keys other transactions are deleting are skipped, never waited for.
	pruneActivitiesPostgres = `DELETE FROM activity_keys WHERE (conversation_id, activity_id) IN (
SELECT conversation_id, activity_id FROM activity_keys WHERE expires_at <= ? ORDER BY expires_at LIMIT ? FOR UPDATE SKIP LOCKED)`
	pruneActivitiesSQLite = `DELETE FROM activity_keys WHERE rowid IN (
SELECT rowid FROM activity_keys WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)`
)

// RememberActivity records that the conversation's activity was handled until
// expires. It returns false when the pair is remembered and not expired (a
// repeated delivery); an expired record is renewed and counts as new. A few
// expired records are deleted on the way.
func (t *tx) RememberActivity(ctx context.Context, conv bridge.ConversationID, activityID string, now, expires time.Time) (bool, error) {
	what := fmt.Sprintf("remember activity %q of conversation %q", activityID, conv)
	if conv == "" || activityID == "" {
		return false, errors.New("store: " + what + ": empty id")
	}
	prune := pruneActivitiesSQLite
	if t.s.dialect == DialectPostgres {
		prune = pruneActivitiesPostgres
	}
	if err := t.q(ctx).Exec(prune, toMS(now), pruneActivityBatch).Error; err != nil {
		return false, wrap(what+": prune expired", err)
	}
	res := t.q(ctx).Exec(rememberActivitySQL, string(conv), activityID, toMS(expires), toMS(now))
	if res.Error != nil {
		return false, wrap(what, res.Error)
	}
	return res.RowsAffected == 1, nil
}
