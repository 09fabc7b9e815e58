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
