package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// This file holds the use cases that end a handoff: the ending notices,
// leaving the desk chat and finishing the close, and what an outbox item that
// failed for good does to its session. (Relay.end, which starts the close, is
// in relay.go.)

// sayEnding tells the employee how the handoff ended and that the bot is
// back. It runs in the transaction that ends the session, so the notice is
// queued before anything the bot answers afterwards (both go through the
// user lane in order) and never waits for the desk. Saying it again is a
// no-op (stable keys).
func (r *Relay) sayEnding(ctx context.Context, tx Tx, s Session, now time.Time) error {
	if s.CloseReason == ReasonUserBlocked {
		return nil // Teams refuses writes: there is nobody to tell
	}
	t, err := r.texts(ctx, tx, s.Conversation)
	if err != nil {
		return err
	}
	if err := r.say(ctx, tx, s, "end:"+string(s.ID), endingLine(t, s), now); err != nil {
		return err
	}
	if err := r.offerCSAT(ctx, tx, s, now); err != nil { // before "back", so the rating follows the chat it rates
		return err
	}
	return r.say(ctx, tx, s, "back:"+string(s.ID), t.BotBack, now)
}

// endCard queues the status card's last state: ended, with the ending line
// and no End chat button. It runs once, in the transaction that ends the
// session (before the ending notice).
func (r *Relay) endCard(ctx context.Context, tx Tx, s Session, now time.Time) error {
	if s.CloseReason == ReasonUserBlocked {
		return nil
	}
	t, err := r.texts(ctx, tx, s.Conversation)
	if err != nil {
		return err
	}
	return r.queueCard(ctx, tx, s, cardState{phase: phaseEnded, ending: endingLine(t, s)}, now)
}

// endingLine is the notice in t for s.CloseReason.
func endingLine(t Texts, s Session) string {
	switch s.CloseReason {
	case ReasonUserEnded:
		return t.UserEnded
	case ReasonUserRestarted:
		return t.UserRestart
	case ReasonAgentClosed:
		return t.AgentClosed
	case ReasonAgentLeft:
		return t.AgentLeft
	case ReasonIdleTimeout:
		return t.IdleTimeout
	case ReasonQueueTimeout:
		return t.QueueTimeout
	case ReasonDeskClosed:
		return t.DeskClosed
	case ReasonDeskAbandoned:
		return t.DeskAbandoned
	case ReasonRelayError:
		if s.AgentChatID == "" {
			return t.DeskDown
		}
		last := s.LastAgentActivity
		if last.IsZero() {
			last = s.UpdatedAt
		}
		return fmt.Sprintf(t.RelayError, s.AgentChatID, last.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	return ""
}

// deskLeave leaves the desk chat and returns the commit that finishes
// closing. leaveErr is set when leaving failed for good (no call is made).
func (r *Relay) deskLeave(ctx context.Context, it OutboxItem, leaveErr error) (commitFunc, error) {
	s, err := r.session(ctx, it.SessionID)
	if err != nil {
		return nil, err
	}
	if leaveErr == nil && s.AgentChatID != "" && s.State == StateClosing {
		if err := r.leaveDesk(ctx, s); err != nil {
			return nil, fmt.Errorf("desk leave: %w", err)
		}
	}
	return func(ctx context.Context, tx Tx, now time.Time) error {
		s, err := tx.Session(ctx, it.SessionID)
		if err != nil {
			return err
		}
		if s.State != StateClosing {
			return nil // finished already (a duplicate leave item)
		}
		return r.finish(ctx, tx, s, leaveErr, now)
	}, nil
}

// leaveDesk leaves the session's desk chat, telling a desk that can show it
// why the chat ended.
func (r *Relay) leaveDesk(ctx context.Context, s Session) error {
	if o, ok := r.desk.(DeskOutcome); ok {
		return o.LeaveWithOutcome(ctx, s.DeskChat(), s.CloseReason)
	}
	return r.desk.Leave(ctx, s.DeskChat())
}

// finish closes a closing session: the leave-failure notice when leaving
// failed, the review outcome, state closed. (The ending notice went out when
// the session ended; saying it here again is a no-op kept for sessions that
// began closing before that rule.)
func (r *Relay) finish(ctx context.Context, tx Tx, s Session, leaveErr error, now time.Time) error {
	if err := r.sayEnding(ctx, tx, s, now); err != nil {
		return err
	}
	if leaveErr != nil && s.AgentChatID != "" && s.CloseReason != ReasonUserBlocked {
		if err := r.sayT(ctx, tx, s, "leavefailed:"+string(s.ID), func(t Texts) string { return t.LeaveFailed }, now); err != nil {
			return err
		}
	}
	if r.reviewer != nil {
		rec, err := tx.Review(ctx, s.ID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil {
			human, err := tx.Messages(ctx, s.ID, 0)
			if err != nil {
				return err
			}
			human = humanSegment(human, s.QueuedAt)
			if err := tx.PutReview(ctx, r.reviewer.Finish(rec, s, human, now)); err != nil {
				return err
			}
		}
	}
	next, err := Transition(s.State, EventFinished, "")
	if err != nil {
		return err
	}
	prev := s.State
	s.State, s.ClosedAt, s.UpdatedAt = next, now, now
	r.log.InfoContext(ctx, "handoff closed", "session_id", s.ID, "reason", s.CloseReason, "leave_failed", leaveErr != nil)
	return tx.UpdateSession(ctx, s, prev)
}

// humanSegment keeps the user and agent messages written after the handoff.
func humanSegment(ms []Message, from time.Time) []Message {
	out := ms[:0:0]
	for _, m := range ms {
		if (m.Source == SourceUser || m.Source == SourceAgent) && !m.CreatedAt.Before(from) {
			out = append(out, m)
		}
	}
	return out
}

// failed returns the commit for an item that failed for good: it is marked
// dead, and where the failure breaks the relay the session ends cleanly (the
// employee is told at once). A leave that failed still finishes the close.
func (r *Relay) failed(ctx context.Context, it OutboxItem, cause error) commitFunc {
	p, _ := it.DecodePayload()
	msg := truncate(cause.Error(), 1000)
	if it.Kind == KindDeskLeave {
		return func(ctx context.Context, tx Tx, now time.Time) error {
			s, err := tx.Session(ctx, it.SessionID)
			if err != nil {
				return err
			}
			if s.State == StateClosing {
				if err := r.finish(ctx, tx, s, cause, now); err != nil {
					return err
				}
			}
			return tx.CompleteOutbox(ctx, it.ID, it.Claim)
		}
	}
	return func(ctx context.Context, tx Tx, now time.Time) error {
		if err := tx.FailOutbox(ctx, it.ID, it.Claim, msg); err != nil {
			return err
		}
		s, err := tx.Session(ctx, it.SessionID)
		if err != nil {
			return err
		}
		switch it.Kind {
		case KindBotSend:
			return r.sayT(ctx, tx, s, fmt.Sprintf("botdown:%d", p.MessageID), func(t Texts) string { return t.BotDown }, now)
		case KindDeskOpen, KindDeskSend:
			return r.end(ctx, tx, s, ReasonRelayError, now)
		case KindUserCard:
			if errors.Is(cause, ErrUserUnreachable) {
				return r.end(ctx, tx, s, ReasonUserBlocked, now)
			}
			return nil // the notices carry the same news
		case KindUserSend:
			if errors.Is(cause, ErrUserUnreachable) {
				return r.end(ctx, tx, s, ReasonUserBlocked, now)
			}
			return r.end(ctx, tx, s, ReasonRelayError, now)
		}
		return nil // handback, typing, receipts: logged and kept dead for inspection
	}
}
