package snowtest

import (
	"fmt"
	"slices"
	"time"
)

// State is a queue entry's state (chat_queue_entry.state).
type State int

// The queue-entry states of Connect Support.
const (
	Waiting         State = 1
	WorkInProgress  State = 2
	ClosedComplete  State = 3
	ClosedEscalated State = 4
	ClosedByClient  State = 7
	ClosedAbandoned State = 8
)

// Closed reports whether s is a closed state.
func (s State) Closed() bool {
	return s == ClosedComplete || s == ClosedEscalated || s == ClosedByClient || s == ClosedAbandoned
}

// Label is the state's display value.
func (s State) Label() string {
	switch s {
	case Waiting:
		return "Waiting"
	case WorkInProgress:
		return "Work in Progress"
	case ClosedComplete:
		return "Closed Complete"
	case ClosedEscalated:
		return "Closed Escalated"
	case ClosedByClient:
		return "Closed by Client"
	case ClosedAbandoned:
		return "Closed Abandoned"
	}
	return fmt.Sprintf("State %d", int(s))
}

// Chat is a snapshot of a support chat: its conversation and queue entry.
type Chat struct {
	Group            string // conversation sys_id (the bridge's AgentChatID)
	QueueEntry       string // chat_queue_entry sys_id
	Number           string // e.g. CHAT0010001
	Queue            string // queue sys_id
	State            State
	OpenedBy         string // user name of the requester
	AssignedTo       string // display name of the agent; "" while waiting
	Position         int    // place among the queue's waiting chats (1-based), 0 when not waiting
	ShortDescription string // the start of the first message
	OpenedAt         time.Time
	WorkStart        time.Time
	WorkEnd          time.Time
	UpdatedAt        time.Time
}

// Message is a snapshot of a chat message (a live_message row).
type Message struct {
	SysID      string
	Group      string
	Profile    string // live_profile sys_id of the author
	CreatedBy  string // user name; "system" for system messages
	SenderName string // display name
	Text       string
	At         time.Time // ms precision
	Files      []File    // the agent's files (SayFiles)
	seq        int
}

// System reports whether m is a system message.
func (m Message) System() bool { return m.CreatedBy == "system" }

type chat struct {
	Chat
	assignedUser string // user name of the agent
	transferFrom string
	msgs         []*Message
}

// chat looks a chat up. Callers hold in.mu.
func (in *Instance) chat(group string) (*chat, error) {
	c, ok := in.chats[group]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoChat, group)
	}
	return c, nil
}

// position returns c's 1-based place among its queue's waiting chats.
// Callers hold in.mu.
func (in *Instance) position(c *chat) int {
	if c.State != Waiting {
		return 0
	}
	n := 0
	for _, o := range in.order {
		if o.Queue == c.Queue && o.State == Waiting {
			n++
			if o == c {
				return n
			}
		}
	}
	return 0
}

// positions returns every waiting chat's place in its queue. Callers hold in.mu.
func (in *Instance) positions() map[*chat]int {
	pos := make(map[*chat]int)
	n := make(map[string]int)
	for _, c := range in.order {
		if c.State == Waiting {
			n[c.Queue]++
			pos[c] = n[c.Queue]
		}
	}
	return pos
}

// snapshot copies c with its computed position. Callers hold in.mu.
func (in *Instance) snapshot(c *chat) Chat {
	s := c.Chat
	s.Position = in.position(c)
	return s
}

// addMessage appends a message by user to c. Callers hold in.mu.
func (in *Instance) addMessage(c *chat, user, text string) *Message {
	return in.addMessageFiles(c, user, text, nil)
}

// addMessageFiles appends a message with files by user to c. Callers hold
// in.mu.
func (in *Instance) addMessageFiles(c *chat, user, text string, files []File) *Message {
	at := in.now().UTC().Truncate(time.Millisecond)
	m := &Message{
		SysID:      newSysID(),
		Group:      c.Group,
		Profile:    sysIDOf("live_profile", user),
		CreatedBy:  user,
		SenderName: in.displayName(user),
		Text:       text,
		At:         at,
		Files:      files,
		seq:        len(in.messages),
	}
	c.msgs = append(c.msgs, m)
	in.messages = append(in.messages, m)
	c.UpdatedAt = at
	in.touch()
	in.messageAdded(c, m)
	return m
}

// setState moves c to s, stamping the work times. Callers hold in.mu.
func (in *Instance) setState(c *chat, s State) {
	now := in.now().UTC()
	if s == WorkInProgress && c.WorkStart.IsZero() {
		c.WorkStart = now
	}
	if s.Closed() && c.WorkEnd.IsZero() {
		c.WorkEnd = now
	}
	prev := c.State
	c.State = s
	c.UpdatedAt = now
	in.touch()
	in.stateChanged(c, prev)
}

// openChat creates a chat in queue with the requester's first message.
// Callers hold in.mu.
func (in *Instance) openChat(queue, user, text string) *chat {
	in.seq++
	now := in.now().UTC()
	c := &chat{Chat: Chat{
		Group:            newSysID(),
		QueueEntry:       newSysID(),
		Number:           fmt.Sprintf("CHAT%07d", in.seq),
		Queue:            queue,
		State:            Waiting,
		OpenedBy:         user,
		ShortDescription: truncate(text, 160),
		OpenedAt:         now,
		UpdatedAt:        now,
	}}
	in.chats[c.Group] = c
	in.order = append(in.order, c)
	in.addMessage(c, user, text)
	return c
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// Accept makes agent (a display name such as "Beth Anglin"; the user name is
// derived as "beth.anglin") accept the waiting chat: state Work in Progress,
// assigned_to the agent, and the queue's initial agent response written as the
// agent. ErrNotWaiting if the chat is not waiting.
func (in *Instance) Accept(group, agent string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, err := in.chat(group)
	if err != nil {
		return err
	}
	if c.State != Waiting {
		return fmt.Errorf("%w: %s is %s", ErrNotWaiting, group, c.State.Label())
	}
	user := in.agent(agent)
	c.AssignedTo, c.assignedUser = agent, user
	in.setState(c, WorkInProgress)
	for _, q := range in.queues {
		if q.SysID == c.Queue && q.InitialAgentResponse != "" {
			in.addMessage(c, user, q.InitialAgentResponse)
		}
	}
	return nil
}

// agent registers an agent's display name and returns its user name.
// Callers hold in.mu.
func (in *Instance) agent(name string) string {
	user := userNameOf(name)
	if _, ok := in.names[user]; !ok {
		in.names[user] = name
	}
	return user
}

// Say writes text as agent in the chat and returns the message. The chat must
// be in Work in Progress: ErrNotAccepted while waiting, ErrChatClosed once
// closed.
func (in *Instance) Say(group, agent, text string) (Message, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, err := in.chat(group)
	if err != nil {
		return Message{}, err
	}
	switch {
	case c.State.Closed():
		return Message{}, fmt.Errorf("%w: %s", ErrChatClosed, group)
	case c.State != WorkInProgress:
		return Message{}, fmt.Errorf("%w: %s", ErrNotAccepted, group)
	}
	return *in.addMessage(c, in.agent(agent), text), nil
}

// SystemMessage writes text as a system message (created_by "system").
func (in *Instance) SystemMessage(group, text string) (Message, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, err := in.chat(group)
	if err != nil {
		return Message{}, err
	}
	return *in.addMessage(c, "system", text), nil
}

// CloseChat is the agent closing the chat: the system message "<Agent> has
// closed the support session" and state Closed Complete (3).
func (in *Instance) CloseChat(group string) error {
	return in.end(group, "has closed the support session")
}

// LeaveChat is the agent leaving the chat before the user ended it: the system
// message "<Agent> has left the support session" and state Closed Complete (3).
func (in *Instance) LeaveChat(group string) error {
	return in.end(group, "has left the support session")
}

func (in *Instance) end(group, phrase string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, err := in.chat(group)
	if err != nil {
		return err
	}
	if c.State.Closed() {
		return fmt.Errorf("%w: %s", ErrChatClosed, group)
	}
	agent := c.AssignedTo
	if agent == "" {
		agent = "Agent"
	}
	in.addMessage(c, "system", agent+" "+phrase)
	in.setState(c, ClosedComplete)
	return nil
}

// Transfer hands an accepted chat to another agent: a system message
// "<From> transferred the chat to <To>" and assigned_to the new agent.
func (in *Instance) Transfer(group, toAgent string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, err := in.chat(group)
	if err != nil {
		return err
	}
	switch {
	case c.State.Closed():
		return fmt.Errorf("%w: %s", ErrChatClosed, group)
	case c.State != WorkInProgress:
		return fmt.Errorf("%w: %s", ErrNotAccepted, group)
	}
	from := c.AssignedTo
	c.transferFrom = from
	c.AssignedTo, c.assignedUser = toAgent, in.agent(toAgent)
	in.addMessage(c, "system", from+" transferred the chat to "+toAgent)
	return nil
}

// SetState sets the chat's queue-entry state without writing a message, e.g.
// ClosedEscalated (4), ClosedByClient (7) or ClosedAbandoned (8).
func (in *Instance) SetState(group string, s State) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, err := in.chat(group)
	if err != nil {
		return err
	}
	in.setState(c, s)
	return nil
}

// Chat returns a snapshot of one chat.
func (in *Instance) Chat(group string) (Chat, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, ok := in.chats[group]
	if !ok {
		return Chat{}, false
	}
	return in.snapshot(c), true
}

// Chats returns snapshots of every chat, oldest first.
func (in *Instance) Chats() []Chat {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]Chat, 0, len(in.order))
	for _, c := range in.order {
		out = append(out, in.snapshot(c))
	}
	return out
}

// ChatCount returns how many chats the instance holds (cheaper than
// len(Chats()), which copies every chat under the instance's lock).
func (in *Instance) ChatCount() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.order)
}

// WaitingChats returns the chats waiting for an agent, oldest first.
func (in *Instance) WaitingChats() []Chat {
	return slices.DeleteFunc(in.Chats(), func(c Chat) bool { return c.State != Waiting })
}

// Messages returns the chat's messages, oldest first (nil for an unknown chat).
func (in *Instance) Messages(group string) []Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, ok := in.chats[group]
	if !ok {
		return nil
	}
	out := make([]Message, len(c.msgs))
	for i, m := range c.msgs {
		out[i] = *m
	}
	return out
}

// Queues returns the instance's queues.
func (in *Instance) Queues() []Queue {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.queues)
}
