package slack

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// ServeInteractive receives the interactivity payloads of the parent
// message's buttons (block_actions): Take moves the session live and tells
// the employee who took it; Close ends it as agent_closed. After a Take is
// stored and answered, the parent message is updated to name the agent
// (best effort, bounded, inside the request so shutdown waits for it).
func (h *Handler) ServeInteractive(w http.ResponseWriter, r *http.Request) {
	body, ok := h.read(w, r)
	if !ok {
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("payload") == "" {
		http.Error(w, "expected a form with a payload field", http.StatusBadRequest)
		return
	}
	var in interaction
	if err := json.Unmarshal([]byte(form.Get("payload")), &in); err != nil {
		http.Error(w, "payload is not a JSON object: "+err.Error(), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	if in.Type != "block_actions" || in.Container.ChannelID != h.desk.Channel() || in.Container.MessageTS == "" {
		w.WriteHeader(http.StatusOK)
		return
	}
	chat := ChatID(in.Container.ChannelID, in.Container.MessageTS)
	name := ""
	var (
		evs  []bridge.AgentEvent
		took bool
	)
	for _, a := range in.Actions {
		if a.ActionID != actionTake && a.ActionID != actionClose {
			continue
		}
		if name == "" {
			name = h.desk.DisplayName(ctx, in.User.ID)
			if name == in.User.ID && in.User.Name != "" {
				name = in.User.Name
			}
		}
		at, err := parseTS(a.ActionTS)
		if err != nil {
			at = h.now().UTC()
		}
		switch a.ActionID {
		case actionTake:
			evs = append(evs, bridge.AgentEvent{Kind: bridge.AgentJoined, Chat: chat, Author: name, At: at},
				joinedLine(chat, name, at))
			took = true
		case actionClose:
			evs = append(evs, bridge.AgentEvent{Kind: bridge.AgentEnded, Chat: chat, Author: name, At: at, EndReason: bridge.ReasonAgentClosed})
		}
	}
	if len(evs) == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}
	code := h.store(ctx, chat, evs)
	w.WriteHeader(code)
	if code != http.StatusOK || !took || in.Message == nil {
		return
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := h.desk.markTaken(uctx, chat, in.Message.Blocks, name); err != nil {
		h.log.WarnContext(ctx, "the parent message still shows Take; the handoff is taken anyway", "chat_id", chat, "err", err)
	}
	if h.afterTake != nil {
		h.afterTake()
	}
}
