package store

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"gorm.io/gorm/schema"

	"github.com/handoffhq/handoff/bridge"
)

// itemRow is the one row ReadItem reads: a session, a message and a
// conversation reference side by side, each column under its table's
// prefix; a part whose row is absent scans as its zero value.
type itemRow struct {
	S sessionRow         `gorm:"embedded;embeddedPrefix:s__"`
	M messageRow         `gorm:"embedded;embeddedPrefix:m__"`
	R conversationRefRow `gorm:"embedded;embeddedPrefix:r__"`
}

// itemSQL returns ReadItem's statement, with or without the conversation
// reference: every column of each row under its prefix, each row joined by
// its primary key to a one-row base, so the statement always returns exactly
// one row and every read is a primary-key lookup.
var itemSQL = sync.OnceValues(func() (withRef, withoutRef string) {
	cols := func(model any, alias string) string {
		sch, err := schema.Parse(model, &sync.Map{}, schema.NamingStrategy{})
		if err != nil {
			panic(fmt.Sprintf("store: parse %T: %v", model, err)) // a row struct's tags are broken
		}
		out := make([]string, len(sch.DBNames))
		for i, c := range sch.DBNames {
			out[i] = alias + "." + c + " AS " + alias + "__" + c
		}
		return strings.Join(out, ", ")
	}
	s, m, r := cols(&sessionRow{}, "s"), cols(&messageRow{}, "m"), cols(&conversationRefRow{}, "r")
	from := `
FROM (SELECT 1 AS one) AS one
LEFT JOIN sessions AS s ON s.id = ?
LEFT JOIN messages AS m ON m.id = ?`
	withRef = "SELECT " + s + ", " + m + ", " + r + from + `
LEFT JOIN conversation_refs AS r ON r.conversation_id = ?`
	withoutRef = "SELECT " + s + ", " + m + from
	return withRef, withoutRef
})

// ReadItem returns the session, the message and, unless conv is empty, the
// conversation reference, as Session, Message and ConversationRef would. The
// errors are theirs, in that order: ErrNotFound for the first one missing.
//
// It reads them in one statement: on PostgreSQL one round trip instead of
// three, on SQLite one statement stepped instead of three, each with its
// own trip through gorm. (SQLite ran the three reads while its driver
// compiled every statement at every execution: the one wide statement then
// cost twice the compile CPU of the three plain ones. Each connection now
// keeps its compiled statements, stmtcache.go.)
func (t *tx) ReadItem(ctx context.Context, session bridge.SessionID, message int64, conv bridge.ConversationID) (bridge.Session, bridge.Message, bridge.ConversationRef, error) {
	withRef, withoutRef := itemSQL()
	q, args := withoutRef, []any{string(session), message}
	if conv != "" {
		q, args = withRef, append(args, string(conv))
	}
	var row itemRow
	if err := t.q(ctx).Raw(q, args...).Scan(&row).Error; err != nil {
		return bridge.Session{}, bridge.Message{}, bridge.ConversationRef{}, wrap(fmt.Sprintf("item reads of session %q", session), err)
	}
	if row.S.ID == "" {
		return bridge.Session{}, bridge.Message{}, bridge.ConversationRef{}, fmt.Errorf("store: session %q: %w", session, bridge.ErrNotFound)
	}
	t.remember(row.S)
	s := row.S.domain()
	if row.M.ID == 0 {
		return s, bridge.Message{}, bridge.ConversationRef{}, fmt.Errorf("store: message %d: %w", message, bridge.ErrNotFound)
	}
	m, err := row.M.domain()
	if err != nil {
		return s, bridge.Message{}, bridge.ConversationRef{}, wrap(fmt.Sprintf("message %d", message), err)
	}
	if conv == "" {
		return s, m, bridge.ConversationRef{}, nil
	}
	if row.R.ConversationID == "" {
		return s, m, bridge.ConversationRef{}, fmt.Errorf("store: conversation ref %q: %w", conv, bridge.ErrNotFound)
	}
	return s, m, row.R.domain(), nil
}

// ReadItem is Tx.ReadItem outside a transaction, on the read path (on
// SQLite the read pool): it is one statement, whose snapshot is consistent
// by itself, so a read-only transaction around it would only add its BEGIN
// and COMMIT (on PostgreSQL two round trips).
func (s *Store) ReadItem(ctx context.Context, session bridge.SessionID, message int64, conv bridge.ConversationID) (bridge.Session, bridge.Message, bridge.ConversationRef, error) {
	return (&tx{s: s, db: s.reader()}).ReadItem(ctx, session, message, conv)
}
