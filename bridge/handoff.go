package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file holds the handoff use cases the outbox performs: relaying a user
// message to the bot (and starting a handoff when the bot asks for one),
// opening the desk chat, posting to the agent, and sending to the employee.
// Each makes one outward call and returns what to commit with the item's
// completion; the dispatcher commits it (outcome.go). Ending a handoff is in
// close.go.

// perform makes the outward call of it and returns what to commit together
// with the item's completion (nil: nothing but the completion).
func (r *Relay) perform(ctx context.Context, it OutboxItem) (commitFunc, error) {
	p, err := it.DecodePayload()
	if err != nil {
		return nil, Permanent(fmt.Errorf("decode payload: %w", err))
	}
	switch it.Kind {
	case KindBotSend:
		return r.botSend(ctx, it, p)
	case KindDeskOpen:
		return r.deskOpen(ctx, it)
	case KindDeskSend:
		return r.deskSend(ctx, it, p)
	case KindDeskLeave:
		return r.deskLeave(ctx, it, nil)
	case KindDeskNote:
		return r.deskNote(ctx, it, p)
	case KindBotHandback:
		if err := r.bot.Handback(ctx, it.Conversation, Handback{Reason: p.Reason, Restart: p.Restart}); err != nil {
			return nil, fmt.Errorf("bot handback: %w", err)
		}
		return nil, nil
	case KindUserSend:
		return r.userSend(ctx, it, p)
	case KindUserCard:
		return r.userCard(ctx, it, p)
	case KindUserCSAT:
		return r.csatCard(ctx, it, p)
	case KindUserTyping:
		ref, err := r.ref(ctx, it.Conversation)
		if err == nil {
			err = r.user.Typing(ctx, ref)
		}
		if err != nil {
			r.log.DebugContext(ctx, "typing indicator not shown", "session_id", it.SessionID, "err", err)
		}
		return nil, nil // typing is best effort
	case KindDeskTyping:
		if t, ok := r.desk.(DeskTyping); ok {
			s, err := r.session(ctx, it.SessionID)
			if err == nil && s.State == StateLive {
				if err := t.Typing(ctx, s.DeskChat()); err != nil {
					r.log.DebugContext(ctx, "desk typing not shown", "session_id", it.SessionID, "err", err)
				}
			}
		}
		return nil, nil
	case KindDeskReceipt:
		rc, ok := r.desk.(DeskReceipts)
		if !ok {
			return nil, nil
		}
		s, err := r.session(ctx, it.SessionID)
		if err != nil {
			return nil, err
		}
		m, err := r.message(ctx, p.MessageID)
		if err != nil {
			return nil, err
		}
		if err := rc.Delivered(ctx, s.DeskChat(), m.ExternalID); err != nil {
			return nil, fmt.Errorf("desk receipt: %w", err)
		}
		return nil, nil
	}
	return nil, Permanent(fmt.Errorf("unknown outbox kind %q", it.Kind))
}

func (r *Relay) session(ctx context.Context, id SessionID) (s Session, err error) {
	err = r.view(ctx, func(tx Tx) error { s, err = tx.Session(ctx, id); return err })
	return s, err
}

func (r *Relay) message(ctx context.Context, id int64) (m Message, err error) {
	err = r.view(ctx, func(tx Tx) error { m, err = tx.Message(ctx, id); return err })
	return m, err
}

// load reads what an outbox item acts on in one read (Tx.ReadItem): its
// session, the message of its payload and, when withRef, the conversation
// reference.
// Reads of an outbox item go through the read-only path (on SQLite the read
// pool, so they never hold the one writer): what they read was committed
// before the item could be claimed. A store that reads an item in one
// statement (itemReader) does so outside a transaction.
func (r *Relay) load(ctx context.Context, it OutboxItem, p OutboxPayload, withRef bool) (s Session, m Message, ref ConversationRef, err error) {
	var conv ConversationID
	if withRef {
		conv = it.Conversation
	}
	if ir, ok := r.store.(itemReader); ok {
		return ir.ReadItem(ctx, it.SessionID, p.MessageID, conv)
	}
	err = r.view(ctx, func(tx Tx) error {
		var err error
		s, m, ref, err = tx.ReadItem(ctx, it.SessionID, p.MessageID, conv)
		return err
	})
	return s, m, ref, err
}

// itemReader is a Store that reads an outbox item's session, message and
// reference (Tx.ReadItem) consistently without a transaction (bridge/store
// does, in one statement).
type itemReader interface {
	ReadItem(ctx context.Context, session SessionID, message int64, conv ConversationID) (Session, Message, ConversationRef, error)
}

func (r *Relay) ref(ctx context.Context, conv ConversationID) (ref ConversationRef, err error) {
	err = r.view(ctx, func(tx Tx) error { ref, err = tx.ConversationRef(ctx, conv); return err })
	return ref, err
}

// botSend relays a user message to the bot, or on to the desk if a handoff
// started since it was queued.
func (r *Relay) botSend(ctx context.Context, it OutboxItem, p OutboxPayload) (commitFunc, error) {
	s, m, ref, err := r.load(ctx, it, p, true)
	if err != nil {
		return nil, err
	}
	if s.HumanOwned() {
		// A handoff started after this message was queued (it was typed while
		// the bot call that started it ran): it belongs to the human side,
		// and a command in it ends the handoff.
		return func(ctx context.Context, tx Tx, now time.Time) error {
			s, err := tx.Session(ctx, it.SessionID)
			if err != nil {
				return err
			}
			if !s.HumanOwned() {
				// Ended meanwhile: the bot gets it after the handback.
				return tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindBotSend, OutboxPayload{MessageID: m.ID}, now))
			}
			return r.toHuman(ctx, tx, s, m, now)
		}, nil
	}
	if ParseCommand(m.Text) == CommandEndChat {
		// No live chat to end: the bridge answers, the bot never sees it.
		return func(ctx context.Context, tx Tx, now time.Time) error {
			return r.sayT(ctx, tx, s, "notinchat:"+m.ExternalID, func(t Texts) string { return t.NotInChat }, now)
		}, nil
	}
	in := BotInput{Conversation: it.Conversation, Text: m.Text, Metadata: map[string]any{
		"teams": map[string]any{"user_id": ref.UserID, "user_name": ref.UserName, "aad_object_id": ref.UserAADID,
			"tenant_id": ref.TenantID, "locale": ref.Locale, "email": s.UserEmail},
	}, Key: m.ExternalID, Retry: it.Attempts > 1}
	replies, err := r.bot.Send(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("bot send: %w", err)
	}
	r.observe(DirBot, m.CreatedAt)
	var (
		sig *HandoffSignal
		bc  BotContext
	)
	for _, rp := range replies {
		if rp.Handoff != nil && sig == nil {
			sig = rp.Handoff
		}
	}
	if sig != nil && s.State == StateBot {
		if bc, err = r.bot.Context(ctx, it.Conversation); err != nil {
			r.log.WarnContext(ctx, "bot context unavailable; the review record will lack intents", "session_id", s.ID, "err", err)
		}
	}
	return func(ctx context.Context, tx Tx, now time.Time) error {
		s, err := tx.Session(ctx, it.SessionID)
		if err != nil {
			return err
		}
		for i, rp := range replies {
			bm := Message{SessionID: s.ID, Source: SourceBot, ExternalID: fmt.Sprintf("%d/%d", m.ID, i),
				Text: rp.Text, Buttons: rp.Buttons, ImageURL: rp.ImageURL, SentAt: now, CreatedAt: now}
			if !bm.Deliverable() {
				continue
			}
			inserted, err := tx.InsertMessage(ctx, &bm)
			if err != nil {
				return err
			}
			if inserted {
				if err := tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindUserSend, OutboxPayload{MessageID: bm.ID}, now)); err != nil {
					return err
				}
			}
		}
		if sig == nil || s.State != StateBot {
			return nil
		}
		return r.startHandoff(ctx, tx, s, *sig, bc, now)
	}, nil
}

func (r *Relay) startHandoff(ctx context.Context, tx Tx, s Session, sig HandoffSignal, bc BotContext, now time.Time) error {
	next, err := Transition(s.State, EventHandoff, "")
	if err != nil {
		return nil
	}
	prev := s.State
	s.State, s.Reason, s.Queue, s.QueuedAt, s.UpdatedAt = next, sig.Reason, sig.Queue, now, now
	if err := tx.UpdateSession(ctx, s, prev); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "handoff started", "session_id", s.ID, "conversation_id", s.Conversation, "reason", sig.Reason)
	if r.reviewer != nil {
		if err := tx.PutReview(ctx, r.reviewer.Start(s, sig, bc, now)); err != nil {
			return err
		}
	}
	if err := r.sayT(ctx, tx, s, "connecting:"+string(s.ID), func(t Texts) string { return t.Connecting }, now); err != nil {
		return err
	}
	if err := r.queueCard(ctx, tx, s, cardState{phase: phaseWaiting}, now); err != nil {
		return err
	}
	// The open is what the employee waits for: the worker that committed the
	// bot's answer performs it next, without a claim round.
	return enqueueNext(ctx, tx, NewOutboxItem(s.ID, s.Conversation, KindDeskOpen, OutboxPayload{}, now))
}

// deskOpen opens the agent chat with the user's identity, the reason and the
// recent transcript. It reads what it needs in one read-only transaction
// (see load) and writes the chat, and the e-mail it looked up, with the
// item's completion: opening costs the claim, one read and the completion.
func (r *Relay) deskOpen(ctx context.Context, it OutboxItem) (commitFunc, error) {
	var (
		s      Session
		ms     []Message
		ref    ConversationRef
		refErr error
	)
	opening := func(s Session) bool { return s.State == StateQueued && s.AgentChatID == "" }
	err := r.view(ctx, func(tx Tx) error {
		var err error
		if s, err = tx.Session(ctx, it.SessionID); err != nil || !opening(s) {
			return err
		}
		if ms, err = tx.ConversationMessages(ctx, s.Conversation, 4*r.cfg.TranscriptTurns); err != nil {
			return err
		}
		if s.UserEmail == "" {
			ref, refErr = tx.ConversationRef(ctx, s.Conversation)
			if refErr != nil && !errors.Is(refErr, ErrNotFound) {
				return refErr
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !opening(s) {
		return nil, nil // ended before the chat opened, or already open
	}
	email, found := s.UserEmail, false
	if email == "" {
		email, found = r.lookupEmail(ctx, s, ref, refErr)
	}
	h := Handoff{Session: s.ID, Conversation: s.Conversation, UserName: s.UserName, UserEmail: email,
		UserID: s.UserID, UserAADID: s.UserAADID, TenantID: s.TenantID, Reason: s.Reason, Queue: s.Queue,
		Transcript: transcript(ms, r.cfg.TranscriptTurns), Retry: it.Attempts > 1}
	chat, err := r.desk.Open(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("desk open: %w", err)
	}
	return func(ctx context.Context, tx Tx, now time.Time) error {
		s, err := tx.Session(ctx, it.SessionID)
		if err != nil {
			return err
		}
		if found {
			if err := cacheEmail(ctx, tx, s.Conversation, email); err != nil {
				return err
			}
			if s.UserEmail == "" {
				s.UserEmail = email
			}
		}
		prev := s.State
		s.AgentChatID, s.DeskData, s.UpdatedAt = chat.ID, chat.Data, now
		if err := tx.UpdateSession(ctx, s, prev); err != nil {
			return err
		}
		r.log.InfoContext(ctx, "desk chat opened", "session_id", s.ID, "chat_id", chat.ID)
		if prev != StateQueued && prev != StateLive {
			// The session ended while the chat was opening: leave it now.
			return tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindDeskLeave, OutboxPayload{Reason: s.CloseReason}, now))
		}
		return nil
	}, nil
}

// transcript turns the last user and bot messages into turns for the agent.
func transcript(ms []Message, turns int) []Turn {
	var out []Turn
	for _, m := range ms {
		role := ""
		switch m.Source {
		case SourceUser:
			role = "user"
		case SourceBot:
			role = "bot"
		default:
			continue
		}
		if strings.TrimSpace(m.Text) == "" {
			continue
		}
		out = append(out, Turn{Role: role, Author: m.Author, Text: m.Text, At: m.SentAt})
	}
	if len(out) > turns {
		out = out[len(out)-turns:]
	}
	return out
}

func (r *Relay) deskSend(ctx context.Context, it OutboxItem, p OutboxPayload) (commitFunc, error) {
	s, m, _, err := r.load(ctx, it, p, false)
	if err != nil {
		return nil, err
	}
	if !s.HumanOwned() || s.AgentChatID == "" {
		// The chat ended (or never opened) before this message could go out.
		return func(ctx context.Context, tx Tx, now time.Time) error {
			return r.sayT(ctx, tx, s, fmt.Sprintf("late:%d", m.ID), func(t Texts) string { return t.LateMessage }, now)
		}, nil
	}
	dm := DeskMessage{Key: fmt.Sprintf("%s/%d", s.ID, m.ID), Text: m.Text, Author: m.Author, Retry: it.Attempts > 1, FirstTry: it.CreatedAt,
		Confirmed: s.DeskPosts}
	if err := r.desk.Send(ctx, s.DeskChat(), dm); err != nil {
		return nil, fmt.Errorf("desk send: %w", err)
	}
	r.observe(DirUserToAgent, m.CreatedAt)
	return func(ctx context.Context, tx Tx, now time.Time) error { return deskPosted(ctx, tx, it.SessionID, now) }, nil
}

// deskPosted counts a message the desk confirmed (DeskMessage.Confirmed),
// whatever state the session has reached meanwhile.
func deskPosted(ctx context.Context, tx Tx, id SessionID, now time.Time) error {
	return tx.AddDeskPost(ctx, id, now)
}

func (r *Relay) userSend(ctx context.Context, it OutboxItem, p OutboxPayload) (commitFunc, error) {
	_, m, ref, err := r.load(ctx, it, p, true)
	if err != nil {
		return nil, err
	}
	um := UserMessage{Text: m.Text, Buttons: m.Buttons, ImageURL: m.ImageURL, Notice: m.Source == SourceBridge, Attachments: m.Attachments}
	if m.Source == SourceAgent && !m.System {
		um.Author = m.Author
	}
	if _, err := r.user.Send(ctx, ref, um); err != nil {
		return nil, fmt.Errorf("user send: %w", err)
	}
	r.observeUserSend(m)
	return func(ctx context.Context, tx Tx, now time.Time) error {
		if m.Source != SourceAgent {
			return nil
		}
		if _, ok := r.desk.(DeskReceipts); !ok {
			return nil
		}
		return tx.Enqueue(ctx, NewOutboxItem(it.SessionID, it.Conversation, KindDeskReceipt, OutboxPayload{MessageID: m.ID}, now))
	}, nil
}
