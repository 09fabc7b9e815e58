package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/cmd/handoff/demoweb"
	"github.com/handoffhq/handoff/rasa/rasatest"
	"github.com/handoffhq/handoff/review"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/slack/slacktest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// The demo's identities. Nothing here is a real secret: every party is a fake
// on loopback.
const (
	demoAppID         = "00000000-0000-0000-0000-0000000de770"
	demoAppSecret     = "demo-bot-secret"
	demoTenant        = "72f988bf-0000-0000-0000-0000000de770"
	demoRasaToken     = "demo-rasa-token"
	demoWebhookSecret = "demo-webhook-secret"
	demoVAToken       = "demo-va-token"
	demoReviewToken   = "demo-review-token"
	demoAgentPassword = "demo-agent-secret"
)

// demoAgents are the ServiceNow agents the console can act as.
var demoAgents = []string{"Beth Anglin", "Fred Luddy"}

// demoEmployees are the Teams users suggested by the pages.
var demoEmployees = []string{"Megan Bowen", "Alex Wilber"}

func runDemo(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "demo", "run the real bridge on SQLite, wired to simulated Teams, Rasa and ServiceNow on this\n"+
		"machine, and serve an employee chat, an agent console and a review page in the browser.\n"+
		"Nothing needs configuring; HANDOFF_* variables are ignored.", false)
	o := demoOptions{}
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:8080", "address of the demo pages")
	fs.StringVar(&o.BridgeAddr, "bridge-addr", "127.0.0.1:0", "address of the bridge itself (port 0 picks a free one)")
	fs.StringVar(&o.Desk, "desk", "connect", "where the agents work: connect (ServiceNow Connect Support), va (Virtual Agent Bot Integration API,\n"+
		"Agent Workspace) or slack (a thread per handoff in a simulated Slack channel, answered on its Slack-like page)")
	fs.StringVar(&o.Delivery, "delivery", "", "how agent messages reach the bridge: hybrid (webhooks plus a reconciling poll; the default for\n"+
		"--desk connect), poll or webhook (the only mode, and the default, for --desk va); --desk slack always uses Slack's Events API")
	fs.StringVar(&o.RasaURL, "rasa-url", "", "use this Rasa server (e.g. http://localhost:5005) instead of the scripted bot")
	fs.StringVar(&o.RasaToken, "rasa-token", "", "the Rasa server's --auth-token, for its tracker API (with --rasa-url)")
	fs.StringVar(&o.DB, "db", "", "SQLite file to keep the demo's data (and review records) across runs; chats left open by an earlier run end,\n"+
		"because the simulated ServiceNow starts empty (default: a new file in a temporary directory)")
	verbose := fs.Bool("v", false, "log at info level (default: warnings only)")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "handoff demo: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if msg := o.check(); msg != "" {
		fmt.Fprintf(e.stderr, "handoff demo: %s\n", msg)
		return exitUsage
	}
	if o.RasaURL != "" {
		if u, err := url.Parse(o.RasaURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fmt.Fprintf(e.stderr, "handoff demo: --rasa-url expects an http(s) URL such as http://localhost:5005, not %q\n", o.RasaURL)
			return exitUsage
		}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := newLogger(e.stderr, "text", level)
	if !loopback(o.Addr) {
		log.Warn("the demo pages let anyone who can reach them chat as any employee and agent; prefer a loopback --addr", "addr", o.Addr)
	}

	d, err := startDemo(ctx, o, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "handoff demo: %v\n", err)
		return exitFail
	}
	d.printURLs(e.stdout)
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "\nhandoff demo: stopping…")
	if err := d.Close(); err != nil {
		fmt.Fprintf(e.stderr, "handoff demo: stop: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(e.stdout, "handoff demo: stopped")
	return exitOK
}

// demoOptions are the demo's flags.
type demoOptions struct {
	Addr       string // the demo pages
	BridgeAddr string // the bridge
	Desk       string // connect (default), va or slack
	Delivery   string // poll, webhook, hybrid; "" = the desk's default
	RasaURL    string // "" = the scripted rasatest bot
	RasaToken  string
	DB         string // SQLite file; "" = a new one in a temporary directory
	// PollWait bounds the pages' long-polls (default 25s; tests shorten it).
	PollWait time.Duration
}

// check fills the defaults of Desk and Delivery and returns what is wrong
// with them ("" if nothing).
func (o *demoOptions) check() string {
	if o.Desk == "" {
		o.Desk = "connect"
	}
	switch o.Desk {
	case "connect":
		if o.Delivery == "" {
			o.Delivery = "hybrid"
		}
	case "slack":
		if o.Delivery == "" {
			o.Delivery = "hybrid" // unused: Slack pushes events; the ServiceNow setting stays valid
		}
	case "va":
		if o.Delivery == "" {
			o.Delivery = "webhook"
		}
		if o.Delivery != "webhook" {
			return fmt.Sprintf("--desk va works with --delivery webhook only (the Virtual Agent API has no polling endpoint), not %q", o.Delivery)
		}
	default:
		return fmt.Sprintf("--desk expects connect, va or slack, not %q", o.Desk)
	}
	switch o.Delivery {
	case "poll", "webhook", "hybrid":
		return ""
	}
	return fmt.Sprintf("--delivery expects poll, webhook or hybrid, not %q", o.Delivery)
}

// demo is a running demo: the three fakes, the real bridge and the pages.
type demo struct {
	URL       string // base URL of the pages, e.g. http://127.0.0.1:8080
	BridgeURL string
	opts      demoOptions
	dbPath    string

	issuer  *teamstest.Issuer
	conn    *teamstest.Connector
	channel *teamstest.Channel
	rasa    *rasatest.Server // nil with --rasa-url
	sn      *snowtest.Instance
	slack   *slacktest.Server // --desk slack
	app     *app
	web     *demoweb.Server

	closeOnce sync.Once
	closeErr  error
	cleanup   []func() error // run in reverse order by Close
}

// startDemo starts the fakes, the bridge wired to them, and the pages. On
// error everything started so far is stopped again.
func startDemo(ctx context.Context, o demoOptions, log *slog.Logger) (d *demo, err error) {
	if msg := o.check(); msg != "" {
		return nil, errors.New(msg)
	}
	d = &demo{opts: o}
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	dir, err := os.MkdirTemp("", "handoff-demo-")
	if err != nil {
		return nil, fmt.Errorf("create a temporary directory: %w", err)
	}
	d.onClose(func() error { return os.RemoveAll(dir) })
	d.dbPath = o.DB
	if d.dbPath == "" {
		d.dbPath = filepath.Join(dir, "demo.db")
	} else if d.dbPath, err = filepath.Abs(d.dbPath); err != nil {
		return nil, fmt.Errorf("--db: %w", err)
	}

	// The fakes, each on its own loopback port.
	d.issuer = teamstest.NewIssuer()
	d.onClose(func() error { d.issuer.Close(); return nil })
	d.issuer.AddClient(demoAppID, demoAppSecret)
	d.conn = teamstest.NewConnector(teamstest.ConnectorConfig{Issuer: d.issuer})
	d.onClose(func() error { d.conn.Close(); return nil })
	rasaURL, rasaToken := o.RasaURL, o.RasaToken
	if rasaURL == "" {
		d.rasa = rasatest.New(rasatest.Options{Token: demoRasaToken})
		d.onClose(func() error { d.rasa.Close(); return nil })
		rasaURL, rasaToken = d.rasa.URL(), demoRasaToken
	} else {
		checkRasa(ctx, rasaURL, log)
	}
	users := []snowtest.User{{UserName: snowtest.DefaultUser, Password: snowtest.DefaultPassword, Name: snowtest.DefaultUserName}}
	var agents []demoweb.Agent
	for _, name := range demoAgents {
		u := snowtest.AgentUser(name, demoAgentPassword)
		users = append(users, u)
		agents = append(agents, demoweb.Agent{Name: u.Name, User: u.UserName, Password: u.Password})
	}
	d.sn = snowtest.New(snowtest.Options{Users: users})
	d.onClose(func() error { d.sn.Close(); return nil })
	if o.Desk == "slack" {
		d.slack = slacktest.New(slacktest.Options{})
		d.onClose(func() error { d.slack.Close(); return nil })
		for i, name := range demoAgents {
			d.slack.AddUser(fmt.Sprintf("U0DEMOAG%02d", i+1), name)
		}
	}

	// The real bridge, configured the way `handoff serve` is.
	env := map[string]string{
		"HANDOFF_ADDR":                        o.BridgeAddr,
		"HANDOFF_DATABASE_URL":                "sqlite:" + d.dbPath,
		"HANDOFF_SHUTDOWN_TIMEOUT":            "5s",
		"HANDOFF_DISPATCH_LEASE":              "9s", // calls in flight at Ctrl-C get at most 6s
		"HANDOFF_TEAMS_APP_ID":                demoAppID,
		"HANDOFF_TEAMS_APP_PASSWORD":          demoAppSecret,
		"HANDOFF_TEAMS_TENANT_ID":             demoTenant,
		"HANDOFF_TEAMS_TOKEN_URL":             d.issuer.TokenURL("{tenant}"),
		"HANDOFF_TEAMS_OPENID_METADATA_URL":   d.issuer.MetadataURL(),
		"HANDOFF_TEAMS_ALLOWED_SERVICE_HOSTS": "127.0.0.1",
		"HANDOFF_RASA_URL":                    rasaURL,
		"HANDOFF_RASA_TOKEN":                  rasaToken,
		"HANDOFF_SERVICENOW_URL":              d.sn.URL(),
		"HANDOFF_SERVICENOW_USER":             snowtest.DefaultUser,
		"HANDOFF_SERVICENOW_PASSWORD":         snowtest.DefaultPassword,
		"HANDOFF_SERVICENOW_QUEUE":            snowtest.DefaultQueue,
		"HANDOFF_DELIVERY":                    o.Delivery,
		"HANDOFF_POLL_INTERVAL":               "1s",
		"HANDOFF_RECONCILE_INTERVAL":          "5s",
		"HANDOFF_WEBHOOK_SECRET":              demoWebhookSecret,
		"HANDOFF_REVIEW_SALT":                 "handoff-demo-salt",
		"HANDOFF_REVIEW_TOKEN":                demoReviewToken,
		"HANDOFF_REVIEW_DIR":                  filepath.Join(dir, "review-exports"),
		"HANDOFF_DESK":                        o.Desk,
	}
	if o.Desk == "va" {
		env["HANDOFF_VA_TOKEN"] = demoVAToken
		env["HANDOFF_VA_CALLBACK_SECRET"] = demoWebhookSecret
	}
	if d.slack != nil {
		env["HANDOFF_SLACK_BOT_TOKEN"] = d.slack.Token()
		env["HANDOFF_SLACK_SIGNING_SECRET"] = d.slack.SigningSecret()
		env["HANDOFF_SLACK_CHANNEL"] = d.slack.Channel()
		env["HANDOFF_SLACK_API_URL"] = d.slack.URL()
	}
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		return nil, fmt.Errorf("configure the bridge: %w", err)
	}
	if err := cfg.ValidateServe(); err != nil {
		return nil, fmt.Errorf("configure the bridge: %w", err)
	}
	a, err := newApp(ctx, cfg, log, nil)
	if err != nil {
		return nil, fmt.Errorf("start the bridge with --delivery %s: %w", o.Delivery, err)
	}
	bctx, stopBridge := context.WithCancel(context.WithoutCancel(ctx))
	started := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- a.serve(bctx, started) }()
	select {
	case addr := <-started:
		d.BridgeURL = "http://" + addr
	case err := <-served:
		stopBridge()
		return nil, fmt.Errorf("start the bridge with --delivery %s: %w", o.Delivery, err)
	}
	d.app = a
	d.onClose(func() error {
		stopBridge()
		if err := <-served; err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		return nil
	})
	if d.slack != nil {
		// The fake workspace plays Slack: replies and button presses are
		// signed and sent to the bridge's Events API and interactivity URLs.
		d.slack.SetTargets(d.BridgeURL+"/webhooks/slack", d.BridgeURL+"/webhooks/slack/interactive")
	} else if err := d.checkDelivery(ctx, log); err != nil {
		return nil, err
	}

	d.channel = &teamstest.Channel{Issuer: d.issuer, AppID: demoAppID, BotName: "IT Helpdesk",
		ServiceURL: d.conn.ServiceURL(), BotURL: d.BridgeURL + "/api/messages", TenantID: demoTenant}
	bot := "scripted IT-helpdesk bot (rasatest) at " + rasaURL
	if o.RasaURL != "" {
		bot = "Rasa at " + o.RasaURL
	}
	info := demoweb.Info{BridgeURL: d.BridgeURL, DeskURL: d.sn.URL(), Delivery: o.Delivery, Bot: bot, Database: d.dbPath,
		ReviewInbox: d.BridgeURL + "/review", ReviewToken: demoReviewToken}
	if d.slack != nil {
		info.SlackURL, info.Delivery = d.slack.UIURL(), "slack events (POST /webhooks/slack)"
	}
	d.web, err = demoweb.New(demoweb.Config{
		Channel: d.channel, Connector: d.conn, Desk: d.sn, Queue: snowtest.DefaultQueue,
		Agents: agents, Employees: demoEmployees, Bridge: demoBridge{a: a}, PollWait: o.PollWait,
		Info:   info,
		Logger: log.With("component", "demo"),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (--addr): %w", o.Addr, err)
	}
	d.URL = "http://" + ln.Addr().String()
	// The pages' long-polls end with this context, so that shutting down does
	// not wait for them.
	wctx, stopWeb := context.WithCancel(context.WithoutCancel(ctx))
	srv := newHTTPServer(o.Addr, d.web.Handler(), log)
	srv.BaseContext = func(net.Listener) context.Context { return wctx }
	webDone := make(chan error, 1)
	go func() { webDone <- srv.Serve(ln) }()
	d.onClose(func() error {
		stopWeb()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Drain(sctx)
		if serr := <-webDone; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		if err != nil {
			return fmt.Errorf("demo pages: %w", err)
		}
		return nil
	})
	return d, nil
}

// onClose registers f to run on Close (last registered, first run).
func (d *demo) onClose(f func() error) { d.cleanup = append(d.cleanup, f) }

// Close stops the pages, then the bridge (which drains and closes the
// database), then the fakes, and removes the temporary directory.
func (d *demo) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		for i := len(d.cleanup) - 1; i >= 0; i-- {
			if err := d.cleanup[i](); err != nil {
				errs = append(errs, err)
			}
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// printURLs tells the user what to open.
func (d *demo) printURLs(w io.Writer) {
	emp := func(name string) string { return d.URL + "/employee?user=" + url.QueryEscape(name) }
	bot := "scripted IT-helpdesk bot"
	if d.opts.RasaURL != "" {
		bot = "Rasa at " + d.opts.RasaURL
	}
	if d.slack != nil {
		fmt.Fprintf(w, `
handoff demo is running: the real bridge, with simulated Teams, Rasa and Slack.

  Employee chat (Teams)        %s
  A second employee            %s
  Agent channel (Slack)        %s
  Review of the handoffs       %s

  Start page %s · bridge %s · desk slack (events and buttons pushed to /webhooks/slack) · %s · database %s

Say "talk to live agent" in the employee chat, then press Take (or reply in the thread) on the Slack page.
Press Ctrl-C to stop.
`, emp(demoEmployees[0]), emp(demoEmployees[1]), d.slack.UIURL(), d.URL+"/review",
			d.URL+"/", d.BridgeURL, bot, d.dbPath)
		return
	}
	fmt.Fprintf(w, `
handoff demo is running: the real bridge, with simulated Teams, Rasa and ServiceNow.

  Employee chat (Teams)        %s
  A second employee            %s
  Agent console (ServiceNow)   %s
  Review of the handoffs       %s
  Review inbox (annotate)      %s  (token %s)

  Start page %s · bridge %s · desk %s · delivery %s · %s · database %s

Say "talk to live agent" in the employee chat, then accept the chat in the agent console.
Press Ctrl-C to stop.
`, emp(demoEmployees[0]), emp(demoEmployees[1]), d.URL+"/agent", d.URL+"/review",
		d.BridgeURL+"/review", demoReviewToken, d.URL+"/", d.BridgeURL, d.opts.Desk, d.opts.Delivery, bot, d.dbPath)
}

// checkDelivery makes sure agent messages can reach the bridge in the chosen
// mode: webhook delivery needs the bridge's webhook endpoint and a fake
// instance that calls it.
func (d *demo) checkDelivery(ctx context.Context, log *slog.Logger) error {
	if d.opts.Desk == "va" {
		// The fake instance plays the Virtual Agent API: its callbacks go to
		// the bridge with the secret header of the outbound configuration.
		d.sn.EnableVA(snowtest.VAOptions{Token: demoVAToken, CallbackURL: d.BridgeURL + "/webhooks/servicenow/va",
			CallbackHeaders: map[string]string{"X-Handoff-Secret": demoWebhookSecret}})
		return nil
	}
	if d.opts.Delivery == "poll" {
		return nil
	}
	// The route answers GET with 405 when it exists (it takes POST only).
	hook := d.BridgeURL + "/webhooks/servicenow"
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, hook, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("--delivery %s: probe %s: %w", d.opts.Delivery, hook, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		// The fake instance plays the Business Rule: every new live_message
		// not written by the bridge is POSTed to the webhook, signed.
		d.sn.EnableWebhooks(snowtest.WebhookOptions{URL: hook, Secret: demoWebhookSecret, SkipCreatedBy: snowtest.DefaultUser})
		return nil
	}
	problem := errors.New("the bridge does not serve POST /webhooks/servicenow: webhook delivery is not wired in this build")
	if d.opts.Delivery == "webhook" {
		return fmt.Errorf("--delivery webhook cannot work: %w; use --delivery poll (or hybrid)", problem)
	}
	log.Warn("hybrid delivery: webhooks will not arrive, so agent messages come only from the reconciling poll (every 5s)", "problem", problem)
	return nil
}

// checkRasa warns when a real Rasa server does not answer.
func checkRasa(ctx context.Context, rasaURL string, log *slog.Logger) {
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, strings.TrimRight(rasaURL, "/")+"/", nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Warn("Rasa does not answer; the bot will say it is unavailable until it does", "rasa_url", rasaURL, "err", err)
		return
	}
	resp.Body.Close()
}

// demoBridge gives the pages read access to the bridge's store.
type demoBridge struct{ a *app }

var _ demoweb.Bridge = demoBridge{}

func (b demoBridge) Conversation(ctx context.Context, conv string) ([]bridge.Message, bridge.State, error) {
	var (
		msgs  []bridge.Message
		state bridge.State
	)
	id := bridge.ConversationID(conv)
	err := b.a.store.Update(ctx, func(tx bridge.Tx) error {
		var err error
		if msgs, err = tx.ConversationMessages(ctx, id, 200); err != nil {
			return err
		}
		s, err := tx.OpenSession(ctx, id)
		switch {
		case err == nil:
			state = s.State
		case !errors.Is(err, bridge.ErrNotFound):
			return err
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("read conversation: %w", err)
	}
	return msgs, state, nil
}

func (b demoBridge) Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
	return b.a.store.Reviews(ctx, from, to, fn)
}

func (b demoBridge) Export(ctx context.Context, w io.Writer, from, to time.Time, f review.Format) (int, error) {
	if b.a.parts.exporter == nil {
		return review.Export(ctx, w, b.a.store, from, to, f)
	}
	return b.a.parts.exporter.Export(ctx, w, b.a.store, from, to, f)
}
