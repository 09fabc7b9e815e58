package bridge

import (
	"context"
	"fmt"
)

// NonceFor returns the per-session nonce of the session bound to the desk
// chat ("" for a session that has none), so the Virtual Agent callback
// handler can check the nonce ServiceNow echoes in clientVariables. It
// returns an error wrapping ErrNotFound when no session has that chat id
// (yet: the id is recorded when the desk's Open returns). Closed sessions
// are found too; their events are dropped by AgentEvents.
func (r *Relay) NonceFor(ctx context.Context, chat AgentChatID) (string, error) {
	var nonce string
	err := r.store.Update(ctx, func(tx Tx) error {
		s, err := tx.SessionByAgentChat(ctx, chat)
		if err != nil {
			return err
		}
		nonce = s.Nonce
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("bridge: nonce of chat %s: %w", chat, err)
	}
	return nonce, nil
}
