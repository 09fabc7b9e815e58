package main

import (
	"github.com/handoffhq/handoff/teams"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// shown is the message of an activity the bridge sent to Teams, without the
// agent's name line or the notice mark the Teams client adds.
func shown(s teamstest.Sent) string {
	_, body, _ := teams.ReadMessage(s.Text)
	return body
}
