package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/slack"
)

// slackDesk builds the Slack desk (HANDOFF_DESK=slack) and checks its token
// with auth.test: a rejected token stops the start, a network failure only
// warns (chats are retried).
func (a *app) slackDesk(ctx context.Context, hc *http.Client) (*slack.Client, error) {
	cfg, log := a.cfg, a.log
	sc, err := slack.New(slack.Config{Token: cfg.SlackToken, Channel: cfg.SlackChannel, APIURL: cfg.SlackAPIURL,
		TranscriptTurns: cfg.TranscriptTurns, HTTPClient: hc, Logger: log.With("system", "slack")})
	if err != nil {
		return nil, fmt.Errorf("configure slack desk (HANDOFF_SLACK_*): %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch _, err := sc.AuthTest(cctx); {
	case err == nil:
	case bridge.IsPermanent(err):
		return nil, fmt.Errorf("check HANDOFF_SLACK_BOT_TOKEN with auth.test: %w", err)
	default:
		log.Warn("slack auth.test failed; starting anyway, chats will be retried", "err", err)
	}
	return sc, nil
}

// wireSlackEvents sets up how Slack reaches the bridge: the Events API and
// interactivity receivers (HANDOFF_SLACK_MODE=events), or a Socket Mode
// connection in the loop table (socket). Both feed the same receive path;
// agent replies and button presses arrive by push, so nothing polls.
func (a *app) wireSlackEvents(relay *bridge.Relay, sc *slack.Client) error {
	cfg := a.cfg
	window := cfg.SlackOrderWindow
	if window == 0 {
		window = -1 // 0s: no holding
	}
	log := a.log.With("system", "slack")
	h, err := slack.NewHandler(slack.HandlerConfig{SigningSecret: cfg.SlackSigningSecret, SocketOnly: cfg.SlackMode == "socket",
		OrderWindow: window, MaxBody: cfg.MaxBody, Logger: log}, sc, relay, relay)
	if err != nil {
		return fmt.Errorf("configure the slack endpoints (HANDOFF_SLACK_SIGNING_SECRET): %w", err)
	}
	if cfg.SlackMode == "socket" {
		sock, err := slack.NewSocket(slack.SocketConfig{AppToken: cfg.SlackAppToken, MaxMessage: cfg.MaxBody, Logger: log}, h)
		if err != nil {
			return fmt.Errorf("configure slack socket mode (HANDOFF_SLACK_APP_TOKEN): %w", err)
		}
		// Every replica keeps its own connection: Slack spreads envelopes
		// over an app's connections (up to 10).
		a.loops = append(a.loops, loop{name: "slack-socket", stage: stageJobs, run: sock.Run})
		a.parts.slackSocket = sock
		a.log.Info("agent messages arrive by slack socket mode (no public URL needed)")
		return nil
	}
	a.mux.HandleFunc("POST /webhooks/slack", h.ServeEvents)
	a.mux.HandleFunc("POST /webhooks/slack/interactive", h.ServeInteractive)
	a.log.Info("agent messages arrive by slack events", "events", "/webhooks/slack", "interactivity", "/webhooks/slack/interactive")
	return nil
}
