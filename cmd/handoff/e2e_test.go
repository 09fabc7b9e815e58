package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/rasa/rasatest"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/slack/slacktest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

const (
	e2eAppID  = "00000000-0000-0000-0000-00000000b077"
	e2eSecret = "bot-secret"
	e2eTenant = "72f988bf-0000-0000-0000-000000000001"
	agentName = "Beth Anglin"

	e2eWebhookSecret  = "webhook-secret"
	e2eVAToken        = "va-token"
	e2eCallbackSecret = "callback-secret"
)

// world is the real service on :0 wired to the three fakes.
type world struct {
	t       *testing.T
	issuer  *teamstest.Issuer
	conn    *teamstest.Connector
	channel *teamstest.Channel
	rasa    *rasatest.Server
	sn      *snowtest.Instance
	slack   *slacktest.Server // the slack desk's workspace
	app     *app
	base    string
	stop    func()
	env     map[string]string
	ov      *overrides // in-process hooks (the crash test's failing store)
	desk    string     // connect, va or slack
	mu      sync.Mutex // guards app, base, stop and channel across restarts
}

// ch returns the Teams channel pointed at the running service.
func (w *world) ch() *teamstest.Channel { w.mu.Lock(); defer w.mu.Unlock(); return w.channel }

// current returns the running service.
func (w *world) current() *app { w.mu.Lock(); defer w.mu.Unlock(); return w.app }

// halt shuts the running service down as SIGTERM would.
func (w *world) halt() {
	w.mu.Lock()
	stop := w.stop
	w.mu.Unlock()
	stop()
}

type worldOpts struct {
	delivery string // poll (default), webhook, hybrid
	desk     string // connect (default), va or slack
	dbURL    string // default: a fresh SQLite file
	extra    map[string]string
	ov       *overrides
}

func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	if o.desk == "" {
		o.desk = "connect"
	}
	w := &world{t: t, ov: o.ov, desk: o.desk}
	w.issuer = teamstest.NewIssuer()
	t.Cleanup(w.issuer.Close)
	w.issuer.AddClient(e2eAppID, e2eSecret)
	w.conn = teamstest.NewConnector(teamstest.ConnectorConfig{Issuer: w.issuer})
	t.Cleanup(w.conn.Close)
	w.rasa = rasatest.New(rasatest.Options{Token: "rasa-token"})
	t.Cleanup(w.rasa.Close)
	w.sn = snowtest.New(snowtest.Options{})
	t.Cleanup(w.sn.Close)
	w.slack = slacktest.New(slacktest.Options{RetryDelays: []time.Duration{100 * time.Millisecond, time.Second, 3 * time.Second}})
	t.Cleanup(w.slack.Close)

	if o.delivery == "" {
		o.delivery = "poll"
	}
	if o.dbURL == "" {
		o.dbURL = "sqlite:" + filepath.Join(t.TempDir(), "e2e.db")
	}
	w.env = map[string]string{
		"HANDOFF_ADDR":                        "127.0.0.1:0",
		"HANDOFF_DATABASE_URL":                o.dbURL,
		"HANDOFF_TEAMS_APP_ID":                e2eAppID,
		"HANDOFF_TEAMS_APP_PASSWORD":          e2eSecret,
		"HANDOFF_TEAMS_TENANT_ID":             e2eTenant,
		"HANDOFF_TEAMS_TOKEN_URL":             w.issuer.TokenURL("{tenant}"),
		"HANDOFF_TEAMS_OPENID_METADATA_URL":   w.issuer.MetadataURL(),
		"HANDOFF_TEAMS_ALLOWED_SERVICE_HOSTS": "127.0.0.1",
		"HANDOFF_RASA_URL":                    w.rasa.URL(),
		"HANDOFF_RASA_TOKEN":                  "rasa-token",
		"HANDOFF_SERVICENOW_URL":              w.sn.URL(),
		"HANDOFF_SERVICENOW_USER":             snowtest.DefaultUser,
		"HANDOFF_SERVICENOW_PASSWORD":         snowtest.DefaultPassword,
		"HANDOFF_SERVICENOW_QUEUE":            snowtest.DefaultQueue,
		"HANDOFF_SERVICENOW_MAX_RETRIES":      "1",
		"HANDOFF_DELIVERY":                    o.delivery,
		"HANDOFF_DESK":                        o.desk,
		"HANDOFF_WEBHOOK_SECRET":              e2eWebhookSecret,
		"HANDOFF_VA_TOKEN":                    e2eVAToken,
		"HANDOFF_VA_CALLBACK_SECRET":          e2eCallbackSecret,
		"HANDOFF_SLACK_BOT_TOKEN":             w.slack.Token(),
		"HANDOFF_SLACK_SIGNING_SECRET":        w.slack.SigningSecret(),
		"HANDOFF_SLACK_CHANNEL":               w.slack.Channel(),
		"HANDOFF_SLACK_API_URL":               w.slack.URL(),
		"HANDOFF_POLL_INTERVAL":               "1s",
		"HANDOFF_RECONCILE_INTERVAL":          "1s",
		"HANDOFF_DISPATCH_MAX_ATTEMPTS":       "2",
		"HANDOFF_DISPATCH_BACKOFF":            "50ms",
		"HANDOFF_REVIEW_SALT":                 "e2e-salt",
		"HANDOFF_REVIEW_TOKEN":                "review-token",
		"HANDOFF_REVIEW_DIR":                  t.TempDir(),
		"HANDOFF_LOG_LEVEL":                   "debug",
	}
	for k, v := range o.extra {
		w.env[k] = v
	}
	w.start()
	return w
}

// start runs the service in-process; stop (or a restart) shuts it down the
// way SIGTERM would.
func (w *world) start() {
	w.t.Helper()
	a, base, stop := launch(w.t, w.env, w.ov, slog.LevelInfo)
	ch := &teamstest.Channel{Issuer: w.issuer, AppID: e2eAppID, ServiceURL: w.conn.ServiceURL(),
		BotURL: base + "/api/messages", TenantID: e2eTenant}
	w.mu.Lock()
	w.app, w.base, w.stop, w.channel = a, base, stop, ch
	w.mu.Unlock()
	w.pointDeliveries()
}

// launch runs one service process in-process with env and returns it, its
// base URL and a stop func that shuts it down the way SIGTERM would (also
// called when the test ends).
func launch(t *testing.T, env map[string]string, ov *overrides, level slog.Level) (*app, string, func()) {
	t.Helper()
	return launchLogged(t, env, ov, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})))
}

// launchLogged is launch with the service logging to log.
func launchLogged(t *testing.T, env map[string]string, ov *overrides, log *slog.Logger) (*app, string, func()) {
	t.Helper()
	cfg, err := LoadConfig(mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ValidateServe(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, cfg, log, ov)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	started := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, started) }()
	var base string
	select {
	case addr := <-started:
		base = "http://" + addr
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve returned %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return a, base, stop
}

// pointDeliveries points the fake instance's outgoing calls at the service
// (again after a restart, whose port is new): the Business Rule webhooks for
// webhook and hybrid delivery, the callbacks for the va desk.
func (w *world) pointDeliveries() {
	switch {
	case w.desk == "slack":
		w.slack.SetTargets(w.base+"/webhooks/slack", w.base+"/webhooks/slack/interactive")
	case w.desk == "va":
		w.sn.EnableVA(snowtest.VAOptions{Token: e2eVAToken, CallbackURL: w.base + "/webhooks/servicenow/va",
			CallbackHeaders: map[string]string{"X-Handoff-Secret": e2eCallbackSecret}})
	case w.env["HANDOFF_DELIVERY"] == "webhook" || w.env["HANDOFF_DELIVERY"] == "hybrid":
		w.sn.EnableWebhooks(snowtest.WebhookOptions{URL: w.base + "/webhooks/servicenow", Secret: e2eWebhookSecret})
	}
}

// agentChatID is the bridge's id of the fake's chat group: the group itself
// for Connect Support, the clientSessionId for the Virtual Agent API.
func (w *world) agentChatID(group string) bridge.AgentChatID {
	if conv, ok := w.sn.VAConversation(group); ok {
		return bridge.AgentChatID(conv.ClientSessionID)
	}
	return bridge.AgentChatID(group)
}

type testWriter struct{ t *testing.T }

func (tw testWriter) Write(p []byte) (int, error) {
	tw.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// say posts a signed Teams message from u.
func (w *world) say(u teamstest.User, text string) {
	w.t.Helper()
	code, err := w.ch().Post(context.Background(), w.ch().Message(u, text))
	if err != nil || code != 200 {
		w.t.Fatalf("post %q: %d %v", text, code, err)
	}
}

// userLines returns the texts Teams showed u, in order.
func (w *world) userLines(u teamstest.User) []string {
	var out []string
	for _, s := range w.conn.Sent(w.ch().ConversationID(u)) {
		if s.Type == "message" || s.Type == "" {
			out = append(out, shown(s))
		}
	}
	return out
}

// waitUser waits until u has seen a line containing want (after skip lines).
func (w *world) waitUser(u teamstest.User, want string, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, l := range w.userLines(u) {
			if strings.Contains(l, want) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("%s never saw %q; saw %q", u.Name, want, w.userLines(u))
}

// chatOf waits for the ServiceNow chat opened for u (its first message names u).
func (w *world) chatOf(u teamstest.User, timeout time.Duration) string {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, c := range w.sn.Chats() {
			ms := w.sn.Messages(c.Group)
			if len(ms) > 0 && strings.Contains(ms[0].Text, u.Name) {
				return c.Group
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("no ServiceNow chat was opened for %s", u.Name)
	return ""
}

// agentGot returns what the bridge posted into the chat (its own messages
// after the first, context-giving one).
func (w *world) agentGot(group string) []string {
	var out []string
	for i, m := range w.sn.Messages(group) {
		if i > 0 && m.CreatedBy == snowtest.DefaultUser {
			out = append(out, m.Text)
		}
	}
	return out
}

func (w *world) waitAgent(group, want string, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if slices.Contains(w.agentGot(group), want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("agent never got %q; got %q", want, w.agentGot(group))
}

// session returns the newest session of u's conversation.
func (w *world) session(u teamstest.User) bridge.Session {
	w.t.Helper()
	var s bridge.Session
	conv := bridge.ConversationID(w.ch().ConversationID(u))
	err := w.current().store.Update(context.Background(), func(tx bridge.Tx) error {
		ss, err := tx.SessionsInStates(context.Background(), bridge.States...)
		for _, x := range ss {
			if x.Conversation == conv {
				s = x
			}
		}
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

func (w *world) waitClosed(u teamstest.User, timeout time.Duration) bridge.Session {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s := w.session(u); s.State == bridge.StateClosed {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := w.session(u)
	w.t.Fatalf("%s's session did not close: %s", u.Name, s.State)
	return s
}

// ending is one way a handoff ends in the lifecycle test.
type ending struct {
	name    string
	reason  bridge.CloseReason
	line    string // the ending notice the user must see
	restart bool
	act     func(w *world, u teamstest.User, group string)
}

func lifecycleEndings(desk string) []ending {
	tx := bridge.DefaultTexts()
	// failSends makes every message post of the chat fail; failLeave its leave.
	failSends := func(w *world, group string) {
		w.sn.InjectFault(snowtest.Fault{Method: "POST", Path: "/api/now/connect/conversations/" + group + "/messages", Status: 500, Times: 1000})
	}
	failLeave := func(w *world, group string) {
		w.sn.InjectFault(snowtest.Fault{Method: "POST", Path: "/api/now/connect/support/sessions/" + group + "/leave", Status: 500, Times: 1000})
	}
	if desk == "va" {
		// One endpoint serves every action: fail by action and conversation.
		failSends = func(w *world, group string) {
			w.sn.InjectVAFault(snowtest.VAFault{Action: "", ClientSessionID: string(w.agentChatID(group)), Status: 500, Times: 1000})
		}
		failLeave = func(w *world, group string) {
			w.sn.InjectVAFault(snowtest.VAFault{Action: "END_CONVERSATION", ClientSessionID: string(w.agentChatID(group)), Status: 500, Times: 1000})
		}
	}
	return []ending{
		{name: "agent closes", reason: bridge.ReasonAgentClosed, line: tx.AgentClosed, act: func(w *world, u teamstest.User, group string) {
			if err := w.sn.CloseChat(group); err != nil {
				w.t.Error(err)
			}
		}},
		{name: "user ends", reason: bridge.ReasonUserEnded, line: tx.UserEnded, act: func(w *world, u teamstest.User, group string) {
			w.say(u, "/end_chat")
		}},
		{name: "user restarts", reason: bridge.ReasonUserRestarted, line: tx.UserRestart, restart: true, act: func(w *world, u teamstest.User, group string) {
			w.say(u, " /Restart ")
		}},
		{name: "servicenow fails mid-chat", reason: bridge.ReasonRelayError, line: "Summary: support chat " + "", act: func(w *world, u teamstest.User, group string) {
			failSends(w, group)
			w.say(u, "are you still there?")
		}},
		{name: "leave fails", reason: bridge.ReasonUserEnded, line: tx.LeaveFailed, act: func(w *world, u teamstest.User, group string) {
			failLeave(w, group)
			w.say(u, "/end_chat")
		}},
	}
}

// runConversation drives one employee through bot turns, a handoff, three
// messages each way and the ending, and checks everything arrived once and
// in order.
func runConversation(w *world, u teamstest.User, e ending) {
	t := w.t
	const wait = 30 * time.Second
	w.say(u, "hello")
	w.waitUser(u, "IT helpdesk bot", wait)
	w.say(u, "how do I reset my password?")
	w.waitUser(u, "password", wait)
	w.say(u, "talk to live agent")
	w.waitUser(u, bridge.DefaultTexts().Connecting, wait)
	group := w.chatOf(u, wait)
	first := w.sn.Messages(group)[0].Text
	for _, want := range []string{u.Name, "user_asked", "reset my password"} {
		if !strings.Contains(first, want) {
			t.Errorf("%s: the agent's first message lacks %q:\n%s", u.Name, want, first)
		}
	}
	if err := w.sn.Accept(group, agentName); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, snowtest.DefaultGreeting, wait)
	if w.desk == "va" {
		w.checkTyping(u, group, wait)
	}
	var userSaid, agentSaid []string
	for i := 1; i <= 3; i++ {
		um := fmt.Sprintf("%s question %d", u.Name, i)
		w.say(u, um)
		w.waitAgent(group, um, wait)
		userSaid = append(userSaid, um)
		am := fmt.Sprintf("answer %d for %s", i, u.Name)
		said, err := w.sn.Say(group, agentName, am)
		if err != nil {
			t.Fatal(err)
		}
		w.waitUser(u, am, wait)
		if w.desk == "va" {
			// The receipt follows the Teams send; an employee who ends the chat
			// within that moment can overtake it (the desk is left first).
			w.waitReceipt(group, said.SysID, wait)
		}
		agentSaid = append(agentSaid, am)
	}
	e.act(w, u, group)
	s := w.waitClosed(u, wait)
	if s.CloseReason != e.reason {
		t.Errorf("%s: closed with %s, want %s", u.Name, s.CloseReason, e.reason)
	}
	if want := w.agentChatID(group); s.AgentChatID != want {
		t.Errorf("%s: session chat %s, want %s", u.Name, s.AgentChatID, want)
	}
	// The ending notices go out when the session ends; a failed leave adds
	// its line once leaving gave up.
	w.waitUser(u, bridge.DefaultTexts().BotBack, wait)
	w.waitUser(u, e.line, wait)
	if w.desk == "va" {
		w.checkReceipts(u, group, wait)
	}
	lines := w.userLines(u)
	joined := strings.Join(lines, "\n")
	if !strings.Contains(joined, e.line) {
		t.Errorf("%s: no ending line %q in %q", u.Name, e.line, lines)
	}

	// Every agent message reached the user exactly once, in order.
	var seen []string
	for _, l := range lines {
		if strings.HasPrefix(l, "answer ") || l == snowtest.DefaultGreeting {
			seen = append(seen, l)
		}
	}
	if want := append([]string{snowtest.DefaultGreeting}, agentSaid...); !slices.Equal(seen, want) {
		t.Errorf("%s: agent messages seen %q, want %q", u.Name, seen, want)
	}
	// Every user message reached the agent exactly once, in order, and never Rasa.
	got := w.agentGot(group)
	var relayed []string
	for _, g := range got {
		if strings.Contains(g, "question") {
			relayed = append(relayed, g)
		}
	}
	if !slices.Equal(relayed, userSaid) {
		t.Errorf("%s: agent got %q, want %q", u.Name, relayed, userSaid)
	}
	conv := w.ch().ConversationID(u)
	var names []string
	for _, ev := range w.rasa.Events(conv) {
		names = append(names, ev.Name())
		if ev.Name() == "user" {
			if txt, _ := ev["text"].(string); strings.Contains(txt, "question") || strings.HasPrefix(strings.TrimSpace(txt), "/end_chat") {
				t.Errorf("%s: Rasa received %q, which was meant for the agent", u.Name, txt)
			}
		}
	}
	if !slices.Contains(names, "resume") {
		t.Errorf("%s: Rasa got no resume event; events %v", u.Name, names)
	}
	if e.restart != slices.Contains(names, "restart") {
		t.Errorf("%s: restart event present=%v, want %v", u.Name, !e.restart, e.restart)
	}
	var outcome any
	for _, ev := range w.rasa.Events(conv) {
		if ev.Name() == "slot" && ev["name"] == "handoff_outcome" {
			outcome = ev["value"]
		}
	}
	if !e.restart && outcome != string(e.reason) {
		t.Errorf("%s: handoff_outcome slot = %v, want %s", u.Name, outcome, e.reason)
	}

	// The bot owns the conversation again.
	n := len(w.userLines(u))
	w.say(u, "hello")
	// Wait for the bot's answer (the rating prompt of an agent-handled chat
	// may arrive in between).
	answered := func() bool {
		l := w.userLines(u)
		return len(l) > n && strings.Contains(l[len(l)-1], "IT helpdesk bot")
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) && !answered() {
		time.Sleep(20 * time.Millisecond)
	}
	if l := w.userLines(u); !answered() {
		t.Errorf("%s: the bot did not answer after the handback: %q", u.Name, l[n:])
	}
}

// checkTyping checks the Virtual Agent typing indicators both ways: the
// employee typing in Teams reaches the agent as TYPING, the agent's
// StartTypingIndicator reaches Teams as a typing activity.
func (w *world) checkTyping(u teamstest.User, group string, timeout time.Duration) {
	w.t.Helper()
	if code, err := w.ch().Post(context.Background(), w.ch().Typing(u)); err != nil || code != 200 {
		w.t.Fatalf("post typing: %d %v", code, err)
	}
	conv := w.ch().ConversationID(u)
	deadline := time.Now().Add(timeout)
	for i := 0; time.Now().Before(deadline); i++ {
		if i%25 == 0 {
			// Typing is best effort: Teams pacing may skip one right after
			// the greeting, so the agent keeps typing until one shows.
			if err := w.sn.AgentTyping(group); err != nil {
				w.t.Fatal(err)
			}
		}
		va, _ := w.sn.VAConversation(group)
		typed := slices.ContainsFunc(w.conn.Sent(conv), func(s teamstest.Sent) bool { return s.Type == "typing" })
		if va.Typing > 0 && typed {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	va, _ := w.sn.VAConversation(group)
	w.t.Errorf("%s: typing not relayed: TYPING requests %d, typing activities in Teams %v", u.Name, va.Typing,
		slices.ContainsFunc(w.conn.Sent(conv), func(s teamstest.Sent) bool { return s.Type == "typing" }))
}

// waitReceipt waits until the agent message id is reported delivered.
func (w *world) waitReceipt(group, id string, wait time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		va, _ := w.sn.VAConversation(group)
		if slices.ContainsFunc(va.Updates, func(up snowtest.VAUpdate) bool { return up.ID == id && up.Status == "sent_to_user" }) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Errorf("agent message %s was not reported delivered within %v", id, wait)
}

// checkReceipts checks that every agent message (by its ServiceNow id) was
// reported delivered with UPDATE_MESSAGES sent_to_user, once.
// checkReceipts waits up to wait for every agent message to be reported
// delivered, then checks each was reported exactly once. (Receipts travel
// in the desk lane and may still be on their way when the employee has seen
// the ending.)
func (w *world) checkReceipts(u teamstest.User, group string, wait time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		va, _ := w.sn.VAConversation(group)
		got := map[string]int{}
		for _, up := range va.Updates {
			if up.Status == "sent_to_user" {
				got[up.ID]++
			}
		}
		var bad []string
		for _, m := range w.sn.Messages(group) {
			if m.SenderName != agentName || m.System() {
				continue
			}
			if got[m.SysID] != 1 {
				bad = append(bad, fmt.Sprintf("agent message %q reported delivered %d times, want 1 (updates %v)", m.Text, got[m.SysID], va.Updates))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, b := range bad {
				w.t.Errorf("%s: %s", u.Name, b)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLifecycleEndToEnd runs five employees at once, one per ending.
func TestLifecycleEndToEnd(t *testing.T) {
	for _, mode := range []struct{ delivery, desk string }{
		{"poll", "connect"}, {"webhook", "connect"}, {"hybrid", "connect"}, {"webhook", "va"},
	} {
		t.Run(mode.delivery+"/"+mode.desk, func(t *testing.T) {
			w := newWorld(t, worldOpts{delivery: mode.delivery, desk: mode.desk})
			var wg sync.WaitGroup
			for i, e := range lifecycleEndings(mode.desk) {
				u := teamstest.NewUser(fmt.Sprintf("Employee %d", i+1))
				wg.Add(1)
				go func() {
					defer wg.Done()
					runConversation(w, u, e)
				}()
			}
			wg.Wait()
			checkReviewExport(t, w)
			checkMetrics(t, w)
		})
	}
}
