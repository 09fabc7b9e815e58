package servicenow

import (
	"fmt"
	"strings"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// This file turns fetched messages and a queue entry into bridge.AgentEvents.
//
//   - Echo: created_by equals Config.BridgeUser (case-insensitive). Echoes are
//     returned (they move the cursor) but never carry an end reason.
//   - System: created_by is "system".
//   - Ended by text: a system message containing an end phrase, or an agent
//     message that is exactly "<author> <end phrase>", carries the phrase's
//     EndReason and is followed by an AgentEnded event (ExternalID
//     "<sys_id>:ended"); any other agent text is shown, whatever it mentions.
//   - Ended by state: a closed queue entry (3, 4, 7, 8) adds an AgentEnded event
//     when no end phrase was seen in the same poll (see stateEndReason).
//   - Joined: an AgentJoined event (ExternalID "joined:<group>", the same on
//     every poll) precedes the first agent message of a poll, i.e. the first
//     message that is neither an echo nor a system message; when the poll has
//     none but the queue entry is in Work in Progress, it is appended. The
//     relay therefore sees "joined" on every poll of a live chat and ignores it
//     while live (the state machine's documented behaviour).
//
// Events derived from the queue entry are stamped with the newest message time
// of the poll (or since when there is none), so they never move the cursor
// past a message that was not fetched.

// classifier holds the rules that turn desk messages into events: who the
// bridge user is (echoes) and which texts end a chat. Polling and webhooks
// share it, so both produce identical events for the same message.
type classifier struct {
	bridgeUser string
	phrases    []EndPhrase // lower-cased
}

func newClassifier(bridgeUser string, phrases []EndPhrase) classifier {
	k := classifier{bridgeUser: bridgeUser}
	for _, p := range phrases {
		k.phrases = append(k.phrases, EndPhrase{Text: strings.ToLower(p.Text), Reason: p.Reason})
	}
	return k
}

// events converts msgs (oldest first, all at or after since) and the chat's
// queue entry (nil if unknown) into events, oldest first.
func (c *Client) events(chat bridge.AgentChatID, msgs []message, entry *QueueEntry, since time.Time) []bridge.AgentEvent {
	return c.cls.events(chat, msgs, entry, since)
}

// events implements Client.events.
func (c classifier) events(chat bridge.AgentChatID, msgs []message, entry *QueueEntry, since time.Time) []bridge.AgentEvent {
	out := make([]bridge.AgentEvent, 0, len(msgs)+2)
	joined, ended := false, false
	last := since
	for _, m := range msgs {
		if m.At.After(last) {
			last = m.At
		}
		author := m.SenderName
		if author == "" {
			author = m.CreatedBy
		}
		ev := bridge.AgentEvent{
			Kind:       bridge.AgentMessage,
			Chat:       chat,
			ExternalID: m.SysID,
			Author:     author,
			Text:       m.Text,
			At:         m.At,
			System:     strings.EqualFold(m.CreatedBy, "system"),
			Echo:       c.bridgeUser != "" && strings.EqualFold(m.CreatedBy, c.bridgeUser),
		}
		if !ev.Echo && !ev.System {
			ev.Attachments = m.files
		}
		if !ev.Echo && !ev.System && !joined {
			out = append(out, bridge.AgentEvent{Kind: bridge.AgentJoined, Chat: chat, ExternalID: "joined:" + string(chat), Author: author, At: m.At})
			joined = true
		}
		if !ev.Echo {
			ev.EndReason = c.endReason(m, ev.System)
		}
		out = append(out, ev)
		if ev.EndReason != "" && !ended {
			out = append(out, bridge.AgentEvent{Kind: bridge.AgentEnded, Chat: chat, ExternalID: m.SysID + ":ended", Author: author, At: m.At, System: ev.System, EndReason: ev.EndReason})
			ended = true
		}
	}
	if entry == nil {
		return out
	}
	if !joined && !ended && entry.State == StateWaiting && entry.Position > 0 {
		// The place in the queue, for the employee's status card; the id
		// changes with the position, so each new place is shown once.
		out = append(out, bridge.AgentEvent{Kind: bridge.AgentWaiting, Chat: chat, ExternalID: fmt.Sprintf("position:%d", entry.Position),
			QueuePosition: entry.Position, At: last})
	}
	if !joined && !ended && entry.State == StateWorkInProgress {
		out = append(out, bridge.AgentEvent{Kind: bridge.AgentJoined, Chat: chat, ExternalID: "joined:" + string(chat), Author: entry.AssignedTo, At: last})
	}
	if !ended && entry.State.Closed() {
		out = append(out, bridge.AgentEvent{
			Kind:       bridge.AgentEnded,
			Chat:       chat,
			ExternalID: "state:" + string(chat) + ":" + entry.State.String(),
			Author:     entry.AssignedTo,
			At:         last,
			System:     true,
			EndReason:  stateEndReason(*entry),
		})
	}
	return out
}

// endReason returns the reason of the end phrase that ends the chat in m,
// or "". In a system row (created_by "system") an end phrase anywhere
// counts. In an agent's row it counts only when the whole text is the desk's
// end notice, "<the author's name> <phrase>" with an optional full stop, so an
// agent who merely mentions the phrase ("my colleague has left the support
// session earlier, I'm taking over") does not end the chat.
func (c classifier) endReason(m message, system bool) bridge.CloseReason {
	if m.Text == "" {
		return ""
	}
	lower := strings.ToLower(strings.TrimSpace(m.Text))
	for _, p := range c.phrases {
		if system {
			if strings.Contains(lower, p.Text) {
				return p.Reason
			}
			continue
		}
		who, ok := strings.CutSuffix(strings.TrimSuffix(lower, "."), p.Text)
		if !ok {
			continue
		}
		who = strings.TrimSpace(who)
		if who == "" || who == strings.ToLower(strings.TrimSpace(m.SenderName)) || who == strings.ToLower(m.CreatedBy) {
			return p.Reason
		}
	}
	return ""
}

// stateEndReason maps a closed queue-entry state to a close reason:
//
//	3 Closed Complete   → agent_closed (the agent ended the chat)
//	4 Closed Escalated  → agent_closed (the agent closed it into an escalation)
//	7 Closed by Client  → desk_closed: the requester side is the bridge, so a
//	                      close the bridge did not ask for was done from
//	                      outside (an admin, a script, the instance's timers);
//	                      no agent closed it
//	8 Closed Abandoned  → desk_abandoned: the instance closed the chat as
//	                      abandoned ("reopenable" in the Connect client); not
//	                      the bridge's inactivity timeout
func stateEndReason(e QueueEntry) bridge.CloseReason {
	switch e.State {
	case StateClosedAbandoned:
		return bridge.ReasonDeskAbandoned
	case StateClosedByClient:
		return bridge.ReasonDeskClosed
	}
	return bridge.ReasonAgentClosed
}
