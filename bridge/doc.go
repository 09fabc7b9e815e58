// Package bridge is the domain core of the handoff service: the session state
// machine, the message and conversation types, the use cases that relay an
// employee's Teams conversation between the bot (Rasa) and a human agent
// (ServiceNow), and the interfaces those outside systems are reached through.
//
// bridge imports only the standard library and robfig/cron. Adapters (teams,
// servicenow, rasa, review, bridge/store) depend on bridge, never on each other.
//
// The durability rules are simple and strict:
//
//   - Persist, then act: an inbound message is stored under a unique
//     (session, source, external id) key before anything is sent onward, so a
//     duplicate delivery is a no-op.
//   - Every outward call is an outbox row written in the same transaction as the
//     state change that caused it, and dispatched with retries. Rows of one lane
//     (conversation + destination) are dispatched strictly in order.
//   - Agent messages are fetched with a ">=" timestamp cursor and de-duplicated by
//     their ServiceNow sys_id; the cursor advances in the same transaction that
//     stores them.
package bridge
