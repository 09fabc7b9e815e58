// Package servicenow is the bridge's adapter for ServiceNow live chat through
// the Connect Support REST API (/api/now/connect/...), the undocumented API of
// the Connect UI that the seed users run. Client implements bridge.AgentDesk
// (open, send, leave), bridge.AgentFeed (Poll: one chat's messages since a
// cursor) and bridge.BatchAgentFeed (PollMany: many chats through the Table
// API with a handful of requests).
//
// Agent messages can also arrive by webhook: WebhookHandler receives what the
// Business Rules in businessrule/ POST for every new live_message row and for
// every bridge chat whose chat_queue_entry closes (HMAC-SHA256 or Basic auth,
// replay protection, per-chat reordering), producing the same events as
// polling.
//
// VAClient is the second desk, on the Virtual Agent Bot Integration API for
// Agent Workspace; it implements bridge.AgentDesk, bridge.DeskTyping and
// bridge.DeskReceipts, and its callbacks arrive at VAWebhookHandler (secret
// header plus a per-chat nonce echoed in clientVariables). The nonce and the
// employee's e-mail are the VA desk's own data (bridge.DeskChat.Data), stored
// with the session, so the client keeps no state of its own.
//
// Connect Support is deprecated since Utah; CheckQueue fails fast at startup
// when an instance does not offer it. Wire facts (fields, states, texts) are in
// reference/servicenow.md; servicenow/snowtest is a fake instance that
// reproduces them for tests and the demo.
//
// Both desks share one HTTP transport (transport.go): Basic or OAuth auth
// (the token is renewed in the background, never under a lock held across the
// request), retries with capped exponential backoff and jitter on connection
// errors and 5xx, but only where a retry cannot create a duplicate: reads and
// leave always, a message post after counting the bridge's own messages in the
// chat against bridge.DeskMessage.Confirmed (giving a timed-out post
// Config.CommitWait to appear), and
// opening a chat after checking for an open chat carrying the session's
// marker. A throttle answer (429, 503 with Retry-After, or a failure carrying
// ServiceNow's X-RateLimit headers with Retry-After) is never retried inside
// the call: it ends the call with a *bridge.ThrottledError naming when to try
// again, so the dispatcher and the poller wait without spending an attempt.
package servicenow
