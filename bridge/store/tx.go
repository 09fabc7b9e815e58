package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/handoffhq/handoff/bridge"
)

// tx implements bridge.Tx over one gorm transaction. Every method starts its
// own statement with WithContext, so no conditions carry over between calls.
type tx struct {
	s  *Store
	db *gorm.DB

	// read holds the session rows this transaction read (by id, the latest
	// read), and listed the lists it read (indexed into read only when an
	// UpdateSession needs them), so UpdateSession writes only the columns the
	// caller changed. On PostgreSQL transactions touching one session run
	// concurrently (READ COMMITTED, no row lock on read): a whole-row write
	// would put back what another transaction changed since this one read,
	// e.g. a status card write erasing the desk chat id the desk open stored,
	// which left the session queued and never polled.
	read   map[string]sessionRow
	listed [][]sessionRow
}

var _ bridge.Tx = (*tx)(nil)

func (t *tx) q(ctx context.Context) *gorm.DB { return t.db.WithContext(ctx) }

// Session returns the session; ErrNotFound if there is none.
func (t *tx) Session(ctx context.Context, id bridge.SessionID) (bridge.Session, error) {
	var r sessionRow
	if err := t.q(ctx).Where("id = ?", string(id)).Take(&r).Error; err != nil {
		return bridge.Session{}, wrap(fmt.Sprintf("session %q", id), err)
	}
	t.remember(r)
	return r.domain(), nil
}

// remember notes r as this transaction's latest read of its session.
func (t *tx) remember(r sessionRow) {
	if t.read == nil {
		t.read = map[string]sessionRow{}
	}
	t.read[r.ID] = r
}

// lastRead returns what this transaction last read (or wrote) of session id.
func (t *tx) lastRead(id string) (sessionRow, bool) {
	for _, rows := range t.listed {
		for _, r := range rows {
			if _, seen := t.read[r.ID]; !seen {
				t.remember(r) // a later single read or write is newer
			}
		}
	}
	t.listed = nil
	r, ok := t.read[id]
	return r, ok
}

// OpenSession returns the conversation's session that is not closed.
func (t *tx) OpenSession(ctx context.Context, conv bridge.ConversationID) (bridge.Session, error) {
	var r sessionRow
	// The literal 'closed' lets both databases use the partial unique index.
	err := t.q(ctx).Where("conversation_id = ? AND state <> 'closed'", string(conv)).
		Order("created_at DESC, id DESC").Take(&r).Error
	if err != nil {
		return bridge.Session{}, wrap(fmt.Sprintf("open session of conversation %q", conv), err)
	}
	t.remember(r)
	return r.domain(), nil
}

// SessionByAgentChat returns the session bound to the desk chat (the newest,
// should a chat id ever be reused).
func (t *tx) SessionByAgentChat(ctx context.Context, chat bridge.AgentChatID) (bridge.Session, error) {
	if chat == "" {
		return bridge.Session{}, fmt.Errorf("store: session by agent chat: empty chat id: %w", bridge.ErrNotFound)
	}
	var r sessionRow
	err := t.q(ctx).Where("agent_chat_id = ? AND agent_chat_id <> ''", string(chat)).
		Order("created_at DESC, id DESC").Take(&r).Error
	if err != nil {
		return bridge.Session{}, wrap(fmt.Sprintf("session by agent chat %q", chat), err)
	}
	t.remember(r)
	return r.domain(), nil
}

// CreateSession inserts s. ErrConflict if the conversation already has an
// open session (or the id is taken). The insert uses ON CONFLICT DO NOTHING,
// so on PostgreSQL a conflict does not abort the surrounding transaction.
func (t *tx) CreateSession(ctx context.Context, s bridge.Session) error {
	if s.ID == "" {
		return errors.New("store: create session: empty session id")
	}
	if !s.State.Valid() {
		return fmt.Errorf("store: create session %q: invalid state %q", s.ID, s.State)
	}
	r := sessionToRow(s)
	res := t.q(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&r)
	if err := res.Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return fmt.Errorf("store: create session %q: %w", s.ID, bridge.ErrConflict)
		}
		return wrap(fmt.Sprintf("create session %q", s.ID), err)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("store: create session %q: conversation %q already has an open session or the id exists: %w",
			s.ID, s.Conversation, bridge.ErrConflict)
	}
	return nil
}

// UpdateSession writes the fields of s that differ from what this
// transaction last read of the session (every field when it read none) if
// the stored state still equals expect; ErrConflict otherwise. When no
// session s.ID exists at all the error matches both ErrConflict (as
// documented) and ErrNotFound.
func (t *tx) UpdateSession(ctx context.Context, s bridge.Session, expect bridge.State) error {
	if !s.State.Valid() {
		return fmt.Errorf("store: update session %q: invalid state %q", s.ID, s.State)
	}
	r := sessionToRow(s)
	cols := r.columns()
	if before, ok := t.lastRead(r.ID); ok {
		for k, v := range before.columns() {
			if cols[k] == v {
				delete(cols, k)
			}
		}
	}
	if len(cols) == 0 {
		// Nothing changed: only the state check remains.
		cols["state"] = r.State
	}
	// DeskPosts only grows (DeskMessage.Confirmed): a writer that read the
	// session before a concurrent desk confirmation committed must not take
	// the count back, or the desk would later take an unsent message for a
	// sent one. The state compare-and-set does not cover it: on PostgreSQL
	// transactions touching one session run concurrently.
	if _, ok := cols["desk_posts"]; ok {
		cols["desk_posts"] = gorm.Expr(t.s.greatest()+"(desk_posts, ?)", r.DeskPosts)
	}
	res := t.q(ctx).Model(&sessionRow{}).
		Where("id = ? AND state = ?", r.ID, string(expect)).
		Updates(cols)
	if err := res.Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return fmt.Errorf("store: update session %q: conversation %q already has another open session: %w",
				s.ID, s.Conversation, bridge.ErrConflict)
		}
		return wrap(fmt.Sprintf("update session %q", s.ID), err)
	}
	if res.RowsAffected == 1 {
		t.remember(r)
		return nil
	}
	var n int64
	if err := t.q(ctx).Model(&sessionRow{}).Where("id = ?", r.ID).Count(&n).Error; err != nil {
		return wrap(fmt.Sprintf("update session %q", s.ID), err)
	}
	if n == 0 {
		return fmt.Errorf("store: update session %q: no such session: %w (%w)", s.ID, bridge.ErrConflict, bridge.ErrNotFound)
	}
	return fmt.Errorf("store: update session %q: state is no longer %s: %w", s.ID, expect, bridge.ErrConflict)
}

// AddDeskPost counts one more confirmed desk post of the session, in one
// statement (no read): the dispatcher runs it for every message delivered
// to the desk. The increment is the database's, so concurrent ones add up.
func (t *tx) AddDeskPost(ctx context.Context, id bridge.SessionID, now time.Time) error {
	res := t.q(ctx).Exec("UPDATE sessions SET desk_posts = desk_posts + 1, updated_at = ? WHERE id = ?", toMS(now), string(id))
	if res.Error != nil {
		return wrap(fmt.Sprintf("add desk post of session %q", id), res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("store: add desk post of session %q: %w", id, bridge.ErrNotFound)
	}
	if r, ok := t.lastRead(string(id)); ok {
		// What this transaction now knows of the row, so a later
		// UpdateSession does not count the change as its own.
		r.DeskPosts++
		r.UpdatedMS = toMS(now)
		t.remember(r)
	}
	return nil
}

// SessionsInStates returns all sessions in any of the states, oldest first.
func (t *tx) SessionsInStates(ctx context.Context, states ...bridge.State) ([]bridge.Session, error) {
	if len(states) == 0 {
		return []bridge.Session{}, nil
	}
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = string(st)
	}
	var rows []sessionRow
	if err := t.q(ctx).Where("state IN ?", names).Order("created_at, id").Find(&rows).Error; err != nil {
		return nil, wrap(fmt.Sprintf("sessions in states %v", states), err)
	}
	t.listed = append(t.listed, rows)
	out := make([]bridge.Session, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// InsertMessage stores m and sets m.ID. A duplicate (same session, source and
// non-empty external id) writes nothing and returns false; m.ID is then set
// to the stored message's id. A message with an empty ExternalID is never
// treated as a duplicate.
func (t *tx) InsertMessage(ctx context.Context, m *bridge.Message) (bool, error) {
	what := fmt.Sprintf("insert message %s/%s/%q", m.SessionID, m.Source, m.ExternalID)
	r, err := messageToRow(m)
	if err != nil {
		return false, wrap(what, err)
	}
	res := t.q(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&r)
	if err := res.Error; err != nil {
		return false, wrap(what, err)
	}
	if res.RowsAffected == 1 {
		m.ID = r.ID
		return true, nil
	}
	if r.ExternalID == nil {
		return false, fmt.Errorf("store: %s: insert did nothing", what)
	}
	var existing messageRow
	err = t.q(ctx).Select("id").
		Where("session_id = ? AND source = ? AND external_id = ?", r.SessionID, r.Source, *r.ExternalID).
		Take(&existing).Error
	if err != nil {
		return false, wrap(what+": find duplicate", err)
	}
	m.ID = existing.ID
	return false, nil
}

// Message returns one message by id; ErrNotFound if absent.
func (t *tx) Message(ctx context.Context, id int64) (bridge.Message, error) {
	var r messageRow
	if err := t.q(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return bridge.Message{}, wrap(fmt.Sprintf("message %d", id), err)
	}
	m, err := r.domain()
	if err != nil {
		return bridge.Message{}, wrap(fmt.Sprintf("message %d", id), err)
	}
	return m, nil
}

// Messages returns the session's last limit messages (all if limit <= 0),
// oldest first by (SentAt, ID).
func (t *tx) Messages(ctx context.Context, session bridge.SessionID, limit int) ([]bridge.Message, error) {
	what := fmt.Sprintf("messages of session %q", session)
	q := t.q(ctx).Where("session_id = ?", string(session))
	return t.lastMessages(q, limit, "sent_at", "id", what)
}

// ConversationMessages returns the conversation's last limit messages across
// all of its sessions, oldest first by (SentAt, ID).
func (t *tx) ConversationMessages(ctx context.Context, conv bridge.ConversationID, limit int) ([]bridge.Message, error) {
	what := fmt.Sprintf("messages of conversation %q", conv)
	q := t.q(ctx).Table("messages AS m").Select("m.*").
		Joins("JOIN sessions AS s ON s.id = m.session_id").
		Where("s.conversation_id = ?", string(conv))
	return t.lastMessages(q, limit, "m.sent_at", "m.id", what)
}

// lastMessages runs q for the newest limit messages and returns them oldest
// first.
func (t *tx) lastMessages(q *gorm.DB, limit int, sentCol, idCol, what string) ([]bridge.Message, error) {
	var rows []messageRow
	if limit > 0 {
		q = q.Order(sentCol + " DESC, " + idCol + " DESC").Limit(limit)
	} else {
		q = q.Order(sentCol + ", " + idCol)
	}
	if err := q.Find(&rows).Error; err != nil {
		return nil, wrap(what, err)
	}
	if limit > 0 {
		slices.Reverse(rows)
	}
	out, err := messagesFromRows(rows)
	if err != nil {
		return nil, wrap(what, err)
	}
	return out, nil
}

// CountMessages returns how many of the session's messages came from source.
func (t *tx) CountMessages(ctx context.Context, session bridge.SessionID, source bridge.Source) (int, error) {
	var n int64
	err := t.q(ctx).Model(&messageRow{}).
		Where("session_id = ? AND source = ?", string(session), string(source)).Count(&n).Error
	if err != nil {
		return 0, wrap(fmt.Sprintf("count %s messages of session %q", source, session), err)
	}
	return int(n), nil
}

// SessionsByAgentChats reads the sessions of many desk chats with one query
// per cursorChunk chats.
func (t *tx) SessionsByAgentChats(ctx context.Context, chats []bridge.AgentChatID) (map[bridge.AgentChatID]bridge.Session, error) {
	out := make(map[bridge.AgentChatID]bridge.Session, len(chats))
	for chunk := range slices.Chunk(chats, cursorChunk) {
		ids := make([]string, 0, len(chunk))
		for _, c := range chunk {
			if c != "" {
				ids = append(ids, string(c))
			}
		}
		if len(ids) == 0 {
			continue
		}
		var rows []sessionRow
		if err := t.q(ctx).Where("agent_chat_id IN ? AND agent_chat_id <> ''", ids).Order("created_at, id").Find(&rows).Error; err != nil {
			return nil, wrap(fmt.Sprintf("sessions of %d desk chats", len(ids)), err)
		}
		for _, r := range rows {
			out[bridge.AgentChatID(r.AgentChatID)] = r.domain() // the newest wins
		}
	}
	return out, nil
}

// StoredMessages reads which message keys are stored, with one query per
// cursorChunk keys.
func (t *tx) StoredMessages(ctx context.Context, keys []bridge.MessageKey) (map[bridge.MessageKey]bool, error) {
	out := make(map[bridge.MessageKey]bool, len(keys))
	for chunk := range slices.Chunk(keys, cursorChunk) {
		sessions := make(map[string]bool, len(chunk))
		ids := make(map[string]bool, len(chunk))
		for _, k := range chunk {
			sessions[string(k.Session)] = true
			ids[k.ExternalID] = true
		}
		var rows []struct {
			SessionID  string
			Source     string
			ExternalID string
		}
		err := t.q(ctx).Model(&messageRow{}).Select("session_id, source, external_id").
			Where("session_id IN ? AND external_id IN ?", slices.Collect(maps.Keys(sessions)), slices.Collect(maps.Keys(ids))).
			Find(&rows).Error
		if err != nil {
			return nil, wrap(fmt.Sprintf("stored messages among %d keys", len(chunk)), err)
		}
		want := make(map[bridge.MessageKey]bool, len(chunk))
		for _, k := range chunk {
			want[k] = true
		}
		for _, r := range rows {
			k := bridge.MessageKey{Session: bridge.SessionID(r.SessionID), Source: bridge.Source(r.Source), ExternalID: r.ExternalID}
			if want[k] {
				out[k] = true
			}
		}
	}
	return out, nil
}

// PollTargets reads the queued and live sessions with a desk chat and their
// cursors with one query (ids, chats and cursors only: it runs on every poll).
func (t *tx) PollTargets(ctx context.Context) ([]bridge.PollTarget, error) {
	rows, err := t.q(ctx).Raw("SELECT s.id, s.agent_chat_id, COALESCE(c.cursor_at, 0) FROM sessions s"+
		" LEFT JOIN cursors c ON c.session_id = s.id"+
		" WHERE s.state IN (?, ?) AND s.agent_chat_id <> '' ORDER BY s.created_at, s.id",
		string(bridge.StateQueued), string(bridge.StateLive)).Rows()
	if err != nil {
		return nil, wrap("poll targets", err)
	}
	defer rows.Close()
	var out []bridge.PollTarget
	for rows.Next() {
		var (
			id, chat string
			cursor   int64
		)
		if err := rows.Scan(&id, &chat, &cursor); err != nil {
			return nil, wrap("poll targets", err)
		}
		pt := bridge.PollTarget{Session: bridge.SessionID(id), Chat: bridge.AgentChatID(chat)}
		if cursor != 0 {
			pt.Cursor = fromMS(cursor)
		}
		out = append(out, pt)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("poll targets", err)
	}
	return out, nil
}

// Cursor returns the session's delivery cursor (ms precision, UTC); the zero
// time and nil when none is set.
func (t *tx) Cursor(ctx context.Context, session bridge.SessionID) (time.Time, error) {
	var r cursorRow
	err := t.q(ctx).Where("session_id = ?", string(session)).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, wrap(fmt.Sprintf("cursor of session %q", session), err)
	}
	return fromMS(r.CursorMS), nil
}

// cursorChunk bounds the ids of one IN list (well under SQLite's and
// PostgreSQL's bind-parameter limits).
const cursorChunk = 500

// Cursors reads the cursors of sessions with one query per cursorChunk ids.
func (t *tx) Cursors(ctx context.Context, sessions []bridge.SessionID) (map[bridge.SessionID]time.Time, error) {
	out := make(map[bridge.SessionID]time.Time, len(sessions))
	for len(sessions) > 0 {
		n := min(len(sessions), cursorChunk)
		ids := make([]string, n)
		for i, s := range sessions[:n] {
			ids[i] = string(s)
		}
		sessions = sessions[n:]
		var rows []cursorRow
		if err := t.q(ctx).Where("session_id IN ?", ids).Find(&rows).Error; err != nil {
			return nil, wrap(fmt.Sprintf("cursors of %d sessions", len(ids)), err)
		}
		for _, r := range rows {
			out[bridge.SessionID(r.SessionID)] = fromMS(r.CursorMS)
		}
	}
	return out, nil
}

// SetCursor sets the session's cursor to at (ms precision). The session must
// exist.
func (t *tx) SetCursor(ctx context.Context, session bridge.SessionID, at time.Time) error {
	r := cursorRow{SessionID: string(session), CursorMS: toMS(at), UpdatedMS: toMS(t.s.now())}
	err := t.q(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "session_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"cursor_at", "updated_at"}),
	}).Create(&r).Error
	if err != nil {
		return wrap(fmt.Sprintf("set cursor of session %q", session), err)
	}
	return nil
}

// advanceChunk bounds the sessions of one AdvanceCursors statement: three
// bind parameters each, under SQLite's 32,766 and PostgreSQL's 65,535.
const advanceChunk = 10000

// AdvanceCursors moves many cursors forward with one upsert per
// advanceChunk sessions; a cursor already at or past its new time stays.
func (t *tx) AdvanceCursors(ctx context.Context, cursors map[bridge.SessionID]time.Time) error {
	ids := slices.Sorted(maps.Keys(cursors)) // a fixed lock order between writers
	now := toMS(t.s.now())
	for chunk := range slices.Chunk(ids, advanceChunk) {
		var q strings.Builder
		q.WriteString("INSERT INTO cursors (session_id, cursor_at, updated_at) VALUES ")
		args := make([]any, 0, 3*len(chunk))
		for i, id := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?)")
			args = append(args, string(id), toMS(cursors[id]), now)
		}
		q.WriteString(" ON CONFLICT (session_id) DO UPDATE SET cursor_at = excluded.cursor_at, updated_at = excluded.updated_at" +
			" WHERE cursors.cursor_at < excluded.cursor_at")
		if err := t.q(ctx).Exec(q.String(), args...).Error; err != nil {
			return wrap(fmt.Sprintf("advance the cursors of %d sessions", len(chunk)), err)
		}
	}
	return nil
}

// PutConversationRef inserts or replaces the conversation's reference.
func (t *tx) PutConversationRef(ctx context.Context, ref bridge.ConversationRef) error {
	if ref.Conversation == "" {
		return errors.New("store: put conversation ref: empty conversation id")
	}
	r := refToRow(ref)
	err := t.q(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "conversation_id"}},
		UpdateAll: true,
	}).Create(&r).Error
	if err != nil {
		return wrap(fmt.Sprintf("put conversation ref %q", ref.Conversation), err)
	}
	return nil
}

// putActivityRefSQL is PutActivityRef's upsert: the merge of what the
// activity carries with what the bridge stored is done by the database, so
// the reference is written without being read first. A stored greeting
// time is kept.
const putActivityRefSQL = `INSERT INTO conversation_refs (conversation_id, service_url, channel_id, conversation_type, tenant_id,
  bot_id, bot_name, user_id, user_name, user_aad_id, locale, user_email, welcomed_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (conversation_id) DO UPDATE SET service_url = excluded.service_url, channel_id = excluded.channel_id,
  conversation_type = excluded.conversation_type, tenant_id = excluded.tenant_id, bot_id = excluded.bot_id,
  bot_name = excluded.bot_name, user_id = excluded.user_id, user_name = excluded.user_name,
  user_aad_id = excluded.user_aad_id, locale = excluded.locale, updated_at = excluded.updated_at,
  user_email = CASE WHEN CAST(? AS TEXT) <> '' THEN CAST(? AS TEXT)
    WHEN excluded.user_id <> '' AND excluded.user_id <> conversation_refs.user_id THEN ''
    ELSE conversation_refs.user_email END,
  welcomed_at = CASE WHEN conversation_refs.welcomed_at <> 0 THEN conversation_refs.welcomed_at ELSE excluded.welcomed_at END`

// welcomeSQL sets the greeting time of a conversation not greeted yet; the
// row it changes (one or none) is the key that says whether this call
// greeted, so two install activities in one millisecond greet once.
const welcomeSQL = `UPDATE conversation_refs SET welcomed_at = ? WHERE conversation_id = ? AND welcomed_at = 0`

// PutActivityRef stores an activity's reference merged with the stored one
// (see bridge.Tx): one statement, and a second only when welcome is set
// (install activities).
func (t *tx) PutActivityRef(ctx context.Context, ref bridge.ConversationRef, email string, welcome time.Time) (bool, error) {
	if ref.Conversation == "" {
		return false, errors.New("store: put activity ref: empty conversation id")
	}
	r := refToRow(ref)
	if email != "" {
		r.UserEmail = email
	}
	err := t.q(ctx).Exec(putActivityRefSQL, r.ConversationID, r.ServiceURL, r.ChannelID, r.ConversationType, r.TenantID,
		r.BotID, r.BotName, r.UserID, r.UserName, r.UserAADID, r.Locale, r.UserEmail, r.WelcomedMS, r.UpdatedMS,
		email, email).Error
	if err != nil {
		return false, wrap(fmt.Sprintf("put activity ref %q", ref.Conversation), err)
	}
	if welcome.IsZero() {
		return false, nil
	}
	res := t.q(ctx).Exec(welcomeSQL, toMS(welcome), r.ConversationID)
	if res.Error != nil {
		return false, wrap(fmt.Sprintf("greet conversation %q", ref.Conversation), res.Error)
	}
	return res.RowsAffected == 1, nil
}

// ConversationRef returns the stored reference; ErrNotFound if absent.
func (t *tx) ConversationRef(ctx context.Context, conv bridge.ConversationID) (bridge.ConversationRef, error) {
	var r conversationRefRow
	if err := t.q(ctx).Where("conversation_id = ?", string(conv)).Take(&r).Error; err != nil {
		return bridge.ConversationRef{}, wrap(fmt.Sprintf("conversation ref %q", conv), err)
	}
	return r.domain(), nil
}
