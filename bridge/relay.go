package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultActivityMemory is how long handled activity ids are remembered: far
// above the Bot Framework token lifetime (one hour) plus its 5 minute leeway.
const DefaultActivityMemory = 24 * time.Hour

// RelayConfig tunes the relay. Zero values take the defaults.
type RelayConfig struct {
	TranscriptTurns int           // turns given to the agent when a chat opens (default 10)
	QueueTimeout    time.Duration // end a queued session with no agent after this (0: never)
	IdleTimeout     time.Duration // end a live session nobody wrote in for this (0: never)
	// ActivityMemory is how long a handled user activity's id is remembered
	// per conversation, so a replay is a no-op (default DefaultActivityMemory).
	// Keep it above the inbound token lifetime plus leeway: a replayed
	// activity needs a token that is still valid.
	ActivityMemory time.Duration
	// Texts overrides the English texts (empty fields keep the defaults).
	Texts Texts
	// Locales holds the texts of other languages by language tag ("de",
	// "de-CH"); empty fields fall back to English. Nil means DefaultLocales.
	Locales map[string]Texts
	// LookupTimeout bounds the employee's e-mail lookup in the channel's
	// member list while a desk chat opens (default 3 s); the chat opens
	// without the e-mail after it.
	LookupTimeout time.Duration
	CSAT          CSATConfig // the employee's rating of agent-handled chats (off when Expiry is 0)
	Observer      Observer   // told delivery latencies (optional)
	Now           func() time.Time
	Logger        *slog.Logger
}

// Relay implements the handoff use cases: it routes user messages to the bot
// or the agent, turns desk activity into deliveries, runs the state machine,
// and dispatches the outbox. Every state change and the outward calls it
// causes are committed in one transaction.
type Relay struct {
	store    Store
	bot      Bot
	desk     AgentDesk
	user     UserChannel
	reviewer Reviewer
	cfg      RelayConfig
	log      *slog.Logger
	kick     chan struct{}
	// direct is the running dispatcher that inbound transactions hand
	// their first delivery to (inbound.go); nil when none runs.
	direct atomic.Pointer[Dispatcher]
}

// NewRelay wires the relay. reviewer may be nil (no review records).
func NewRelay(store Store, bot Bot, desk AgentDesk, user UserChannel, reviewer Reviewer, cfg RelayConfig) *Relay {
	if cfg.TranscriptTurns <= 0 {
		cfg.TranscriptTurns = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ActivityMemory <= 0 {
		cfg.ActivityMemory = DefaultActivityMemory
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Texts = cfg.Texts.Fill(DefaultTexts())
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 3 * time.Second
	}
	if cfg.Locales == nil {
		cfg.Locales = DefaultLocales()
	}
	return &Relay{store: store, bot: bot, desk: desk, user: user, reviewer: reviewer, cfg: cfg,
		log: cfg.Logger, kick: make(chan struct{}, 1)}
}

// Kicked returns a channel that receives when new outbox work was committed,
// so the dispatcher can start at once instead of waiting for its next tick.
func (r *Relay) Kicked() <-chan struct{} { return r.kick }

func (r *Relay) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Relay) now() time.Time { return r.cfg.Now().UTC() }

func newID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// UserActivity persists an authenticated Teams activity and queues what it
// causes. It returns only storage errors (the caller answers 500 so Teams
// retries). A repeated delivery of the same activity is a no-op, whatever
// happened to its session since: activity ids are remembered per conversation
// for ActivityMemory, and an activity older than that is dropped.
func (r *Relay) UserActivity(ctx context.Context, a UserActivity) error {
	if a.Ref.Conversation == "" {
		return Permanent(errors.New("bridge: activity has no conversation id"))
	}
	now := r.now()
	if a.At.IsZero() {
		a.At = now
	}
	if a.ID != "" && now.Sub(a.At) > r.cfg.ActivityMemory {
		r.log.WarnContext(ctx, "stale activity dropped: older than the activity memory, so it may be a replay",
			"activity_id", a.ID, "conversation_id", a.Ref.Conversation, "sent_at", a.At)
		return nil
	}
	a.Ref.UpdatedAt = now
	ctx, handOff := r.inbound(ctx)
	committed := false
	defer func() { handOff(committed) }() // also when fn panics: the reserved worker is freed
	err := r.store.Update(ctx, func(tx Tx) error {
		tx = chained(ctx, tx)
		if a.ID != "" && a.Kind != ActivityTyping {
			fresh, err := tx.RememberActivity(ctx, a.Ref.Conversation, a.ID, now, now.Add(r.cfg.ActivityMemory))
			if err != nil {
				return err
			}
			if !fresh {
				r.log.InfoContext(ctx, "repeated activity ignored", "activity_id", a.ID, "conversation_id", a.Ref.Conversation)
				return nil
			}
		}
		welcomed, err := r.putRef(ctx, tx, a, now)
		if err != nil {
			return err
		}
		switch a.Kind {
		case ActivityMessage:
			if a.Submit != nil {
				return r.cardSubmit(ctx, tx, a, now) // a card's own action, never text
			}
			return r.userMessage(ctx, tx, a, now)
		case ActivityInstall:
			s, err := r.ensureSession(ctx, tx, a, now)
			if err != nil || !welcomed {
				return err // greeted already: Teams sends installationUpdate and conversationUpdate
			}
			return r.sayT(ctx, tx, s, "welcome:"+a.ID, func(t Texts) string { return t.Welcome }, now)
		case ActivityRemoved:
			s, err := tx.OpenSession(ctx, a.Ref.Conversation)
			if errors.Is(err, ErrNotFound) {
				return nil
			} else if err != nil {
				return err
			}
			return r.end(ctx, tx, s, ReasonUserBlocked, now)
		case ActivityTyping:
			s, err := tx.OpenSession(ctx, a.Ref.Conversation)
			if errors.Is(err, ErrNotFound) {
				return nil
			} else if err != nil {
				return err
			}
			if _, ok := r.desk.(DeskTyping); ok && s.State == StateLive {
				return tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindDeskTyping, OutboxPayload{}, now))
			}
		}
		return nil
	})
	committed = err == nil // done kicks Run if needed
	if err != nil {
		return fmt.Errorf("bridge: store %s activity %s: %w", a.Kind, a.ID, err)
	}
	return nil
}

// ensureSession returns the conversation's open session, creating one owned by
// the bot when there is none.
func (r *Relay) ensureSession(ctx context.Context, tx Tx, a UserActivity, now time.Time) (Session, error) {
	s, err := tx.OpenSession(ctx, a.Ref.Conversation)
	if err == nil {
		changed := false
		if a.UserEmail != "" && s.UserEmail != a.UserEmail {
			s.UserEmail, changed = a.UserEmail, true
		}
		if a.Ref.UserName != "" && s.UserName != a.Ref.UserName {
			s.UserName, changed = a.Ref.UserName, true
		}
		if changed {
			s.UpdatedAt = now
			if err := tx.UpdateSession(ctx, s, s.State); err != nil {
				return s, err
			}
		}
		return s, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return s, err
	}
	s = Session{
		ID:           SessionID(newID(12)),
		Conversation: a.Ref.Conversation,
		State:        StateBot,
		UserID:       a.Ref.UserID,
		UserName:     a.Ref.UserName,
		UserAADID:    a.Ref.UserAADID,
		UserEmail:    a.UserEmail,
		TenantID:     a.Ref.TenantID,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	return s, tx.CreateSession(ctx, s)
}

func (r *Relay) userMessage(ctx context.Context, tx Tx, a UserActivity, now time.Time) error {
	s, err := r.ensureSession(ctx, tx, a, now)
	if err != nil {
		return err
	}
	for i, name := range a.LostFiles {
		err := r.sayT(ctx, tx, s, fmt.Sprintf("lostfile:%s/%d", a.ID, i), func(t Texts) string { return fmt.Sprintf(t.AttachmentFailed, name) }, now)
		if err != nil {
			return err
		}
	}
	if strings.TrimSpace(a.Text) == "" {
		return nil // only files that could not be passed on
	}
	m := Message{SessionID: s.ID, Source: SourceUser, ExternalID: a.ID, Author: a.Ref.UserName,
		Text: a.Text, SentAt: a.At, CreatedAt: now}
	inserted, err := tx.InsertMessage(ctx, &m)
	if err != nil || !inserted {
		return err // a duplicate delivery is a no-op
	}
	if !a.Personal() {
		return r.sayT(ctx, tx, s, "group:"+a.ID, func(t Texts) string { return t.GroupChat }, now)
	}
	switch s.State {
	case StateBot, StateClosing:
		// While closing, the bot lane already holds the handback, so the bot
		// sees this message after it is back in charge. A command waits in the
		// same lane: if the bot call ahead of it starts a handoff, it ends
		// that handoff; otherwise the bridge answers it (botSend).
		return enqueueNext(ctx, tx, NewOutboxItem(s.ID, s.Conversation, KindBotSend, OutboxPayload{MessageID: m.ID}, now))
	case StateQueued, StateLive:
		return r.toHuman(ctx, tx, s, m, now)
	}
	return nil
}

// toHuman routes a stored user message of a queued or live session: a
// command ends the session, anything else goes to the agent. Every path
// that hands a user message to the human side goes through here, so a
// command is never posted to the desk as text.
func (r *Relay) toHuman(ctx context.Context, tx Tx, s Session, m Message, now time.Time) error {
	switch ParseCommand(m.Text) {
	case CommandEndChat:
		return r.end(ctx, tx, s, ReasonUserEnded, now)
	case CommandRestart:
		return r.end(ctx, tx, s, ReasonUserRestarted, now)
	}
	return enqueueNext(ctx, tx, NewOutboxItem(s.ID, s.Conversation, KindDeskSend, OutboxPayload{MessageID: m.ID}, now))
}

// say stores a bridge notice under a stable key and queues it for the user.
func (r *Relay) say(ctx context.Context, tx Tx, s Session, key, text string, now time.Time) error {
	m := Message{SessionID: s.ID, Source: SourceBridge, ExternalID: key, Text: text, SentAt: now, CreatedAt: now}
	inserted, err := tx.InsertMessage(ctx, &m)
	if err != nil || !inserted {
		return err
	}
	return tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindUserSend, OutboxPayload{MessageID: m.ID}, now))
}

// end moves an open handoff to closing and queues the leave and the handback.
// Ending a session that is not queued or live is a no-op.
func (r *Relay) end(ctx context.Context, tx Tx, s Session, reason CloseReason, now time.Time) error {
	next, err := Transition(s.State, EventEnd, reason)
	if err != nil {
		r.log.DebugContext(ctx, "end ignored", "session_id", s.ID, "state", s.State, "reason", reason)
		return nil
	}
	prev := s.State
	s.State, s.CloseReason, s.UpdatedAt = next, reason, now
	if err := tx.UpdateSession(ctx, s, prev); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "handoff ending", "session_id", s.ID, "conversation_id", s.Conversation, "reason", reason)
	if err := r.employeeLeftNote(ctx, tx, s, now); err != nil {
		return err
	}
	// The employee hears at once that the chat ended; only a failed leave
	// adds a line later (finish).
	if err := r.endCard(ctx, tx, s, now); err != nil {
		return err
	}
	if err := r.sayEnding(ctx, tx, s, now); err != nil {
		return err
	}
	return tx.Enqueue(ctx,
		NewOutboxItem(s.ID, s.Conversation, KindDeskLeave, OutboxPayload{Reason: reason}, now),
		NewOutboxItem(s.ID, s.Conversation, KindBotHandback, OutboxPayload{Reason: reason, Restart: reason == ReasonUserRestarted}, now),
	)
}

// AgentEvents stores what happened in a desk chat and queues the deliveries,
// in one transaction. Events are handled in desk-time order; messages already
// stored (same ExternalID) are skipped. When fromPoll is true the chat's cursor
// moves to the newest event seen, echoes included, so uninteresting rows are
// never fetched again; webhook deliveries leave the cursor alone so a
// reconciling poll still finds what a lost webhook missed. Events for unknown
// or closed chats are dropped with a debug log.
func (r *Relay) AgentEvents(ctx context.Context, chat AgentChatID, events []AgentEvent, fromPoll bool) error {
	if len(events) == 0 {
		return nil
	}
	evs := append([]AgentEvent(nil), events...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].At.Before(evs[j].At) })
	now := r.now()
	ctx, handOff := r.inbound(ctx)
	committed := false
	defer func() { handOff(committed) }() // also when fn panics: the reserved worker is freed
	err := r.store.Update(ctx, func(tx Tx) error {
		tx = chained(ctx, tx)
		s, err := tx.SessionByAgentChat(ctx, chat)
		if errors.Is(err, ErrNotFound) {
			r.log.DebugContext(ctx, "desk events for unknown chat dropped", "chat_id", chat, "events", len(evs))
			return nil
		} else if err != nil {
			return err
		}
		if s.State == StateClosed {
			r.log.DebugContext(ctx, "desk events for closed session dropped", "session_id", s.ID, "chat_id", chat)
			return nil
		}
		if newest := evs[len(evs)-1].At; fromPoll && !newest.IsZero() {
			// One upsert that never moves the cursor back, rather than a
			// read and a write.
			if err := tx.AdvanceCursors(ctx, map[SessionID]time.Time{s.ID: newest}); err != nil {
				return err
			}
		}
		for _, ev := range evs {
			if ev.Echo {
				continue
			}
			if s, err = r.agentEvent(ctx, tx, s, ev, now); err != nil {
				return err
			}
		}
		return nil
	})
	committed = err == nil // done kicks Run if needed
	if err != nil {
		return fmt.Errorf("bridge: store desk events of chat %s: %w", chat, err)
	}
	return nil
}

// AdvanceCursors moves the cursors of many sessions forward (never
// backwards) in one transaction: the poller's bulk move for chats whose only
// new rows are the bridge's own posts.
func (r *Relay) AdvanceCursors(ctx context.Context, cursors map[SessionID]time.Time) error {
	if len(cursors) == 0 {
		return nil
	}
	if err := r.store.Update(ctx, func(tx Tx) error { return tx.AdvanceCursors(ctx, cursors) }); err != nil {
		return fmt.Errorf("bridge: move %d cursors: %w", len(cursors), err)
	}
	return nil
}

// Settled returns the chats among events whose events AgentEvents would
// store nothing for, apart from moving the cursor: every message already
// stored, a join or queue place the session is past or has stored, or no
// open session for the chat. It reads (one query per few hundred chats) and
// writes nothing, so that the poller can move such chats' cursors together
// (AdvanceCursors) instead of one transaction each. It mirrors agentEvent's
// rules and errs on the side of "not settled". A settled chat stays settled:
// stored messages stay, and a session's state only moves forward.
func (r *Relay) Settled(ctx context.Context, events map[AgentChatID][]AgentEvent) (map[AgentChatID]bool, error) {
	chats := make([]AgentChatID, 0, len(events))
	for chat := range events {
		chats = append(chats, chat)
	}
	out := make(map[AgentChatID]bool, len(events))
	err := r.view(ctx, func(tx Tx) error {
		clear(out)
		sessions, err := tx.SessionsByAgentChats(ctx, chats)
		if err != nil {
			return err
		}
		var keys []MessageKey
		for chat, evs := range events {
			s, ok := sessions[chat]
			if !ok || s.State == StateClosed {
				continue // dropped by AgentEvents: settled below
			}
			for _, ev := range evs {
				switch {
				case ev.Echo:
				case ev.Kind == AgentMessage && ev.ExternalID != "":
					keys = append(keys, MessageKey{Session: s.ID, Source: SourceAgent, ExternalID: ev.ExternalID})
				case ev.Kind == AgentWaiting && s.State == StateQueued && (ev.QueuePosition > 0 || ev.EstimatedWait > 0):
					keys = append(keys, MessageKey{Session: s.ID, Source: SourceBridge, ExternalID: "queue:" + ev.ExternalID})
				}
			}
		}
		stored, err := tx.StoredMessages(ctx, keys)
		if err != nil {
			return err
		}
		for chat, evs := range events {
			s, ok := sessions[chat]
			if !ok || s.State == StateClosed {
				out[chat] = true
				continue
			}
			out[chat] = true
			for _, ev := range evs {
				if !ev.Echo && !settledEvent(s, ev, stored) {
					out[chat] = false
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bridge: settled desk chats: %w", err)
	}
	return out, nil
}

// settledEvent reports whether agentEvent would store nothing for ev in s.
func settledEvent(s Session, ev AgentEvent, stored map[MessageKey]bool) bool {
	switch ev.Kind {
	case AgentJoined:
		_, err := Transition(s.State, EventAgentJoined, "")
		return err != nil
	case AgentTyping:
		return s.State != StateLive
	case AgentWaiting:
		if s.State != StateQueued {
			return true
		}
		if ev.Text != "" {
			return false
		}
		return (ev.QueuePosition <= 0 && ev.EstimatedWait <= 0) ||
			stored[MessageKey{Session: s.ID, Source: SourceBridge, ExternalID: "queue:" + ev.ExternalID}]
	case AgentMessage:
		return ev.ExternalID != "" && stored[MessageKey{Session: s.ID, Source: SourceAgent, ExternalID: ev.ExternalID}]
	}
	return false
}

func (r *Relay) agentEvent(ctx context.Context, tx Tx, s Session, ev AgentEvent, now time.Time) (Session, error) {
	save := func(prev State) error { return tx.UpdateSession(ctx, s, prev) }
	switch ev.Kind {
	case AgentJoined:
		return s, r.join(ctx, tx, &s, ev, now, save)
	case AgentTyping:
		if s.State == StateLive {
			return s, tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindUserTyping, OutboxPayload{}, now))
		}
	case AgentWaiting:
		if s.State != StateQueued {
			return s, nil
		}
		if ev.QueuePosition > 0 || ev.EstimatedWait > 0 {
			// Stored (never shown) under the event's id, so a position the desk
			// repeats at every poll updates the card once.
			m := Message{SessionID: s.ID, Source: SourceBridge, ExternalID: "queue:" + ev.ExternalID, SentAt: now, CreatedAt: now}
			inserted, err := tx.InsertMessage(ctx, &m)
			if err != nil {
				return s, err
			}
			if inserted {
				st := cardState{phase: phaseWaiting, position: ev.QueuePosition, wait: ev.EstimatedWait}
				if _, ok := r.user.(UserCards); !ok {
					// No card to show it on: the same lines as a notice.
					if err := r.sayT(ctx, tx, s, "queuenote:"+ev.ExternalID, func(t Texts) string { return queueNotice(t, st) }, now); err != nil {
						return s, err
					}
				} else if err := r.queueCard(ctx, tx, s, st, now); err != nil {
					return s, err
				}
			}
		}
		if ev.Text != "" {
			return s, r.say(ctx, tx, s, "wait:"+ev.ExternalID, ev.Text, now)
		}
	case AgentEnded:
		reason := ev.EndReason
		if reason == "" {
			reason = ReasonAgentClosed
		}
		err := r.end(ctx, tx, s, reason, now)
		if err != nil {
			return s, err
		}
		return tx.Session(ctx, s.ID)
	case AgentMessage:
		at := ev.At
		if at.IsZero() {
			at = now
		}
		files, unusable := usableFiles(ev.Attachments)
		text, err := r.deskLine(ctx, tx, s, ev)
		if err != nil {
			return s, err
		}
		m := Message{SessionID: s.ID, Source: SourceAgent, ExternalID: ev.ExternalID, Author: ev.Author,
			Text: text, System: ev.System, Attachments: files, SentAt: at, CreatedAt: now}
		inserted, err := tx.InsertMessage(ctx, &m)
		if err != nil || !inserted {
			return s, err
		}
		if labelled, err := r.agentLabel(ctx, tx, s, m, now); labelled || err != nil {
			return s, err // the agent's private label: stored on the review record, never relayed
		}
		if ev.EndReason != "" {
			// The desk's closing line ("… has closed the support session") ends
			// the session; the ending notice tells the user.
			if err := r.end(ctx, tx, s, ev.EndReason, now); err != nil {
				return s, err
			}
			return tx.Session(ctx, s.ID)
		}
		if ev.System && s.State == StateClosing {
			// The desk's own notes about an ending the employee has already
			// been told about ("… left the conversation"): kept, not shown.
			return s, nil
		}
		if !ev.System {
			if err := r.join(ctx, tx, &s, ev, now, save); err != nil {
				return s, err
			}
			prev := s.State
			s.LastAgentActivity, s.UpdatedAt = at, now
			if err := save(prev); err != nil {
				return s, err
			}
		}
		if m.Deliverable() { // an empty desk row is kept, with nothing to show
			if err := enqueueNext(ctx, tx, NewOutboxItem(s.ID, s.Conversation, KindUserSend, OutboxPayload{MessageID: m.ID}, now)); err != nil {
				return s, err
			}
		}
		return s, r.unusableFiles(ctx, tx, s, m, unusable, now)
	}
	return s, nil
}

// deskLine is the text of an agent message as the employee reads it: the
// desk's text, or for the lines the bridge writes on a desk's behalf (an
// agent who joined, an edited message) the catalogue's line in the
// employee's language.
func (r *Relay) deskLine(ctx context.Context, tx Tx, s Session, ev AgentEvent) (string, error) {
	if !ev.Joined && !ev.Edited {
		return ev.Text, nil
	}
	t, err := r.texts(ctx, tx, s.Conversation)
	if err != nil {
		return "", err
	}
	if ev.Joined {
		name := ev.Author
		if name == "" {
			name = t.CardAgent
		}
		return fmt.Sprintf(t.AgentJoined, name), nil
	}
	return fmt.Sprintf(t.AgentEdited, ev.Text), nil
}

// usableFiles splits an agent's files into those whose links can be shown
// to the employee and those that cannot (Attachment.LinkProblem).
func usableFiles(all []Attachment) (ok, unusable []Attachment) {
	for _, a := range all {
		if a.LinkProblem() == "" {
			ok = append(ok, a)
		} else {
			unusable = append(unusable, a)
		}
	}
	return ok, unusable
}

// unusableFiles tells the employee, after the agent's message, about each
// file of it whose link cannot be shown: a notice instead of a send Teams
// would refuse for good (which would end the chat as a relay error).
func (r *Relay) unusableFiles(ctx context.Context, tx Tx, s Session, m Message, files []Attachment, now time.Time) error {
	for i, a := range files {
		r.log.WarnContext(ctx, "agent file not passed on", "session_id", s.ID, "message_id", m.ID, "reason", a.LinkProblem())
		label := a.Label()
		err := r.sayT(ctx, tx, s, fmt.Sprintf("agentfile:%s/%d", m.ExternalID, i), func(t Texts) string { return fmt.Sprintf(t.AgentFileFailed, label) }, now)
		if err != nil {
			return err
		}
	}
	return nil
}

// join moves a queued session live (the agent's first message or accept).
func (r *Relay) join(ctx context.Context, tx Tx, s *Session, ev AgentEvent, now time.Time, save func(State) error) error {
	next, err := Transition(s.State, EventAgentJoined, "")
	if err != nil {
		return nil // already live or ending: nothing to do
	}
	prev := s.State
	s.State, s.LiveAt, s.UpdatedAt = next, now, now
	if !ev.At.IsZero() && ev.At.After(s.QueuedAt) && !ev.At.After(now) {
		s.LiveAt = ev.At
	}
	r.log.InfoContext(ctx, "agent joined", "session_id", s.ID, "chat_id", s.AgentChatID)
	if err := save(prev); err != nil {
		return err
	}
	return r.queueCard(ctx, tx, *s, cardState{phase: phaseConnected, agent: ev.Author}, now)
}

// PollTargets lists the chats the poller should look at: every queued or live
// session whose desk chat is open, with its cursor.
func (r *Relay) PollTargets(ctx context.Context) ([]PollTarget, error) {
	var out []PollTarget
	err := r.view(ctx, func(tx Tx) error {
		var err error
		out, err = tx.PollTargets(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bridge: list poll targets: %w", err)
	}
	return out, nil
}

// Sweep ends queued sessions that waited the queue timeout and live
// sessions idle for the idle timeout. It returns how many ended.
func (r *Relay) Sweep(ctx context.Context) (int, error) {
	n, _, err := r.sweep(ctx)
	return n, err
}

// sweep is Sweep that also returns the nearest deadline of the sessions left
// open (zero when none has one). Deadlines only move later (activity pushes
// the idle deadline, a new handoff starts a full queue timeout from now), so
// a session that is not open yet cannot be due before now + the shorter
// timeout.
func (r *Relay) sweep(ctx context.Context) (int, time.Time, error) {
	if r.shortestTimeout() <= 0 {
		return 0, time.Time{}, nil
	}
	now := r.now()
	n, expired := 0, 0
	var next time.Time
	err := r.store.Update(ctx, func(tx Tx) error {
		n, next = 0, time.Time{}
		var due time.Time
		var err error
		expired, due, err = r.expireCSAT(ctx, tx, now)
		if err != nil {
			return err
		}
		if expired > 0 {
			r.log.InfoContext(ctx, "rating cards expired", "count", expired)
		}
		next = due
		if r.cfg.QueueTimeout <= 0 && r.cfg.IdleTimeout <= 0 {
			return nil
		}
		ss, err := tx.SessionsInStates(ctx, StateQueued, StateLive)
		if err != nil {
			return err
		}
		for _, s := range ss {
			due, reason := r.deadline(s)
			if due.IsZero() {
				continue
			}
			if now.Before(due) {
				if next.IsZero() || due.Before(next) {
					next = due
				}
				continue
			}
			if err := r.end(ctx, tx, s, reason, now); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("bridge: sweep timeouts: %w", err)
	}
	if n > 0 || expired > 0 {
		r.wake()
	}
	return n, next, nil
}

// deadline is when s times out and why; zero when it has no timeout.
func (r *Relay) deadline(s Session) (time.Time, CloseReason) {
	switch {
	case s.State == StateQueued && r.cfg.QueueTimeout > 0:
		return s.QueuedAt.Add(r.cfg.QueueTimeout), ReasonQueueTimeout
	case s.State == StateLive && r.cfg.IdleTimeout > 0:
		return s.UpdatedAt.Add(r.cfg.IdleTimeout), ReasonIdleTimeout
	}
	return time.Time{}, ""
}

// shortestTimeout is the smallest of the enabled timeouts and the rating
// card's expiry (0 when none is enabled).
func (r *Relay) shortestTimeout() time.Duration {
	out := time.Duration(0)
	for _, d := range []time.Duration{r.cfg.QueueTimeout, r.cfg.IdleTimeout, r.cfg.CSAT.Expiry} {
		if d > 0 && (out == 0 || d < out) {
			out = d
		}
	}
	return out
}

// DeskThrottledUntil returns until when the desk asked the bridge to wait
// (shared with the dispatcher's desk lanes); zero when it did not.
func (r *Relay) DeskThrottledUntil(ctx context.Context) (until time.Time, err error) {
	err = r.view(ctx, func(tx Tx) error { until, err = tx.Throttle(ctx, LaneDesk, r.now()); return err })
	return until, err
}

// ThrottleDesk records that the desk asked the bridge to wait until until.
func (r *Relay) ThrottleDesk(ctx context.Context, until time.Time) error {
	return r.store.Update(ctx, func(tx Tx) error { return tx.SetThrottle(ctx, LaneDesk, until) })
}

// viewer is a Store that also runs read-only transactions (bridge/store
// does), so that the poller's reads write nothing.
type viewer interface {
	View(ctx context.Context, fn func(tx Tx) error) error
}

// view runs fn read-only when the store can, else in Update.
func (r *Relay) view(ctx context.Context, fn func(tx Tx) error) error {
	if v, ok := r.store.(viewer); ok {
		return v.View(ctx, fn)
	}
	return r.store.Update(ctx, fn)
}

// PollTarget is one chat the poller looks at.
type PollTarget struct {
	Session SessionID
	Chat    AgentChatID
	Cursor  time.Time
}
