// Package rasatest is a scripted fake Rasa 3.x server for tests, benchmarks and
// the demo, in the manner of net/http/httptest.
//
//	srv := rasatest.New(rasatest.Options{Token: "s3cret"})
//	defer srv.Close()
//	client, _ := rasa.New(rasa.Config{URL: srv.URL(), Token: "s3cret"})
//
// It speaks the wire protocol the way Rasa does (see rasa/server.py and
// rasa/core/channels in Rasa's source):
//
//   - POST /webhooks/rest/webhook {"sender","message","metadata"} answers the
//     list of bot messages, split like Rasa's collecting output channel (a text
//     at blank lines, the custom payload, image and attachment separately).
//     The REST channel is not token-protected; a missing sender is "default";
//     a body that is not JSON is Sanic's 400, a JSON body that is not an object
//     Sanic's 500; a missing or non-string message is answered [] and not
//     recorded. Rasa does not check the Content-Type, and neither does the fake.
//   - GET /conversations/{id}/tracker and POST /conversations/{id}/tracker/events
//     (one event or a list; include_events=NONE|APPLIED|AFTER_RESTART|ALL,
//     default AFTER_RESTART) with ?token= auth when Options.Token is set (401
//     with Rasa's envelope otherwise), event validation like Rasa's
//     EVENTS_SCHEMA (400 with the envelope), and Rasa's behaviour for unknown
//     conversations: GET answers a fresh tracker holding the session-start
//     events (action_session_start, session_started, action_listen) without
//     storing them, and appending to a new tracker starts a session first.
//   - GET /, /version, /status (token-protected) and /webhooks/rest/.
//
// The id in a tracker path is taken raw, without percent-decoding, as Sanic
// does; a client must therefore not escape characters Rasa would see
// differently from the REST channel's "sender".
//
// Per conversation the fake records Rasa's events: user (with parse_data:
// intent, confidence, intent_ranking), user_featurization, action, bot (text
// and data), slot, active_loop, and whatever is appended (slot, pause, resume,
// restart, ...), and applies them: slots (only those the script declares),
// paused (a paused tracker logs user messages but answers nothing), restart
// (resets the state; the next message starts a new session), active loop.
// Session expiry is not modelled.
//
// The bot itself is a Script (DefaultScript is a small IT helpdesk; see Script
// for the rules, the handoff signal and the fallback counting). FailNext and
// SetLatency inject faults; Stats, Calls, Tracker and Events expose what
// happened.
package rasatest
