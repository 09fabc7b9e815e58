// Package teams connects the bridge to Microsoft Teams through the Bot
// Framework: Handler receives and authenticates the activities Teams posts to
// /api/messages, and Client sends messages back through the Bot Connector.
//
// Only the wire types of github.com/infracloudio/msbotbuilder-go/schema are
// used; authentication, transport, retries and pacing are implemented here
// (see shared/reference/botframework.md for why).
//
// Every Microsoft endpoint is configurable, so tests and the demo run against
// the fakes in teams/teamstest.
package teams
