// Package slack is the Slack agent desk: each handoff is one parent message in
// a support channel (Block Kit, with Take and Close buttons) and its thread is
// the chat. The employee's messages are posted into the thread by the bot;
// the agents' replies arrive through the Events API (POST /webhooks/slack),
// the buttons through interactivity (POST /webhooks/slack/interactive), both
// signed with the app's signing secret.
//
// The desk chat id is "<channel id>:<thread_ts>": the parent message's ts,
// qualified by its channel so a reconfigured channel never confuses two
// threads. Slack's own keys make the relay exactly-once: a message is stored
// under its ts (the same in every retry of its event), an edit under the
// edited ts, and the bridge's posts carry message metadata with the bridge's
// key, so a retried post finds its earlier attempt in the thread.
package slack
