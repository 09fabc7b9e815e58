package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/rasa"
	"github.com/handoffhq/handoff/review"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/slack"
	"github.com/handoffhq/handoff/teams"
)

// parts are the wired components, kept for tests and the demo.
type parts struct {
	relay       *bridge.Relay
	dispatcher  *bridge.Dispatcher
	poller      *bridge.Poller
	desk        bridge.AgentDesk
	webhook     *servicenow.WebhookHandler // connect webhooks (webhook and hybrid delivery)
	weekly      *review.Weekly
	digest      *review.Digest // nil unless HANDOFF_REVIEW_TEAMS_CHANNEL is set
	teams       *teams.Client
	exporter    *review.Exporter
	slackSocket *slack.Socket // the slack desk in socket mode
}

// endPhrases parses HANDOFF_SERVICENOW_END_PHRASES entries "text" or
// "text=reason" (reason agent_closed or agent_left; default agent_closed).
func endPhrases(list []string) ([]servicenow.EndPhrase, error) {
	var out []servicenow.EndPhrase
	for _, e := range list {
		text, reason, ok := strings.Cut(e, "=")
		r := bridge.ReasonAgentClosed
		if ok {
			r = bridge.CloseReason(strings.TrimSpace(reason))
			if r != bridge.ReasonAgentClosed && r != bridge.ReasonAgentLeft {
				return nil, &ConfigError{Name: "HANDOFF_SERVICENOW_END_PHRASES", Msg: fmt.Sprintf("entry %q: reason must be agent_closed or agent_left", e)}
			}
		}
		if text = strings.TrimSpace(text); text != "" {
			out = append(out, servicenow.EndPhrase{Text: text, Reason: r})
		}
	}
	return out, nil
}

// wire builds the adapters, the relay and its loops from the configuration
// and mounts the bridge's routes.
func (a *app) wire(ctx context.Context, ov *overrides) error {
	cfg, log := a.cfg, a.log
	var hc *http.Client
	if ov != nil {
		hc = ov.httpClient
	}
	// Outbound requests are counted per system (handoff_outbound_requests_total).
	snHC := a.metrics.relay.outboundClient(hc, "servicenow", 0, cleanhttp.DefaultPooledTransport())

	bot, err := rasa.New(rasa.Config{URL: cfg.RasaURL, Token: cfg.RasaToken, Timeout: cfg.RasaTimeout,
		SlotHandoffActive: cfg.RasaSlotActive, SlotOutcome: cfg.RasaSlotOutcome, HTTPClient: a.metrics.relay.outboundClient(hc, "rasa", cfg.RasaTimeout, nil), Logger: log.With("system", "rasa")})
	if err != nil {
		return fmt.Errorf("configure rasa (HANDOFF_RASA_*): %w", err)
	}

	phrases, err := endPhrases(cfg.SNEndPhrases)
	if err != nil {
		return err
	}
	snCfg := servicenow.Config{InstanceURL: cfg.SNURL, Username: cfg.SNUser, Password: cfg.SNPassword,
		Queue: cfg.SNQueue, BridgeUser: cfg.SNUser, EndPhrases: phrases, Timeout: cfg.SNTimeout, CommitWait: cfg.SNCommitWait,
		MaxRetries: snRetries(cfg.SNMaxRetries), TranscriptTurns: cfg.TranscriptTurns, HTTPClient: snHC, Logger: log.With("system", "servicenow")}
	switch cfg.SNAuth {
	case "oauth-password":
		snCfg.OAuth = &servicenow.OAuth{GrantType: servicenow.GrantPassword, ClientID: cfg.SNClientID, ClientSecret: cfg.SNClientSecret}
	case "oauth-client":
		snCfg.OAuth = &servicenow.OAuth{GrantType: servicenow.GrantClientCredentials, ClientID: cfg.SNClientID, ClientSecret: cfg.SNClientSecret}
	}
	var (
		desk bridge.AgentDesk
		sn   *servicenow.Client   // the connect desk (and the poller's feed)
		va   *servicenow.VAClient // the va desk
		sl   *slack.Client        // the slack desk
	)
	switch cfg.Desk {
	case "slack":
		if sl, err = a.slackDesk(ctx, hc); err != nil {
			return err
		}
		desk = sl
	case "va":
		va, err = servicenow.NewVA(servicenow.VAConfig{InstanceURL: cfg.SNURL, Username: cfg.SNUser, Password: cfg.SNPassword,
			OAuth: snCfg.OAuth, Token: cfg.VAToken, Secret: cfg.VASecret, NonceKey: cfg.VACallbackSecret, Queue: cfg.SNQueue, TranscriptTurns: cfg.TranscriptTurns,
			Timeout: cfg.SNTimeout, MaxRetries: snRetries(cfg.SNMaxRetries), HTTPClient: snHC, Logger: log.With("system", "servicenow-va")})
		if err != nil {
			return fmt.Errorf("configure servicenow va desk (HANDOFF_SERVICENOW_*, HANDOFF_VA_*): %w", err)
		}
		desk = va
		a.loops = append(a.loops, loop{name: "servicenow-va-client", stage: stageClients, run: va.Run})
	default:
		sn, err = servicenow.New(snCfg)
		if err != nil {
			return fmt.Errorf("configure servicenow (HANDOFF_SERVICENOW_*): %w", err)
		}
		desk = sn
		a.loops = append(a.loops, loop{name: "servicenow-client", stage: stageClients, run: sn.Run})
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := sn.CheckQueue(cctx)
		cancel()
		switch {
		case err == nil:
		case bridge.IsPermanent(err) || httpStatusOf(err)/100 == 4:
			return fmt.Errorf("check HANDOFF_SERVICENOW_QUEUE on %s: %w", cfg.SNURL, err)
		default:
			log.Warn("servicenow queue check failed; starting anyway, chats will be retried", "err", err)
		}
	}

	user, err := teams.NewClient(teams.ClientConfig{AppID: cfg.TeamsAppID, AppPassword: cfg.TeamsAppPassword,
		TenantID: cfg.TeamsTenantID, MultiTenant: cfg.TeamsMultiTenant, TokenURL: cfg.TeamsTokenURL,
		ExtraServiceURLHosts: cfg.TeamsAllowedHosts, AnonymousDev: cfg.TeamsAnonymousDev, HTTPClient: a.metrics.relay.outboundClient(hc, "teams", 0, nil)}, log.With("system", "teams"))
	if err != nil {
		return fmt.Errorf("configure teams client (HANDOFF_TEAMS_*): %w", err)
	}

	rec, err := review.NewRecorder(review.RecorderConfig{Salt: cfg.ReviewSalt, LastTurns: cfg.ReviewLastTurns,
		DisableRedaction: !cfg.ReviewRedact, ExtraPatterns: cfg.ReviewPatterns, LabelPrefix: cfg.ReviewLabelPrefix}, log.With("system", "review"))
	if err != nil {
		return fmt.Errorf("configure review (HANDOFF_REVIEW_*): %w", err)
	}

	relay := bridge.NewRelay(a.relayStore(ov), bot, desk, user, rec, bridge.RelayConfig{TranscriptTurns: cfg.TranscriptTurns, Observer: a.metrics.relay,
		QueueTimeout: cfg.QueueTimeout, IdleTimeout: cfg.IdleTimeout, CSAT: bridge.CSATConfig{Expiry: cfg.CSATExpiry},
		Texts: cfg.Texts.English, Locales: cfg.Texts.Locales, Logger: log.With("component", "relay")})
	disp := bridge.NewDispatcher(relay, bridge.DispatchConfig{Workers: cfg.DispatchWorkers,
		MaxAttempts: cfg.DispatchMaxAttempts, FailureBudget: cfg.RelayFailureBudget, BaseBackoff: cfg.DispatchBackoff,
		Lease: cfg.DispatchLease, CallTimeout: cfg.DispatchLease * 2 / 3, StopTimeout: cfg.ShutdownTimeout / 4})
	a.parts.relay, a.parts.dispatcher, a.parts.desk, a.parts.teams = relay, disp, desk, user

	inbound, err := teams.NewHandler(teams.HandlerConfig{AppID: cfg.TeamsAppID, OpenIDMetadataURL: cfg.TeamsOpenIDURL,
		Issuer: cfg.TeamsIssuer, AnonymousDev: cfg.TeamsAnonymousDev, ListenAddr: cfg.Addr, HTTPClient: hc,
		MaxBody: cfg.MaxBody, ExtraServiceURLHosts: cfg.TeamsAllowedHosts}, relay, log.With("system", "teams"))
	if err != nil {
		return fmt.Errorf("configure teams endpoint (HANDOFF_TEAMS_*): %w", err)
	}
	a.mux.Handle("POST /api/messages", inbound)
	// Every replica keeps its own copy of the Teams signing keys fresh.
	a.loops = append(a.loops, loop{name: "teams-keys", stage: stageJobs, run: inbound.Run})

	a.loops = append(a.loops, loop{name: "dispatcher", stage: stageDispatch,
		run: disp.Run})

	leader, err := bridge.NewLeader(a.store, bridge.LeaderConfig{Holder: leaseHolder(), TTL: cfg.LeaderLease,
		Logger: log.With("component", "leader")})
	if err != nil {
		return fmt.Errorf("configure job leases (HANDOFF_LEADER_LEASE): %w", err)
	}
	a.leader = leader
	a.loops = append(a.loops, loop{name: "leader", stage: stageLeader, run: leader.Run})

	if sl != nil {
		err = a.wireSlackEvents(relay, sl)
	} else {
		err = a.wireDelivery(relay, sn, phrases)
	}
	if err != nil {
		return err
	}

	sweeper := bridge.NewSweeper(relay, bridge.SweeperConfig{Lease: leader.Job(jobSweeper), Logger: log.With("component", "sweeper")})
	a.loops = append(a.loops, loop{name: "sweeper", stage: stageJobs, run: sweeper.Run})

	if err := a.wireReview(); err != nil {
		return err
	}
	a.metrics.reg.MustRegister(&bridgeCollector{store: a.store, disp: disp, poller: a.parts.poller,
		oldest: a.store.OldestPendingOutbox, now: time.Now, leads: func() bool { return a.leads(jobSweeper) }}, leaderCollector{leader})
	return nil
}

// wireDelivery sets up how agent messages reach the bridge:
//
//	poll    the poller every HANDOFF_POLL_INTERVAL (connect desk only)
//	webhook POST /webhooks/servicenow (connect desk: the Business Rule) or
//	        POST /webhooks/servicenow/va (va desk: the Virtual Agent callbacks)
//	hybrid  the connect webhook plus a reconciling poll every
//	        HANDOFF_RECONCILE_INTERVAL that recovers what a lost webhook missed
//	        (duplicates are dropped by sys_id, so both paths may deliver)
func (a *app) wireDelivery(relay *bridge.Relay, sn *servicenow.Client, phrases []servicenow.EndPhrase) error {
	cfg, log := a.cfg, a.log
	if cfg.Desk == "va" {
		h, err := servicenow.NewVAWebhookHandler(servicenow.VAWebhookConfig{Header: cfg.VACallbackHeader, Secret: cfg.VACallbackSecret,
			EndPhrases: phrases, Logger: log.With("system", "servicenow-va")}, relay, relay)
		if err != nil {
			return fmt.Errorf("configure the va callback endpoint (HANDOFF_VA_CALLBACK_*): %w", err)
		}
		a.mux.Handle("POST /webhooks/servicenow/va", h)
		a.loops = append(a.loops, loop{name: "va-callback-sequencer", stage: stageJobs, run: h.Run})
		log.Info("agent messages arrive by virtual agent callbacks", "path", "/webhooks/servicenow/va")
		return nil
	}
	if cfg.Delivery == "webhook" || cfg.Delivery == "hybrid" {
		window := cfg.WebhookOrderWindow
		if window == 0 {
			window = -1 // 0s: no holding
		}
		h, err := servicenow.NewWebhookHandler(servicenow.WebhookConfig{Secret: cfg.WebhookSecret, Username: cfg.WebhookUser,
			Password: cfg.WebhookPassword, BridgeUser: cfg.SNUser, EndPhrases: phrases, OrderWindow: window, Sessions: relay, Stored: relay, Desk: sn,
			Logger: log.With("system", "servicenow-webhook")}, relay)
		if err != nil {
			return fmt.Errorf("configure the servicenow webhook (HANDOFF_WEBHOOK_*): %w", err)
		}
		a.mux.Handle("POST /webhooks/servicenow", h)
		a.parts.webhook = h
		a.loops = append(a.loops, loop{name: "webhook-sequencer", stage: stageJobs, run: h.Run})
	}
	if cfg.Delivery == "webhook" {
		log.Info("agent messages arrive by webhook only", "path", "/webhooks/servicenow")
		return nil
	}
	pc := bridge.PollerConfig{Targets: relay, Sink: relay, Throttle: relay, Interval: cfg.PollInterval, Lease: a.leader.Job(jobPoller),
		Logger: log.With("component", "poller")}
	if cfg.Delivery == "hybrid" {
		pc.Interval = cfg.ReconcileInterval
	}
	if cfg.PollBatch {
		pc.Batch = sn
	} else {
		pc.Feed = sn
	}
	poller, err := bridge.NewPoller(pc)
	if err != nil {
		return fmt.Errorf("configure poller (HANDOFF_POLL_*): %w", err)
	}
	a.parts.poller = poller
	a.loops = append(a.loops, loop{name: "poller", stage: stageJobs, run: poller.Run})
	return nil
}

// wireReview mounts the export endpoint and schedules the weekly job.
func (a *app) wireReview() error {
	cfg := a.cfg
	loc, _ := time.LoadLocation(cfg.ReviewTimezone) // validated when parsed
	exp, err := review.NewExporter(review.ExportConfig{DisableRedaction: !cfg.ReviewRedact, ExtraPatterns: cfg.ReviewPatterns,
		LowConfidence: cfg.ReviewLowConfidence, Location: loc}, a.log.With("system", "review"))
	if err != nil {
		return fmt.Errorf("configure review exports (HANDOFF_REVIEW_*): %w", err)
	}
	a.parts.exporter = exp
	if cfg.ReviewToken != "" {
		a.mux.Handle("GET /review/export", review.Handler(a.store, cfg.ReviewToken, exp, a.log.With("system", "review")))
		inbox, err := review.NewInbox(a.store, review.InboxConfig{Token: cfg.ReviewToken, Exporter: exp, Logger: a.log.With("system", "review-inbox")})
		if err != nil {
			return fmt.Errorf("configure the review inbox (HANDOFF_REVIEW_TOKEN): %w", err)
		}
		for _, p := range inbox.Patterns() {
			a.mux.Handle(p, inbox)
		}
	}
	if err := os.MkdirAll(cfg.ReviewDir, 0o750); err != nil {
		return fmt.Errorf("create HANDOFF_REVIEW_DIR %s: %w", cfg.ReviewDir, err)
	}
	w, err := review.NewWeekly(review.WeeklyConfig{Dir: cfg.ReviewDir, Schedule: cfg.ReviewSchedule, Location: loc,
		MaxAge: cfg.ReviewRetention, MessageMaxAge: cfg.MessageRetention, Lease: a.leader.Job(jobWeekly)}, a.store, a.store, exp, a.log.With("component", "review-weekly"))
	if err != nil {
		return fmt.Errorf("configure weekly review export (HANDOFF_REVIEW_SCHEDULE, HANDOFF_REVIEW_DIR): %w", err)
	}
	a.parts.weekly = w
	a.loops = append(a.loops, loop{name: "review-weekly", stage: stageJobs, run: w.Run})
	return a.wireDigest(exp, loc)
}

// wireDigest schedules the weekly digest to a Teams channel when
// HANDOFF_REVIEW_TEAMS_CHANNEL is set. It runs on every replica: the
// digest's row per ISO week, not a job lease, makes it one post per week.
func (a *app) wireDigest(exp *review.Exporter, loc *time.Location) error {
	cfg := a.cfg
	if cfg.ReviewTeamsChannel == "" {
		return nil
	}
	tenant := cfg.ReviewTeamsTenant
	if tenant == "" {
		tenant = cfg.TeamsTenantID
	}
	ch := teams.ChannelRef{ChannelID: cfg.ReviewTeamsChannel, ServiceURL: cfg.ReviewTeamsService, TenantID: tenant}
	if cfg.TeamsAppID != "" {
		ch.BotID = "28:" + cfg.TeamsAppID
	}
	inbox := ""
	if cfg.ReviewToken != "" {
		inbox = cfg.PublicURL + review.DefaultInboxPath
	} else {
		a.log.Warn("the weekly digest links to no inbox: HANDOFF_REVIEW_TOKEN is empty, so /review is off")
	}
	d, err := review.NewDigest(review.DigestConfig{Schedule: cfg.ReviewSchedule, Location: loc, InboxURL: inbox, Holder: leaseHolder()},
		a.store, a.store, channelDigest{client: a.parts.teams, ch: ch}, exp, a.log.With("component", "review-digest"))
	if err != nil {
		return fmt.Errorf("configure the weekly digest (HANDOFF_REVIEW_TEAMS_CHANNEL, HANDOFF_PUBLIC_URL): %w", err)
	}
	a.parts.digest = d
	a.loops = append(a.loops, loop{name: "review-digest", stage: stageJobs, run: d.Run})
	return nil
}

// channelDigest posts the weekly digest to the configured Teams channel.
type channelDigest struct {
	client *teams.Client
	ch     teams.ChannelRef
}

func (d channelDigest) PostDigest(ctx context.Context, card bridge.Card) (string, error) {
	return d.client.PostToChannel(ctx, d.ch, card)
}

// snRetries maps the setting (0 = no retries) to the client's convention
// (0 = default, negative = none).
func snRetries(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func httpStatusOf(err error) int {
	var se *bridge.StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// bridgeCollector exports the relay's counters and the outbox backlog.
type bridgeCollector struct {
	store interface {
		View(ctx context.Context, fn func(tx bridge.Tx) error) error
	}
	disp   *bridge.Dispatcher
	poller *bridge.Poller
	// oldest is when the oldest pending outbox item was created (zero: none).
	oldest func(ctx context.Context) (time.Time, error)
	now    func() time.Time
	// leads reports whether this replica exports the gauges read from the
	// shared database (sessions, outbox items, outbox age), so that summing
	// them across replicas is right; nil means a single process.
	leads func() bool
}

var (
	descOutbox    = prometheus.NewDesc("handoff_outbox_items", "Outbox items by status (pending, done, dead).", []string{"status"}, nil)
	descDelivered = prometheus.NewDesc("handoff_outbox_delivered_total", "Outward calls that succeeded, by kind.", []string{"kind"}, nil)
	descRetried   = prometheus.NewDesc("handoff_outbox_retried_total", "Outward call attempts that failed and were retried, by kind.", []string{"kind"}, nil)
	descFailed    = prometheus.NewDesc("handoff_outbox_failed_total", "Outward calls that failed for good, by kind.", []string{"kind"}, nil)
	descSessions  = prometheus.NewDesc("handoff_sessions", "Open sessions by state.", []string{"state"}, nil)
	descPollRuns  = prometheus.NewDesc("handoff_poll_runs_total", "Poller runs finished.", nil, nil)
	descPollSkip  = prometheus.NewDesc("handoff_poll_skipped_total", "Poller runs skipped because the previous run was still going.", nil, nil)
	descPollEvent = prometheus.NewDesc("handoff_poll_events_total", "Desk events the poller stored.", nil, nil)
	descPollErr   = prometheus.NewDesc("handoff_poll_errors_total", "Poll requests, listings or stores that failed.", nil, nil)
	descPollLast  = prometheus.NewDesc("handoff_poll_last_duration_seconds", "Duration of the last poller run.", nil, nil)
	descOldest    = prometheus.NewDesc("handoff_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox item (0 when none).", nil, nil)
)

func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOutbox, descDelivered, descRetried, descFailed, descSessions,
		descPollRuns, descPollSkip, descPollEvent, descPollErr, descPollLast, descOldest} {
		ch <- d
	}
}

func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c.leads == nil || c.leads() {
		c.collectShared(ctx, ch)
	}
	c.collectOwn(ch)
}

// collectShared exports the gauges every replica would read identically
// from the database.
func (c *bridgeCollector) collectShared(ctx context.Context, ch chan<- prometheus.Metric) {
	if c.oldest != nil {
		if t, err := c.oldest(ctx); err == nil {
			age := 0.0
			if !t.IsZero() {
				age = max(c.now().Sub(t).Seconds(), 0)
			}
			ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age)
		}
	}
	_ = c.store.View(ctx, func(tx bridge.Tx) error {
		stats, err := tx.OutboxStats(ctx)
		if err != nil {
			return err
		}
		for _, s := range []string{"pending", "done", "dead"} {
			ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(stats[s]), s)
		}
		counts, err := tx.CountSessions(ctx)
		if err != nil {
			return err
		}
		for _, st := range []bridge.State{bridge.StateBot, bridge.StateQueued, bridge.StateLive, bridge.StateClosing} {
			ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(counts[st]), string(st))
		}
		return nil
	})
}

// outboxKinds are the kinds whose counters start at 0.
var outboxKinds = []bridge.OutboxKind{bridge.KindBotSend, bridge.KindBotHandback, bridge.KindDeskOpen, bridge.KindDeskSend,
	bridge.KindDeskLeave, bridge.KindDeskTyping, bridge.KindDeskReceipt, bridge.KindDeskNote, bridge.KindUserSend, bridge.KindUserTyping}

// collectOwn exports what this replica did.
func (c *bridgeCollector) collectOwn(ch chan<- prometheus.Metric) {
	if c.poller != nil {
		ps := c.poller.Stats()
		ch <- prometheus.MustNewConstMetric(descPollRuns, prometheus.CounterValue, float64(ps.Runs))
		ch <- prometheus.MustNewConstMetric(descPollSkip, prometheus.CounterValue, float64(ps.Skipped))
		ch <- prometheus.MustNewConstMetric(descPollEvent, prometheus.CounterValue, float64(ps.Events))
		ch <- prometheus.MustNewConstMetric(descPollErr, prometheus.CounterValue, float64(ps.Errors))
		ch <- prometheus.MustNewConstMetric(descPollLast, prometheus.GaugeValue, ps.LastDuration.Seconds())
	}
	delivered, retried, failed := c.disp.Stats.Snapshot()
	for _, pair := range []struct {
		d *prometheus.Desc
		m map[bridge.OutboxKind]int64
	}{{descDelivered, delivered}, {descRetried, retried}, {descFailed, failed}} {
		// Every kind is present from the start (0 until it happens), so
		// rates and alerts see the series before the first failure.
		for _, k := range outboxKinds {
			if _, ok := pair.m[k]; !ok {
				ch <- prometheus.MustNewConstMetric(pair.d, prometheus.CounterValue, 0, string(k))
			}
		}
		for k, v := range pair.m {
			ch <- prometheus.MustNewConstMetric(pair.d, prometheus.CounterValue, float64(v), string(k))
		}
	}
}
