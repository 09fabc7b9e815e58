package bridge

import (
	"context"
	"fmt"
)

// DeskData returns the desk's own data (DeskChat.Data) of the session bound
// to the desk chat, so a desk's callback handler can check what it stored
// there (the Virtual Agent desk keeps its callback nonce in it). It returns
// an error wrapping ErrNotFound when no session has that chat id (yet: the id
// is recorded when the desk's Open returns). Closed sessions are found too;
// their events are dropped by AgentEvents.
func (r *Relay) DeskData(ctx context.Context, chat AgentChatID) (string, error) {
	var data string
	err := r.store.Update(ctx, func(tx Tx) error {
		s, err := tx.SessionByAgentChat(ctx, chat)
		if err != nil {
			return err
		}
		data = s.DeskData
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("bridge: desk data of chat %s: %w", chat, err)
	}
	return data, nil
}

// StoredDeskEvents returns which of ids (the desk's message ids, AgentEvent
// ExternalID) the bridge has stored for the session bound to chat, whichever
// replica stored them. It wraps ErrNotFound when no session has that chat
// id. A webhook handler asks it whether a message's predecessor has arrived
// elsewhere before it reads the chat from the desk.
func (r *Relay) StoredDeskEvents(ctx context.Context, chat AgentChatID, ids []string) ([]string, error) {
	var out []string
	err := r.view(ctx, func(tx Tx) error { // read-only: the read pool where there is one
		out = out[:0]
		s, err := tx.SessionByAgentChat(ctx, chat)
		if err != nil {
			return err
		}
		keys := make([]MessageKey, len(ids))
		for i, id := range ids {
			keys[i] = MessageKey{Session: s.ID, Source: SourceAgent, ExternalID: id}
		}
		stored, err := tx.StoredMessages(ctx, keys)
		for _, k := range keys {
			if stored[k] {
				out = append(out, k.ExternalID)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bridge: stored desk events of chat %s: %w", chat, err)
	}
	return out, nil
}
