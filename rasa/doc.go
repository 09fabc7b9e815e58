// Package rasa is the bridge's adapter to a Rasa Open Source 3.x assistant. Its
// Client implements bridge.Bot over two of Rasa's HTTP interfaces:
//
//   - the REST input channel, POST {url}/webhooks/rest/webhook with
//     {"sender","message","metadata"}, answered with the list of bot messages
//     ({"recipient_id","text","buttons","image","attachment","custom"}, each key
//     present only when set). Rasa's collecting output channel splits a text
//     without buttons at blank lines ("\n\n") into several messages and sends a
//     response's custom payload, image and attachment as messages of their own;
//     the client returns them one BotReply each, in order.
//   - the HTTP API (rasa run --enable-api): GET /conversations/{id}/tracker and
//     POST /conversations/{id}/tracker/events, authenticated with ?token= when
//     Rasa runs with --auth-token.
//
// # Handoff signal
//
// A reply whose custom payload is a JSON object with a "handoff" object is the
// bot asking for a human, e.g. what rasa_sdk sends for
// dispatcher.utter_message(json_message={"handoff": {"reason": "user_asked"}}):
//
//	{"recipient_id": "a:1xYz", "custom": {"handoff": {"reason": "user_asked", "queue": "it-desk"}}}
//
// The reply's BotReply.Handoff is then set. A missing, empty or non-string reason
// becomes DefaultHandoffReason ("unspecified") so that every review record says
// something; a non-string queue becomes "" (the desk's default queue). A
// "handoff" value that is not an object (true, a string, null) is ignored with a
// warning: the contract is an object, and guessing would hide a broken action.
// See rasa/examples for a ready custom action that emits the payload.
//
// # Conversation ids in paths
//
// Rasa's HTTP API is served by Sanic, whose router does not percent-decode path
// parameters (routes are registered without unquote=True). A tracker is therefore
// stored under the id exactly as it appears in the raw request path, while the
// REST channel stores it under the JSON "sender" string. The client keeps the two
// equal by escaping only the characters that cannot appear raw in a URL path
// (space, '%', '?', '#', controls, non-ASCII, ...) and sending every RFC 3986
// path character, including ':', ';', '@', '=' and '/', unescaped. Teams ids
// ("a:1…", "19:…@thread.v2;messageid=…") contain only such characters.
//
// # Handback
//
// Handback appends, in this order and in one request,
//
//	[{"event":"slot","name":"handoff_active","value":false},
//	 {"event":"slot","name":"handoff_outcome","value":"<close reason>"},
//	 {"event":"resume"}]
//
// and for /restart a final {"event":"restart"}. The restart comes last on
// purpose: Rasa's restart event resets the whole tracker (slots, pause, active
// loop, latest message) and makes the next user message start a new session
// with action_session_start, exactly as after a /restart typed to Rasa. The
// slot and resume events before it are kept in the event history, so the outcome
// of the human stretch stays visible to event brokers and
// include_events=ALL readers. Putting restart first would leave slots set on a
// restarted tracker, which makes Rasa skip action_session_start on the next
// message (it only starts a session when no events follow the restart) — a
// state Rasa itself never produces. Appending the same events twice leaves the
// same state, so Handback is safe to retry.
//
// # Errors
//
// A non-2xx answer is a *bridge.StatusError (System "rasa") carrying Rasa's
// error envelope {"version","status":"failure","message","reason","details",
// "help","code"} message and reason (or Sanic's {"description","status",
// "message"} for routing errors). 401 and 403 also match bridge.ErrUnauthorized;
// other 4xx are bridge.Permanent, except 408, 409 (Rasa answers 409 "No agent
// loaded" while its model is still loading) and 429, which are retryable like
// 5xx and transport failures.
package rasa
