package bridge

import "time"

// Direction is which way a relayed message travelled, for latency metrics.
type Direction string

const (
	// DirUserToAgent: from the bridge receiving the user's message to the
	// desk accepting it.
	DirUserToAgent Direction = "user_to_agent"
	// DirAgentToUser: from the bridge receiving the agent's message (poll or
	// webhook) to Teams accepting it.
	DirAgentToUser Direction = "agent_to_user"
	// DirBot: from the bridge receiving the user's message to the bot
	// answering it.
	DirBot Direction = "bot"
)

// Observer learns how long relayed messages took. The relay calls it right
// after the destination accepted a message; a delivery repeated after a
// failed commit is reported again (the destination saw it again). Calls must
// be cheap and safe for concurrent use. Set it with RelayConfig.Observer.
type Observer interface {
	Relayed(dir Direction, latency time.Duration)
}

// observe reports a delivery of a message the bridge received at since.
func (r *Relay) observe(dir Direction, since time.Time) {
	if r.cfg.Observer == nil || since.IsZero() {
		return
	}
	r.cfg.Observer.Relayed(dir, max(r.now().Sub(since), 0))
}

// observeUserSend reports a message Teams accepted: only the agent's
// messages are relayed ones (bot replies are measured when the bot answers,
// bridge notices are not relayed).
func (r *Relay) observeUserSend(m Message) {
	if m.Source == SourceAgent {
		r.observe(DirAgentToUser, m.CreatedAt)
	}
}
