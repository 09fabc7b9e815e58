package teamstest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// serveCreateConversation answers Create Conversation (POST
// {ServiceURL}v3/conversations) for a new post in a channel, the documented
// way for a bot to post to a channel it is installed in (see
// testdata/create_conversation_channel.json): isGroup true, the channel in
// channelData.channel.id, the tenant, and the first activity. The activity
// is recorded as sent to the channel (Sent(channelID)) under the same limits
// and faults as a send to that conversation, and the answer is a
// ConversationResourceResponse: the new thread's conversation id
// ("<channel>;messageid=<id>") and the activity id. Other Create
// Conversation uses (a 1:1 chat with members) are not faked: 400.
func (c *Connector) serveCreateConversation(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		return
	}
	var p struct {
		IsGroup     bool            `json:"isGroup"`
		Members     []any           `json:"members"`
		TenantID    string          `json:"tenantId"`
		Activity    json.RawMessage `json:"activity"`
		ChannelData struct {
			Channel struct {
				ID string `json:"id"`
			} `json:"channel"`
			Tenant struct {
				ID string `json:"id"`
			} `json:"tenant"`
		} `json:"channelData"`
	}
	channel := ""
	if json.Unmarshal(body, &p) == nil {
		channel = p.ChannelData.Channel.ID
	}
	switch {
	case channel == "" || !p.IsGroup || len(p.Members) > 0:
		writeJSON(w, http.StatusBadRequest, errorBody("BadArgument", "The fake creates only channel posts: isGroup true and channelData.channel.id, no members."))
		return
	case !strings.HasPrefix(channel, "19:") || !strings.Contains(channel, "@thread.") || strings.Contains(channel, ";"):
		writeJSON(w, http.StatusBadRequest, errorBody("BadArgument", "Invalid channel id."))
		return
	}
	// The activity as a send to the channel would carry it, with the tenant
	// the app limits count by.
	var act map[string]any
	if json.Unmarshal(p.Activity, &act) != nil || act == nil {
		writeJSON(w, http.StatusBadRequest, errorBody("BadArgument", "Invalid activity."))
		return
	}
	tenant := p.ChannelData.Tenant.ID
	if tenant == "" {
		tenant = p.TenantID
	}
	act["conversation"] = map[string]any{"id": channel, "conversationType": "channel", "tenantId": tenant, "isGroup": true}
	actBody, _ := json.Marshal(act)
	status, hdr, resp := c.decide(r, channel, actBody, utf16Bytes(actBody))
	for k, v := range hdr {
		w.Header().Set(k, v)
	}
	w.Header().Set("X-Correlating-OperationId", randomString(8))
	if m, ok := resp.(map[string]string); ok && status == http.StatusCreated {
		writeJSON(w, status, map[string]string{"id": channel + ";messageid=" + m["id"], "activityId": m["id"]})
		return
	}
	switch resp := resp.(type) {
	case nil:
		w.WriteHeader(status)
	case rawBody:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, string(resp))
	default:
		writeJSON(w, status, resp)
	}
}
