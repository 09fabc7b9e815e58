#!/bin/sh
# End-to-end check of teams.Handler + teams.Client against Microsoft's own
# offline client, the Microsoft 365 Agents Playground (npm
# @microsoft/m365agentsplayground, pinned in playground_test.go). The test
# installs the pinned version with npm into a temporary directory (never
# vendored: its licence forbids redistribution), starts it headless
# (TEAMSAPPTESTER_BROWSER=none, --disable-telemetry, -c msteams) against an
# echo bot on 127.0.0.1 in anonymous dev mode, posts a user message and a
# card submit through the Playground's HTTP API and waits for the bot's
# replies on its WebSocket stream. Nothing goes to the internet except npm.
#
# Needs Go and Node.js 20+ with npm. Set HANDOFF_PLAYGROUND_BIN to an
# installed agentsplayground binary to skip the npm install.
set -eu
cd "$(dirname "$0")/../.."
HANDOFF_PLAYGROUND=1 exec go test -count=1 -v -run '^TestPlayground$' ./teams/playground/ "$@"
