// Package recorded holds ServiceNow request and response payloads written from
// ServiceNow's own documented examples (the REST API reference, the Virtual
// Agent Bot Integration API page, the OAuth and rate-limiting pages; see
// reference/servicenow.md). The client's tests parse them and the fake
// instance (servicenow/snowtest) answers in their shape, so the client and the
// fake cannot agree on a shape the real service does not send.
//
// Each file's "source" field says where it came from:
//
//   - error_400.json, ratelimit_429.json, oauth_token.json: the REST API
//     reference (status codes, error envelope), inbound REST rate limiting,
//     the OAuth token endpoint.
//   - table_live_message_page.json, table_chat_queue_entry_page.json: Table
//     API pages (c_TableAPI.md) of the two tables the Connect desk's batch
//     poll reads, with exactly its query and fields. Connect Support's own
//     REST endpoints are undocumented, but these tables are: live_message is
//     "Live Feed Message [live_message]", chat_queue_entry extends Task (whose
//     fields r_ImportantTaskTableFields.md documents); group, queue and
//     position and the state choices are what ServiceNow's Connect UI reads.
//   - attachment_live_message.json: the Attachment API (c_AttachmentAPI.md),
//     the metadata of a file on a live_message row.
//   - va_agent_request.json, va_agent_callback.json, va_spinner_callback.json,
//     va_agent_file_callback.json, va_error.json: the Virtual Agent Bot
//     Integration API (bot-api.md): the AGENT request, an agent's text, files
//     and the wait-time spinner in the asynchronous callback, the error
//     envelope.
//   - connect_queues.json, connect_open.json, connect_queue_unavailable.json,
//     connect_sessions.json, connect_messages.json, connect_post.json:
//     Connect Support's REST API, which ServiceNow does not document. These
//     hold the fields ServiceNow's own Connect web client reads
//     (factory.Message.js, factory.queueEntry.js, service.messages.js; see
//     reference/servicenow.md §1) with illustrative values, not captures of
//     a real instance.
//
// (They live in a package of their own rather than in servicenow/testdata,
// because the fake is a package of its own that must embed them too.)
package recorded

import (
	"embed"
	"encoding/json"
	"fmt"
)

//go:embed *.json
var files embed.FS

// Exchange is one recorded HTTP exchange: what was sent (Request, a JSON body,
// nil if none) and what came back.
type Exchange struct {
	Source  string            `json:"source"` // where the example comes from
	Method  string            `json:"method,omitempty"`
	Path    string            `json:"path,omitempty"`
	Request json.RawMessage   `json:"request,omitempty"`
	Status  int               `json:"status"`
	Header  map[string]string `json:"header,omitempty"`
	Body    json.RawMessage   `json:"body"`
}

// Load returns the exchange in name (e.g. "ratelimit_429.json"). It panics on
// a name that does not exist or does not parse: both are programming errors.
func Load(name string) Exchange {
	raw, err := files.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("recorded: %v", err))
	}
	var x Exchange
	if err := json.Unmarshal(raw, &x); err != nil {
		panic(fmt.Sprintf("recorded: %s: %v", name, err))
	}
	return x
}

// Names lists the recorded exchanges.
func Names() []string {
	entries, _ := files.ReadDir(".")
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
