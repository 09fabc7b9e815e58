package bridge

import "fmt"

// State is where a session is in its life.
//
//	bot ──handoff──▶ queued ──agent joined──▶ live
//	                   │                        │
//	                   └──────── end ───────────┴──▶ closing ──finished──▶ closed
//
// Only bot talks to the bot (Rasa); only queued and live talk to the agent desk;
// closing runs the leave and handback steps.
type State string

const (
	StateBot     State = "bot"
	StateQueued  State = "queued"
	StateLive    State = "live"
	StateClosing State = "closing"
	StateClosed  State = "closed"
)

// States lists every state in lifecycle order.
var States = []State{StateBot, StateQueued, StateLive, StateClosing, StateClosed}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// CloseReason records why a session ended.
type CloseReason string

const (
	ReasonUserEnded     CloseReason = "user_ended"     // the employee sent /end_chat
	ReasonUserRestarted CloseReason = "user_restarted" // the employee sent /restart
	ReasonAgentClosed   CloseReason = "agent_closed"   // "has closed the support session" or a closed state
	ReasonAgentLeft     CloseReason = "agent_left"     // "has left the support session"
	ReasonRelayError    CloseReason = "relay_error"    // an outward call failed after its retries
	ReasonIdleTimeout   CloseReason = "idle_timeout"   // nobody wrote for too long while live
	ReasonQueueTimeout  CloseReason = "queue_timeout"  // no agent accepted in time
	ReasonUserBlocked   CloseReason = "user_blocked"   // Teams refuses writes: the bot was removed or blocked
	// ReasonDeskClosed: the desk closed the chat and no agent did (ServiceNow
	// queue state 7 "Closed by Client" set from outside the bridge).
	ReasonDeskClosed CloseReason = "desk_closed"
	// ReasonDeskAbandoned: the desk closed the chat as abandoned (ServiceNow
	// queue state 8 "Closed Abandoned").
	ReasonDeskAbandoned CloseReason = "desk_abandoned"
)

// CloseReasons lists every close reason.
var CloseReasons = []CloseReason{ReasonUserEnded, ReasonUserRestarted, ReasonAgentClosed, ReasonAgentLeft,
	ReasonRelayError, ReasonIdleTimeout, ReasonQueueTimeout, ReasonUserBlocked, ReasonDeskClosed, ReasonDeskAbandoned}

// Valid reports whether r is a known close reason.
func (r CloseReason) Valid() bool {
	for _, v := range CloseReasons {
		if r == v {
			return true
		}
	}
	return false
}

// Event is an input to the state machine.
type Event string

const (
	EventHandoff     Event = "handoff"      // the bot signalled a handoff
	EventAgentJoined Event = "agent_joined" // the agent's first message or an accept
	EventEnd         Event = "end"          // any ending; carries a CloseReason
	EventFinished    Event = "finished"     // the leave and handback steps are queued
)

// Transition returns the state that follows from on ev. reason must be a valid
// CloseReason for EventEnd and empty otherwise. Illegal moves return an error
// wrapping ErrIllegalTransition and leave the caller's state untouched.
//
// Ending is legal from queued and live; queue_timeout only from queued and
// idle_timeout only from live. Joining is legal from queued only (a second
// "joined" while live is not an error for the caller to act on, so it is
// reported as illegal and the relay ignores it).
func Transition(from State, ev Event, reason CloseReason) (State, error) {
	illegal := func() (State, error) {
		if reason != "" {
			return from, fmt.Errorf("%w: %s on %s (%s)", ErrIllegalTransition, from, ev, reason)
		}
		return from, fmt.Errorf("%w: %s on %s", ErrIllegalTransition, from, ev)
	}
	if ev != EventEnd && reason != "" {
		return illegal()
	}
	switch ev {
	case EventHandoff:
		if from == StateBot {
			return StateQueued, nil
		}
	case EventAgentJoined:
		if from == StateQueued {
			return StateLive, nil
		}
	case EventEnd:
		if !reason.Valid() {
			return illegal()
		}
		switch {
		case reason == ReasonQueueTimeout && from != StateQueued:
		case reason == ReasonIdleTimeout && from != StateLive:
		case from == StateQueued || from == StateLive:
			return StateClosing, nil
		}
	case EventFinished:
		if from == StateClosing {
			return StateClosed, nil
		}
	}
	return illegal()
}
