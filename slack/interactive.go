package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

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
	res := h.interaction(r.Context(), []byte(form.Get("payload")))
	if res.err != nil {
		http.Error(w, res.err.Error(), res.status)
		return
	}
	w.WriteHeader(res.status)
	h.finish(r.Context(), w, res)
}

// interaction stores an interactivity payload (the same for an HTTP request
// and a Socket Mode envelope).
func (h *Handler) interaction(ctx context.Context, payload []byte) received {
	var in interaction
	if err := json.Unmarshal(payload, &in); err != nil {
		return received{status: http.StatusBadRequest, err: fmt.Errorf("payload is not a JSON object: %w", err)}
	}
	if in.Type != "block_actions" || in.Container.ChannelID != h.desk.Channel() || in.Container.MessageTS == "" {
		return received{status: http.StatusOK}
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
		return received{status: http.StatusOK}
	}
	res := received{status: h.store(ctx, chat, evs)}
	if res.status != http.StatusOK || !took || in.Message == nil {
		return res
	}
	h.taken.first(chat) // a later reply need not read the parent
	blocks := in.Message.Blocks
	res.after = func(ctx context.Context) {
		if err := h.desk.markTaken(ctx, chat, blocks, name); err != nil {
			h.log.WarnContext(ctx, "the parent message still shows Take; the handoff is taken anyway", "chat_id", chat, "err", err)
		}
	}
	return res
}
