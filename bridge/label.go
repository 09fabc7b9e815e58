package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// AgentLabels is an optional Reviewer feature: it recognises the agent's
// private labels in desk messages ("#topic …") and records them on the review
// record. Implemented by review.Recorder.
type AgentLabels interface {
	// Label reads text, an agent's desk message. ok is false when the message
	// is for the employee. Otherwise rec (the session's review record, with
	// found false when there is none) comes back with the label applied, and
	// ack is what the agent is told in return.
	Label(rec ReviewRecord, found bool, text, agent string, at time.Time) (out ReviewRecord, ack string, ok bool)
}

// agentLabel handles an agent message that is a private label: the label goes
// on the review record and an acknowledgment goes to the agent only, in the
// same transaction; the message itself is kept (so a repeated delivery stays
// a no-op) but never reaches the employee. It reports whether m was a label.
func (r *Relay) agentLabel(ctx context.Context, tx Tx, s Session, m Message, now time.Time) (bool, error) {
	labels, ok := r.reviewer.(AgentLabels)
	if !ok || m.System {
		return false, nil
	}
	rec, err := tx.Review(ctx, s.ID)
	found := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return false, err
	}
	rec, ack, ok := labels.Label(rec, found, m.Text, m.Author, m.SentAt)
	if !ok {
		return false, nil
	}
	if found {
		if err := tx.PutReview(ctx, rec); err != nil {
			return true, err
		}
	}
	r.log.InfoContext(ctx, "agent label recorded", "session_id", s.ID, "chat_id", s.AgentChatID, "stored", found)
	return true, r.noteToAgent(ctx, tx, s, "label:"+m.ExternalID, ack, now)
}

// noteToAgent stores a bridge note under a stable key and queues it for the
// agent's chat only.
func (r *Relay) noteToAgent(ctx context.Context, tx Tx, s Session, key, text string, now time.Time) error {
	if text == "" {
		return nil
	}
	m := Message{SessionID: s.ID, Source: SourceBridge, ExternalID: key, Text: text, SentAt: now, CreatedAt: now}
	inserted, err := tx.InsertMessage(ctx, &m)
	if err != nil || !inserted {
		return err
	}
	return tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindDeskNote, OutboxPayload{MessageID: m.ID}, now))
}

// deskNote posts a bridge note to the agent. A note for a chat that is gone
// is dropped: it was meant for that chat only.
func (r *Relay) deskNote(ctx context.Context, it OutboxItem, p OutboxPayload) (commitFunc, error) {
	s, m, _, err := r.load(ctx, it, p, false)
	if err != nil {
		return nil, err
	}
	if !(s.HumanOwned() || s.State == StateClosing) || s.AgentChatID == "" {
		// While closing the bridge is still in the chat (the leave follows
		// in this lane), so a note such as "the employee left" goes out.
		return nil, nil
	}
	dm := DeskMessage{Key: fmt.Sprintf("%s/note/%d", s.ID, m.ID), Text: m.Text, Retry: it.Attempts > 1, FirstTry: it.CreatedAt,
		Confirmed: s.DeskPosts}
	if err := r.desk.Send(ctx, s.DeskChat(), dm); err != nil {
		return nil, fmt.Errorf("desk note: %w", err)
	}
	return func(ctx context.Context, tx Tx, now time.Time) error { return deskPosted(ctx, tx, it.SessionID, now) }, nil
}
