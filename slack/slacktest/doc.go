// Package slacktest is a fake Slack for tests and the demo, built from
// Slack's documentation (not from the bridge's client): the Web API methods
// the desk uses (auth.test, chat.postMessage, chat.update,
// conversations.replies, conversations.history, users.info) with Slack's
// envelope and errors (channel_not_found, not_in_channel, invalid_auth, and
// ratelimited as HTTP 429 with Retry-After), an Events API sender that signs
// like Slack and retries like Slack (X-Slack-Retry-Num, X-Slack-Retry-Reason),
// and interactivity payloads for message buttons. The documented example
// payloads in ../testdata are checked against what the fake sends and answers
// (slacktest_test.go).
package slacktest
