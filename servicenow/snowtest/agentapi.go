package snowtest

import (
	"errors"
	"net/http"
	"slices"
	"strings"
)

// The agent's side of Connect Support over HTTP: what an agent's browser does
// in the Connect workspace, so that a console (the demo's, or a test's) can
// work chats through the instance's API instead of the Go API. Each endpoint
// runs the same code as the Go API (Accept, Say, CloseChat, LeaveChat), so a
// chat worked over HTTP looks exactly like one scripted in Go.
//
//	POST /api/now/connect/support/queues/{queue}/accept      {} or {"group": "<sys_id>"}
//	POST /api/now/connect/conversations/{group}/messages     {"message": "..."}
//	POST /api/now/connect/support/sessions/{group}/close     {} or {"agent_leave": true}
//	POST /api/now/connect/support/sessions/{group}/leave     {}
//
// The caller authenticates as an agent user (Basic or Bearer, like every
// /api/now request). An agent is a user whose user name is derived from its
// display name the way Accept derives it ("Beth Anglin" → "beth.anglin"); see
// AgentUser. On the messages, close and leave paths a caller who is the chat's
// assigned agent gets the agent behaviour, anyone else the requester's
// (which hides chats the caller did not open: 404).
//
// Accept takes the oldest waiting chat of the queue, as the Connect UI's
// "accept next" does; the optional "group" (an extension of the fake) picks a
// given waiting chat instead. It answers the accepted queue entry, 404 when no
// chat is waiting (or the group is not in the queue), 409 when the chat is no
// longer waiting, and 403 for a caller that is not an agent.
//
// Agents read queues and transcripts with the Table API (chat_queue_entry and
// live_message), which every authenticated user may query.

// AgentUser returns the User for an agent called name, with the user name
// Accept and Say use for it ("Beth Anglin" → "beth.anglin"). Put it in
// Options.Users to let the agent call the API.
func AgentUser(name, password string) User {
	return User{UserName: userNameOf(name), Password: password, Name: name}
}

// agentRoutes registers the agent-only endpoints.
func (in *Instance) agentRoutes(api func(pattern string, h func(w http.ResponseWriter, r *http.Request, user string))) {
	api("POST /api/now/connect/support/queues/{queue}/accept", in.connect(in.handleAccept))
}

// asAgent sends a request on a chat path to agent when the caller is the
// chat's assigned agent, and to requester otherwise.
func (in *Instance) asAgent(requester, agent func(w http.ResponseWriter, r *http.Request, user string)) func(w http.ResponseWriter, r *http.Request, user string) {
	return func(w http.ResponseWriter, r *http.Request, user string) {
		in.mu.Lock()
		c, ok := in.chats[r.PathValue("group")]
		assigned := ok && c.assignedUser == user && c.OpenedBy != user
		in.mu.Unlock()
		if assigned {
			agent(w, r, user)
			return
		}
		requester(w, r, user)
	}
}

// agentName returns the caller's display name if the caller is an agent (its
// user name derives from it), else "".
func (in *Instance) agentName(user string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	name := in.displayName(user)
	if userNameOf(name) != user {
		return ""
	}
	return name
}

// handleAccept is POST .../queues/{queue}/accept: the agent takes the oldest
// waiting chat of the queue (or the waiting chat named by "group").
func (in *Instance) handleAccept(w http.ResponseWriter, r *http.Request, user string) {
	var body struct {
		Group string `json:"group"`
	}
	if r.ContentLength != 0 && !readJSON(w, r, &body) {
		return
	}
	name := in.agentName(user)
	if name == "" {
		writeError(w, http.StatusForbidden, "User is not a chat agent", "Only agents of the queue can accept chats")
		return
	}
	queue := r.PathValue("queue")
	in.mu.Lock()
	group := body.Group
	if group == "" {
		i := slices.IndexFunc(in.order, func(c *chat) bool { return c.Queue == queue && c.State == Waiting })
		if i >= 0 {
			group = in.order[i].Group
		}
	} else if c, ok := in.chats[group]; !ok || c.Queue != queue {
		group = ""
	}
	in.mu.Unlock()
	if group == "" {
		writeError(w, http.StatusNotFound, "No Record found", "No chat is waiting in the queue")
		return
	}
	if err := in.Accept(group, name); err != nil {
		agentError(w, err)
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	writeResult(w, http.StatusOK, in.entryJSON(in.chats[group]))
}

// handleAgentPost is POST .../conversations/{group}/messages by the chat's
// agent: Say.
func (in *Instance) handleAgentPost(w http.ResponseWriter, r *http.Request, user string) {
	var body struct {
		Message string `json:"message"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if strings.TrimSpace(body.Message) == "" {
		writeError(w, http.StatusBadRequest, "Message is required", "")
		return
	}
	m, err := in.Say(r.PathValue("group"), in.agentName(user), body.Message)
	if err != nil {
		agentError(w, err)
		return
	}
	writeResult(w, http.StatusOK, messageJSON(&m))
}

// handleAgentClose is POST .../sessions/{group}/close by the chat's agent:
// CloseChat ("<Agent> has closed the support session"), or LeaveChat with
// {"agent_leave": true}.
func (in *Instance) handleAgentClose(w http.ResponseWriter, r *http.Request, user string) {
	var body struct {
		AgentLeave bool `json:"agent_leave"`
	}
	if r.ContentLength != 0 && !readJSON(w, r, &body) {
		return
	}
	end := in.CloseChat
	if body.AgentLeave {
		end = in.LeaveChat
	}
	in.agentEnd(w, r, end)
}

// handleAgentLeave is POST .../sessions/{group}/leave by the chat's agent:
// LeaveChat ("<Agent> has left the support session").
func (in *Instance) handleAgentLeave(w http.ResponseWriter, r *http.Request, user string) {
	var body map[string]any
	if r.ContentLength != 0 && !readJSON(w, r, &body) {
		return
	}
	in.agentEnd(w, r, in.LeaveChat)
}

func (in *Instance) agentEnd(w http.ResponseWriter, r *http.Request, end func(group string) error) {
	group := r.PathValue("group")
	if err := end(group); err != nil {
		agentError(w, err)
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	writeResult(w, http.StatusOK, in.entryJSON(in.chats[group]))
}

// agentError maps the Go API's errors to answers.
func agentError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNoChat):
		notFound(w)
	case errors.Is(err, ErrChatClosed):
		writeError(w, http.StatusForbidden, "Conversation is closed", "The support session has ended; no new messages can be added.")
	case errors.Is(err, ErrNotWaiting):
		writeError(w, http.StatusConflict, "Chat is not waiting", err.Error())
	case errors.Is(err, ErrNotAccepted):
		writeError(w, http.StatusForbidden, "Chat is not accepted", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "Internal error", err.Error())
	}
}
