package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file holds what the employee sees of a handoff besides the messages:
// the live status card (waiting → connected → ended, with an End chat
// button while the chat is open), localised notices, the employee's e-mail
// for the agent, and the note that tells the agent the employee is gone.

// EndChatPayload is what the status card's End chat button sends back: the
// /end_chat command, so a click and a typed command are the same thing.
const EndChatPayload = string(CommandEndChat)

// sayT stores a bridge notice in the conversation's language (see say).
func (r *Relay) sayT(ctx context.Context, tx Tx, s Session, key string, pick func(Texts) string, now time.Time) error {
	t, err := r.texts(ctx, tx, s.Conversation)
	if err != nil {
		return err
	}
	return r.say(ctx, tx, s, key, pick(t), now)
}

// putRef stores the activity's conversation reference, keeping what the
// bridge learnt itself (the e-mail from the member list, the welcome time),
// and sets WelcomedAt to now on the first install activity, which it then
// reports (Tx.PutActivityRef).
func (r *Relay) putRef(ctx context.Context, tx Tx, a UserActivity, now time.Time) (welcomed bool, err error) {
	var welcome time.Time
	if a.Kind == ActivityInstall {
		welcome = now
	}
	return tx.PutActivityRef(ctx, a.Ref, a.UserEmail, welcome)
}

// cardPhase is where a handoff stands, as the status card shows it.
type cardPhase int

const (
	phaseWaiting cardPhase = iota
	phaseConnected
	phaseEnded
)

// cardState is what the status card shows.
type cardState struct {
	phase    cardPhase
	position int           // waiting: place in the queue, 0 unknown
	wait     time.Duration // waiting: estimated wait, 0 unknown
	agent    string        // connected: the agent's name
	ending   string        // ended: the ending notice
}

// statusCard renders the card in the conversation's language.
func statusCard(t Texts, st cardState) Card {
	c := Card{Title: t.CardTitle}
	switch st.phase {
	case phaseWaiting:
		c.Style = "accent"
		c.Lines = append(c.Lines, t.CardWaiting)
		c.Lines = append(c.Lines, queueLines(t, st)...)
	case phaseConnected:
		c.Style = "good"
		agent := st.agent
		if agent == "" {
			agent = t.CardAgent
		}
		c.Lines = append(c.Lines, fmt.Sprintf(t.CardConnected, agent))
	case phaseEnded:
		c.Lines = append(c.Lines, t.CardEnded)
		if st.ending != "" {
			c.Lines = append(c.Lines, st.ending)
		}
		return c // no End chat button once it ended
	}
	c.Buttons = []Button{{Title: t.CardEndButton, Payload: EndChatPayload}}
	return c
}

// queueLines renders the place in the queue and the estimated wait (in whole
// minutes, at least 1), each only when the desk gave it.
func queueLines(t Texts, st cardState) []string {
	var out []string
	if st.position > 0 {
		out = append(out, fmt.Sprintf(t.CardPosition, st.position))
	}
	if st.wait > 0 {
		out = append(out, fmt.Sprintf(t.CardWait, max(1, int((st.wait+30*time.Second)/time.Minute))))
	}
	return out
}

// queueNotice is queueLines as one notice, for channels without the card.
func queueNotice(t Texts, st cardState) string { return strings.Join(queueLines(t, st), " ") }

// queueCard queues the status card as it should look now. Items of the
// user lane run in order, so the card ends up in the last state queued.
func (r *Relay) queueCard(ctx context.Context, tx Tx, s Session, st cardState, now time.Time) error {
	if _, ok := r.user.(UserCards); !ok {
		return nil // the notices say it all
	}
	t, err := r.texts(ctx, tx, s.Conversation)
	if err != nil {
		return err
	}
	c := statusCard(t, st)
	return tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindUserCard, OutboxPayload{Card: &c}, now))
}

// userCard sends the status card, or updates the one sent before in place;
// when the channel no longer lets it update that one (deleted, too old) it
// sends a new card, so nothing is lost.
func (r *Relay) userCard(ctx context.Context, it OutboxItem, p OutboxPayload) (commitFunc, error) {
	cards, ok := r.user.(UserCards)
	if !ok || p.Card == nil {
		return nil, nil
	}
	s, err := r.session(ctx, it.SessionID)
	if err != nil {
		return nil, err
	}
	ref, err := r.ref(ctx, it.Conversation)
	if err != nil {
		return nil, err
	}
	if s.StatusCardID != "" {
		err := cards.UpdateCard(ctx, ref, s.StatusCardID, *p.Card)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, ErrCardGone) {
			return nil, fmt.Errorf("update status card: %w", err)
		}
		r.log.InfoContext(ctx, "status card can no longer be updated; sending a new one", "session_id", s.ID, "err", err)
	}
	id, err := cards.SendCard(ctx, ref, *p.Card)
	if err != nil {
		return nil, fmt.Errorf("send status card: %w", err)
	}
	return func(ctx context.Context, tx Tx, now time.Time) error {
		s, err := tx.Session(ctx, it.SessionID)
		if err != nil {
			return err
		}
		s.StatusCardID = id
		return tx.UpdateSession(ctx, s, s.State)
	}, nil
}

// lookupEmail returns the employee's e-mail for the agent when the session
// has none: the one cached on the conversation reference ref (read with
// refErr), or one looked up in the channel's member list; found reports the
// latter, which the caller caches with the opened chat (cacheEmail). A failed
// lookup is logged and yields "": it never holds the handoff up for longer
// than RelayConfig.LookupTimeout.
func (r *Relay) lookupEmail(ctx context.Context, s Session, ref ConversationRef, refErr error) (email string, found bool) {
	if refErr != nil {
		r.log.WarnContext(ctx, "no conversation reference to look the employee's e-mail up with", "session_id", s.ID, "err", refErr)
		return "", false
	}
	if ref.UserEmail != "" {
		return ref.UserEmail, false
	}
	dir, ok := r.user.(UserDirectory)
	if !ok {
		return "", false
	}
	lctx, cancel := context.WithTimeout(ctx, r.cfg.LookupTimeout)
	defer cancel()
	email, err := dir.UserEmail(lctx, ref)
	if err != nil {
		r.log.WarnContext(ctx, "employee's e-mail not found in the member list; the agent gets the chat without it", "session_id", s.ID, "err", err)
		return "", false
	}
	return email, email != ""
}

// cacheEmail stores a looked-up e-mail on the conversation reference, so the
// next handoff of the conversation does not look it up again.
func cacheEmail(ctx context.Context, tx Tx, conv ConversationID, email string) error {
	ref, err := tx.ConversationRef(ctx, conv)
	if errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if ref.UserEmail == email {
		return nil
	}
	ref.UserEmail = email
	return tx.PutConversationRef(ctx, ref)
}

// tellsAgent reports whether ending for reason leaves the agent a note that
// the employee is gone: every reason but the desk side's own close, and but
// a relay failure (the desk is failing; the note would only hold the leave up).
func tellsAgent(reason CloseReason) bool {
	switch reason {
	case ReasonAgentClosed, ReasonAgentLeft, ReasonDeskClosed, ReasonDeskAbandoned, ReasonRelayError:
		return false
	}
	return true
}

// employeeLeftNote queues the note to the agent's chat, ahead of the leave
// in the desk lane.
func (r *Relay) employeeLeftNote(ctx context.Context, tx Tx, s Session, now time.Time) error {
	if !tellsAgent(s.CloseReason) || s.AgentChatID == "" {
		return nil
	}
	return r.noteToAgent(ctx, tx, s, "left:"+string(s.ID), r.cfg.Texts.EmployeeLeft, now)
}
