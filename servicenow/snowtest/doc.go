// Package snowtest is a fake ServiceNow instance for tests, benchmarks and the
// demo, in the manner of net/http/httptest. It serves the Connect Support REST
// endpoints, a subset of the Table API over live_message and chat_queue_entry,
// and POST /oauth_token.do, with the wire behaviour described in
// reference/servicenow.md: the {"result": …} and error envelopes, Basic and
// Bearer auth (401 otherwise), newest-first message pages of 30 with
// ?before=, the bridge's own messages echoed back, queue-entry states
// 1/2/3/4/7/8, and a per-user rate limit answering 429 with Retry-After.
//
// Agents are scripted through the Go API (Accept, Say, CloseChat, LeaveChat,
// Transfer, SetState); everything can be inspected (Chats, Messages,
// WaitingChats, Queues, Requests) and the clock that stamps messages can be
// frozen and moved (SetNow, Advance). Faults (5xx, latency, dropped
// connections, before or after the request took effect) are injected with
// InjectFault. All methods are safe for concurrent use, so a browser console
// can drive agents while tests or the bridge talk to the instance.
//
// Outgoing calls: EnableWebhooks runs the live_message Business Rule (every
// new message POSTed, signed like the shipped script), EnableVA the Virtual
// Agent Bot Integration API with its callbacks; SetDeliveryFaults injects
// latency, duplicates, reordering and drops into both, and Deliveries and
// WaitDeliveries inspect them.
package snowtest
