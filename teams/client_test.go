package teams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams/teamstest"
)

const (
	testPassword = "s3cret-app-password"
	// timeScale shortens Teams' rate-limit windows in tests: 7 per 100 ms,
	// 8 per 200 ms, 60 per 3 s (both on the fake Connector and in the
	// Client's pacing), so that a 100-message burst runs in seconds while
	// exercising the same arithmetic as the real 7/1 s, 8/2 s, 60/30 s.
	timeScale = 10
)

func scaledWindows() []teamstest.Window { return scale(teamstest.TeamsLimits) }

func scale(ws []teamstest.Window) []teamstest.Window {
	var out []teamstest.Window
	for _, w := range ws {
		out = append(out, teamstest.Window{N: w.N, Per: w.Per / timeScale})
	}
	return out
}

func scaledPacing() Pacing {
	var p Pacing
	for _, l := range TeamsConversationLimits {
		p.Conversation = append(p.Conversation, Limit{N: l.N, Per: l.Per / timeScale})
	}
	for _, l := range TeamsAppLimits {
		p.App = append(p.App, Limit{N: l.N, Per: l.Per / timeScale})
	}
	return p
}

type clientFixture struct {
	issuer *teamstest.Issuer
	conn   *teamstest.Connector
	client *Client
}

func newClientFixture(t testing.TB, mutate func(*ClientConfig)) *clientFixture {
	t.Helper()
	f := &clientFixture{issuer: teamstest.NewIssuer()}
	t.Cleanup(f.issuer.Close)
	f.issuer.AddClient(testAppID, testPassword)
	f.conn = teamstest.NewConnector(teamstest.ConnectorConfig{Issuer: f.issuer, Limits: scaledWindows(), AppLimits: scale(teamstest.TeamsAppLimits)})
	t.Cleanup(f.conn.Close)
	cfg := ClientConfig{
		AppID:                testAppID,
		AppPassword:          testPassword,
		TenantID:             testTenant,
		TokenURL:             f.issuer.TokenURL("{tenant}"),
		ExtraServiceURLHosts: []string{"127.0.0.1"},
		RetryBaseDelay:       5 * time.Millisecond,
		RetryMaxDelay:        50 * time.Millisecond,
		Pacing:               scaledPacing(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := NewClient(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	f.client = c
	return f
}

func (f *clientFixture) ref(conv string) bridge.ConversationRef {
	return bridge.ConversationRef{
		Conversation:     bridge.ConversationID(conv),
		ServiceURL:       f.conn.ServiceURL(),
		ChannelID:        "msteams",
		ConversationType: "personal",
		TenantID:         testTenant,
		BotID:            "28:" + testAppID,
		BotName:          "Helpdesk",
		UserID:           "29:user",
		UserName:         "Ada",
		UserAADID:        "0000-aad",
		Locale:           "en-US",
	}
}

func TestClientSendsCleanActivity(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	conv := "a:1conv-with:colon@and;semicolon"
	id, err := f.client.Send(ctx, f.ref(conv), bridge.UserMessage{Text: "Hello <b>Ada</b> & co"})
	if err != nil {
		t.Fatal(err)
	}
	sent := f.conn.Sent(conv)
	if len(sent) != 1 {
		t.Fatalf("sent %d activities, want 1 (conversation id escaped and decoded back)", len(sent))
	}
	if id == "" || id != sent[0].ID {
		t.Fatalf("id = %q, want %q", id, sent[0].ID)
	}
	var got map[string]any
	if err := json.Unmarshal(sent[0].Activity, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type":         "message",
		"text":         "Hello <b>Ada</b> & co",
		"from":         map[string]any{"id": "28:" + testAppID, "name": "Helpdesk"},
		"recipient":    map[string]any{"id": "29:user", "name": "Ada", "aadObjectId": "0000-aad"},
		"conversation": map[string]any{"id": conv, "conversationType": "personal", "tenantId": testTenant},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("activity = %s\nwant %v", sent[0].Activity, want)
	}
	if s := string(sent[0].Activity); strings.Contains(s, "0001-01-01") || strings.Contains(s, "{}") {
		t.Fatalf("activity carries zero timestamps or empty objects: %s", s)
	}

	// The token is fetched once and reused.
	for i := range 3 {
		if _, err := f.client.Send(ctx, f.ref(conv), bridge.UserMessage{Text: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.issuer.Counts().Token; n != 1 {
		t.Fatalf("token fetched %d times, want 1", n)
	}
}

func TestClientNoContent(t *testing.T) {
	f := newClientFixture(t, nil)
	f.conn.SetNoContent(true)
	id, err := f.client.Send(context.Background(), f.ref("a:1"), bridge.UserMessage{Text: "hi"})
	if err != nil || id != "" {
		t.Fatalf("Send = %q, %v; want \"\", nil on 202", id, err)
	}
	if len(f.conn.Messages("a:1")) != 1 {
		t.Fatal("not delivered")
	}
}

func TestClientButtonsImageAndRoundTrip(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	conv := "a:1buttons"
	m := bridge.UserMessage{
		Text:     "Do you want to talk to a person?",
		ImageURL: "https://example.com/pic.jpg",
		Buttons:  []bridge.Button{{Title: "Yes please", Payload: "/handoff"}, {Title: "No", Payload: "/deny"}},
	}
	if _, err := f.client.Send(ctx, f.ref(conv), m); err != nil {
		t.Fatal(err)
	}
	sent := f.conn.Messages(conv)
	if len(sent) != 3 {
		t.Fatalf("sent %d activities, want text, image, card", len(sent))
	}
	if sent[0].Text != m.Text || len(sent[0].Attachments) != 0 {
		t.Errorf("first activity = %s", sent[0].Activity)
	}
	if a := sent[1].Attachments; sent[1].Text != "" || len(a) != 1 || a[0].ContentType != "image/jpeg" || a[0].ContentURL != m.ImageURL {
		t.Errorf("image activity = %s", sent[1].Activity)
	}
	if a := sent[2].Attachments; sent[2].Text != "" || len(a) != 1 || a[0].ContentType != ContentTypeAdaptiveCard {
		t.Fatalf("card activity = %s", sent[2].Activity)
	}
	var card struct {
		Type    string `json:"type"`
		Actions []struct {
			Type  string         `json:"type"`
			Title string         `json:"title"`
			Data  map[string]any `json:"data"`
		} `json:"actions"`
	}
	if err := json.Unmarshal(sent[2].Attachments[0].Content, &card); err != nil {
		t.Fatal(err)
	}
	if card.Type != "AdaptiveCard" || len(card.Actions) != 2 || card.Actions[0].Type != "Action.Submit" || card.Actions[0].Title != "Yes please" {
		t.Fatalf("card = %+v", card)
	}

	// Pressing the button posts the action's data back as a card submit;
	// the Handler turns it into the payload text.
	hf := newHandlerFixture(t, nil)
	u := teamstest.NewUser("Ada")
	status, err := hf.channel.Post(ctx, hf.channel.CardSubmit(u, card.Actions[0].Data))
	if err != nil || status != http.StatusOK {
		t.Fatalf("post submit: %d %v", status, err)
	}
	// Teams' messageBack variant: the payload arrives as the text.
	mb := card.Actions[1].Data["msteams"].(map[string]any)
	back := hf.channel.Message(u, mb["text"].(string))
	back.Value = map[string]any{"payload": card.Actions[1].Data["payload"]}
	if status, err := hf.channel.Post(ctx, back); err != nil || status != http.StatusOK {
		t.Fatalf("post messageBack: %d %v", status, err)
	}
	got := hf.inbox.all()
	if len(got) != 2 || got[0].Text != "/handoff" || got[1].Text != "/deny" {
		t.Fatalf("inbox = %+v, want the payloads", got)
	}
}

func TestClientRejectsEmptyAndBadMessages(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	tests := []struct {
		name string
		ref  bridge.ConversationRef
		m    bridge.UserMessage
	}{
		{"empty", f.ref("a:1"), bridge.UserMessage{Text: "  "}},
		{"image javascript URL", f.ref("a:1"), bridge.UserMessage{ImageURL: "javascript:alert(1)"}},
		{"no conversation", f.ref(""), bridge.UserMessage{Text: "hi"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.client.Send(ctx, tt.ref, tt.m)
			if !bridge.IsPermanent(err) {
				t.Fatalf("err = %v, want permanent", err)
			}
		})
	}
	if n := len(f.conn.Requests("")); n != 0 {
		t.Fatalf("%d requests reached the connector", n)
	}
}

// The bot token goes only to allow-listed hosts: everything else fails
// permanently before a token is even fetched.
func TestClientTokenOnlyToAllowListedHosts(t *testing.T) {
	var trapped atomic.Int32
	trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			trapped.Add(1)
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer trap.Close()
	trapPort := strings.TrimPrefix(trap.URL, "http://127.0.0.1:")

	f := newClientFixture(t, nil)
	ctx := context.Background()
	tests := []string{
		"http://localhost:" + trapPort + "/",              // loopback, but not on the list
		"https://evil.example.com/teams/",                 // not on the list
		"http://smba.trafficmanager.net/teams/",           // listed host over plain http
		"https://smba.trafficmanager.net.evil.com/teams/", // suffix trick
		"https://smba.trafficmanager.net@evil.com/",       // userinfo trick
		"https://evil.com/?x=https://smba.trafficmanager.net/",
		"ftp://smba.trafficmanager.net/",
		"not a url at all",
		"",
	}
	for _, su := range tests {
		t.Run(su, func(t *testing.T) {
			ref := f.ref("a:1")
			ref.ServiceURL = su
			_, err := f.client.Send(ctx, ref, bridge.UserMessage{Text: "secret"})
			if !bridge.IsPermanent(err) {
				t.Fatalf("err = %v, want permanent", err)
			}
			if err := f.client.Typing(ctx, ref); !bridge.IsPermanent(err) {
				t.Fatalf("typing err = %v, want permanent", err)
			}
		})
	}
	if n := f.issuer.Counts().Token; n != 0 {
		t.Fatalf("a token was fetched (%d) for a refused host", n)
	}
	if trapped.Load() != 0 {
		t.Fatal("the token reached a host that is not allow-listed")
	}

	// A listed host that redirects elsewhere does not get to forward the token.
	redirector := httptest.NewServer(http.RedirectHandler("http://localhost:"+trapPort+"/", http.StatusTemporaryRedirect))
	defer redirector.Close()
	ref := f.ref("a:1")
	ref.ServiceURL = redirector.URL
	if _, err := f.client.Send(ctx, ref, bridge.UserMessage{Text: "secret"}); !bridge.IsPermanent(err) {
		t.Fatalf("redirect: err = %v, want permanent", err)
	}
	if trapped.Load() != 0 {
		t.Fatal("a redirect carried the token to another host")
	}
}

func TestClientAllowList(t *testing.T) {
	c, err := NewClient(ClientConfig{AppID: "a", AppPassword: "p", TenantID: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wild, err := NewClient(ClientConfig{AppID: "a", AppPassword: "p", TenantID: "t", AllowedServiceURLHosts: []string{"*.botframework.com"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		c    *Client
		url  string
		want bool
	}{
		{c, "https://smba.trafficmanager.net/teams/", true},
		{c, "https://smba.trafficmanager.net/amer/", true},
		{c, "https://SMBA.TrafficManager.net:443/emea/", true},
		{c, "https://smba.infra.gcc.teams.microsoft.com/gcc/", true},
		{c, "https://smba.infra.gov.teams.microsoft.us/", true},
		{c, "https://smba.infra.dod.teams.microsoft.us/", true},
		{c, "https://webchat.botframework.com/", false},
		{c, "http://127.0.0.1:8080/", false},
		{wild, "https://webchat.botframework.com/", true},
		{wild, "https://botframework.com/", false},
		{wild, "https://smba.trafficmanager.net/teams/", false},
	}
	for _, tt := range tests {
		_, err := tt.c.endpoint(context.Background(), bridge.ConversationRef{Conversation: "a:1", ServiceURL: tt.url})
		if got := err == nil; got != tt.want {
			t.Errorf("%s: allowed = %v, want %v (%v)", tt.url, got, tt.want, err)
		}
	}
}

func TestClientTokenURL(t *testing.T) {
	tests := []struct {
		cfg     ClientConfig
		want    string
		wantErr bool
	}{
		{ClientConfig{AppID: "a", AppPassword: "p", TenantID: "contoso-tenant"}, "https://login.microsoftonline.com/contoso-tenant/oauth2/v2.0/token", false},
		{ClientConfig{AppID: "a", AppPassword: "p", MultiTenant: true}, DefaultMultiTenantTokenURL, false},
		{ClientConfig{AppID: "a", AppPassword: "p"}, "", true},
		{ClientConfig{AppID: "a", TenantID: "t"}, "", true},
		{ClientConfig{AppID: "a", AppPassword: "p", TokenURL: "http://127.0.0.1:1/tok"}, "http://127.0.0.1:1/tok", false},
	}
	for _, tt := range tests {
		c, err := NewClient(tt.cfg, nil)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%+v: err = %v", tt.cfg, err)
		}
		if err == nil && c.cfg.TokenURL != tt.want {
			t.Errorf("token URL = %q, want %q", c.cfg.TokenURL, tt.want)
		}
		if err == nil && c.cfg.Scope != DefaultScope {
			t.Errorf("scope = %q", c.cfg.Scope)
		}
	}
}

func TestClientBadCredentials(t *testing.T) {
	f := newClientFixture(t, func(c *ClientConfig) { c.AppPassword = "wrong" })
	_, err := f.client.Send(context.Background(), f.ref("a:1"), bridge.UserMessage{Text: "hi"})
	if !errors.Is(err, bridge.ErrUnauthorized) || !bridge.IsPermanent(err) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error leaks the secret: %v", err)
	}
	if n := len(f.conn.Requests("")); n != 0 {
		t.Fatalf("%d requests reached the connector without a token", n)
	}
}

func TestClientRenewsRefusedToken(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	if _, err := f.client.Send(ctx, f.ref("a:1"), bridge.UserMessage{Text: "one"}); err != nil {
		t.Fatal(err)
	}
	f.issuer.RevokeAccessTokens()
	if _, err := f.client.Send(ctx, f.ref("a:1"), bridge.UserMessage{Text: "two"}); err != nil {
		t.Fatalf("after revocation: %v", err)
	}
	if n := f.issuer.Counts().Token; n != 2 {
		t.Fatalf("token fetched %d times, want 2", n)
	}
	if got := f.conn.Messages("a:1"); len(got) != 2 || got[1].Text != "two" {
		t.Fatalf("sent = %+v", got)
	}
}

func TestClientErrorMapping(t *testing.T) {
	documented403 := `{"errorCode":209,"message":"{\r\n  \"subCode\": \"MessageWritesBlocked\",\r\n  \"details\": \"Thread is blocked from message writes.\",\r\n  \"errorCode\": null,\r\n  \"errorSubCode\": null\r\n}"}`
	tests := []struct {
		name         string
		fault        *teamstest.Fault
		block        bool
		wantErr      error // errors.Is target; nil = success
		wantPerm     bool
		wantRequests int
		wantMessage  string
	}{
		{name: "blocked (error.code)", block: true, wantErr: bridge.ErrUserUnreachable, wantPerm: true, wantRequests: 1, wantMessage: "Thread is blocked"},
		{name: "blocked (documented errorCode 209 shape)", fault: &teamstest.Fault{Status: 403, Body: documented403}, wantErr: bridge.ErrUserUnreachable, wantPerm: true, wantRequests: 1, wantMessage: "Thread is blocked"},
		{name: "blocked (innerHttpError)", fault: &teamstest.Fault{Status: 403, Body: `{"error":{"code":"Forbidden","message":"no","innerHttpError":{"statusCode":403,"body":{"error":{"subCode":"MessageWritesBlocked"}}}}}`}, wantErr: bridge.ErrUserUnreachable, wantPerm: true, wantRequests: 1},
		{name: "user blocked conversation", fault: &teamstest.Fault{Status: 403, Code: "ConversationBlockedByUser", Message: "User blocked the conversation with the bot."}, wantErr: bridge.ErrUserUnreachable, wantPerm: true, wantRequests: 1},
		{name: "other 403", fault: &teamstest.Fault{Status: 403, Code: "ForbiddenOperationException", Message: "Bot is not installed"}, wantPerm: true, wantRequests: 1, wantMessage: "Bot is not installed"},
		{name: "400", fault: &teamstest.Fault{Status: 400, Code: "BadArgument", Message: "Activity.From field is required"}, wantPerm: true, wantRequests: 1, wantMessage: "Activity.From field is required"},
		{name: "404", fault: &teamstest.Fault{Status: 404, Code: "ConversationNotFound", Message: "Conversation not found."}, wantPerm: true, wantRequests: 1, wantMessage: "Conversation not found."},
		{name: "503 twice then ok", fault: &teamstest.Fault{Status: 503, Code: "ServiceUnavailable", Times: 2}, wantRequests: 3},
		{name: "412 once then ok", fault: &teamstest.Fault{Status: 412, Code: "PreconditionFailed", Times: 1}, wantRequests: 2},
		{name: "502 once then ok", fault: &teamstest.Fault{Status: 502, Times: 1}, wantRequests: 2},
		{name: "500 forever", fault: &teamstest.Fault{Status: 500, Code: "InternalServerError", Message: "boom"}, wantErr: errAny, wantRequests: 4, wantMessage: "boom"},
		{name: "429 without Retry-After", fault: &teamstest.Fault{Status: 429, Times: 2}, wantRequests: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newClientFixture(t, func(c *ClientConfig) { c.MaxRetries = 3 })
			conv := "a:1errors"
			if tt.fault != nil {
				f.conn.Fail(conv, *tt.fault)
			}
			if tt.block {
				f.conn.Block(conv)
			}
			_, err := f.client.Send(context.Background(), f.ref(conv), bridge.UserMessage{Text: "hi"})
			switch {
			case tt.wantErr == nil && !tt.wantPerm:
				if err != nil {
					t.Fatalf("err = %v, want success", err)
				}
			case tt.wantErr == errAny:
				if err == nil || bridge.IsPermanent(err) {
					t.Fatalf("err = %v, want a retryable error", err)
				}
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := bridge.IsPermanent(err); got != tt.wantPerm {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tt.wantPerm)
			}
			if n := len(f.conn.Requests(conv)); n != tt.wantRequests {
				t.Errorf("connector saw %d requests, want %d", n, tt.wantRequests)
			}
			var se *bridge.StatusError
			if err != nil && (!errors.As(err, &se) || se.System != "teams") {
				t.Errorf("err %v carries no teams StatusError", err)
			}
			if tt.wantMessage != "" && (se == nil || !strings.Contains(se.Message, tt.wantMessage)) {
				t.Errorf("StatusError = %+v, want message %q", se, tt.wantMessage)
			}
		})
	}
}

var errAny = errors.New("any retryable error")

// TestClientThrottled: a 429 (or a 503 with Retry-After) asking for a wait
// the call cannot make ends Send at once with a *bridge.ThrottledError
// naming when to try again, so the dispatcher reschedules without counting
// a failure.
func TestClientThrottled(t *testing.T) {
	tests := []struct {
		name     string
		fault    teamstest.Fault
		cfg      func(*ClientConfig)
		deadline time.Duration // 0: none
		wantWait time.Duration
	}{
		{"429 beyond MaxRetryAfter", teamstest.Fault{Status: 429, RetryAfter: "120"}, func(c *ClientConfig) { c.MaxRetryAfter = time.Second }, 0, 120 * time.Second},
		{"503 with Retry-After beyond MaxRetryAfter", teamstest.Fault{Status: 503, RetryAfter: "90"}, func(c *ClientConfig) { c.MaxRetryAfter = time.Second }, 0, 90 * time.Second},
		{"429 beyond the call's deadline", teamstest.Fault{Status: 429, RetryAfter: "30"}, func(*ClientConfig) {}, 5 * time.Second, 30 * time.Second},
		{"429 storm outlasting the retries", teamstest.Fault{Status: 429, RetryAfter: "0"}, func(c *ClientConfig) { c.MaxRetries = 2 }, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newClientFixture(t, tt.cfg)
			f.conn.Fail("a:1", tt.fault)
			ctx := context.Background()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			start := time.Now()
			_, err := f.client.Send(ctx, f.ref("a:1"), bridge.UserMessage{Text: "hi"})
			th, ok := bridge.Throttled(err)
			if !ok || bridge.IsPermanent(err) || th.Destination != "teams" {
				t.Fatalf("err = %v, want a teams ThrottledError", err)
			}
			if got := th.Until.Sub(start); got < tt.wantWait-time.Second || got > tt.wantWait+5*time.Second {
				t.Errorf("throttled until +%s, want about +%s", got, tt.wantWait)
			}
			if time.Since(start) > 4*time.Second {
				t.Error("waited for a Retry-After the call could not honour")
			}
			var se *bridge.StatusError
			if !errors.As(err, &se) || se.Status != tt.fault.Status {
				t.Errorf("err %v does not carry the HTTP %d StatusError", err, tt.fault.Status)
			}
		})
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		h    string
		want time.Duration
		ok   bool
	}{
		{"3", 3 * time.Second, true},
		{"0", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{now.Add(-10 * time.Second).Format(http.TimeFormat), 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := retryAfter(tt.h, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.h, got, ok, tt.want, tt.ok)
		}
	}
}

// A 429 storm: the Connector throttles three conversations for 1.5 s while
// 10 messages each are sent. Retry-After is honoured (one 429 per
// conversation, not a hammering), nothing is lost and the order is kept.
func TestClient429StormHonoured(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	convs := []string{"a:storm1", "a:storm2", "a:storm3"}
	for _, c := range convs {
		f.conn.ThrottleFor(c, 1500*time.Millisecond)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(convs))
	for _, c := range convs {
		wg.Go(func() {
			for i := range 10 {
				if _, err := f.client.Send(ctx, f.ref(c), bridge.UserMessage{Text: fmt.Sprintf("%s #%d", c, i)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, c := range convs {
		sent := f.conn.Messages(c)
		if len(sent) != 10 {
			t.Fatalf("%s: %d delivered, want 10", c, len(sent))
		}
		for i, s := range sent {
			if want := fmt.Sprintf("%s #%d", c, i); s.Text != want {
				t.Fatalf("%s: message %d = %q, want %q", c, i, s.Text, want)
			}
		}
		if sent[0].At.Sub(start) < 1400*time.Millisecond {
			t.Errorf("%s: first delivery %v after start, inside the throttle window", c, sent[0].At.Sub(start))
		}
		if n := f.conn.CountStatus(c, http.StatusTooManyRequests); n != 1 {
			t.Errorf("%s: %d answers 429, want 1 (Retry-After honoured)", c, n)
		}
	}
}

// A burst of 100 messages to one conversation is paced within Teams'
// per-conversation limits. The windows are scaled by timeScale (see there).
// What the client controls is when it lets each request go, so the limits are
// checked on those admission times; arrival times at the connector add the
// machine's scheduling jitter, which on a loaded machine can exceed the
// pacing's guard (the 429s that then come back are retried and logged, and
// BenchmarkClientTenantRate measures them at Teams' real limits).
func TestClientBurstPacedWithinLimits(t *testing.T) {
	f := newClientFixture(t, nil)
	adm := recordAdmissions(f.client)
	ctx := context.Background()
	conv := "a:burst"
	start := time.Now()
	for i := range 100 {
		if _, err := f.client.Send(ctx, f.ref(conv), bridge.UserMessage{Text: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	sent := f.conn.Messages(conv)
	if len(sent) != 100 {
		t.Fatalf("%d delivered, want 100", len(sent))
	}
	for i, s := range sent {
		if s.Text != fmt.Sprint(i) {
			t.Fatalf("message %d = %q: order lost", i, s.Text)
		}
	}
	if got := len(adm.conv(conv)); got < 100 {
		t.Fatalf("%d admissions recorded for 100 messages", got)
	}
	for _, w := range scaledWindows() {
		if worst := mostInWindow(adm.conv(conv), w.Per); worst > w.N {
			t.Errorf("%d requests let go within %v, limit %d", worst, w.Per, w.N)
		}
	}
	t.Logf("100 messages in %v (scaled windows; real time ×%d ≈ %v), %d answered 429", elapsed, timeScale, elapsed*timeScale,
		f.conn.CountStatus(conv, http.StatusTooManyRequests))
}

// admissions records when the client's pacer let each request go.
type admissions struct {
	mu      sync.Mutex
	convs   map[bridge.ConversationID][]time.Time
	tenants map[string][]time.Time
}

func recordAdmissions(c *Client) *admissions {
	a := &admissions{convs: map[bridge.ConversationID][]time.Time{}, tenants: map[string][]time.Time{}}
	c.pacer.mu.Lock()
	defer c.pacer.mu.Unlock()
	c.pacer.admitted = func(conv bridge.ConversationID, tenant string, at time.Time) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.convs[conv] = append(a.convs[conv], at)
		a.tenants[tenant] = append(a.tenants[tenant], at)
	}
	return a
}

func (a *admissions) conv(id string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.convs[bridge.ConversationID(id)])
}

func (a *admissions) tenant(id string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.tenants[id])
}

func TestClientSplitsLongMessages(t *testing.T) {
	f := newClientFixture(t, func(c *ClientConfig) { c.MaxMessageBytes = 16 << 10 })
	f.conn.SetMaxMessageBytes(20 << 10)
	var b strings.Builder
	for i := 0; b.Len() < 60000; i++ {
		fmt.Fprintf(&b, "Paragraph %d: ünïcödé 日本語 text with emoji 🎉 and \"quotes\".\n\n", i)
	}
	text := strings.TrimSpace(b.String())
	if _, err := f.client.Send(context.Background(), f.ref("a:long"), bridge.UserMessage{Text: text}); err != nil {
		t.Fatal(err)
	}
	sent := f.conn.Messages("a:long")
	if len(sent) < 3 {
		t.Fatalf("%d activities, want the text split", len(sent))
	}
	if n := f.conn.CountStatus("a:long", http.StatusRequestEntityTooLarge); n != 0 {
		t.Fatalf("%d answers 413", n)
	}
	var parts []string
	for i, s := range sent {
		if size := utf16Size(s.Activity); size > 16<<10 {
			t.Errorf("part %d is %d UTF-16 bytes", i, size)
		}
		if !utf8.ValidString(s.Text) {
			t.Errorf("part %d is not valid UTF-8", i)
		}
		body, ok := strings.CutSuffix(s.Text, continuedMarker)
		if ok == (i == len(sent)-1) {
			t.Errorf("part %d: marker present = %v", i, ok)
		}
		parts = append(parts, body)
	}
	if got := strings.Join(parts, "\n\n"); got != text {
		t.Fatal("the parts do not add up to the text")
	}
}

func TestClientHalvesOn413(t *testing.T) {
	f := newClientFixture(t, nil) // 80 KiB budget
	f.conn.SetMaxMessageBytes(20 << 10)
	text := strings.Repeat("word ", 14000) // 70000 chars: one part for the client
	if _, err := f.client.Send(context.Background(), f.ref("a:413"), bridge.UserMessage{Text: text}); err != nil {
		t.Fatal(err)
	}
	if n := f.conn.CountStatus("a:413", http.StatusRequestEntityTooLarge); n == 0 {
		t.Fatal("expected the connector to refuse the first attempt")
	}
	sent := f.conn.Messages("a:413")
	var parts []string
	for i, s := range sent {
		body, ok := strings.CutSuffix(s.Text, continuedMarker)
		if ok == (i == len(sent)-1) {
			t.Errorf("part %d: marker present = %v", i, ok)
		}
		parts = append(parts, body)
	}
	if got := strings.Join(parts, " "); got != strings.TrimSpace(text) && got != text {
		t.Fatalf("parts do not add up: %d parts", len(parts))
	}
}

func TestClientTruncatesPastMaxParts(t *testing.T) {
	f := newClientFixture(t, func(c *ClientConfig) {
		c.MaxMessageBytes = 8 << 10
		c.MaxParts = 2
	})
	text := strings.Repeat("abcdefghij ", 3000)
	if _, err := f.client.Send(context.Background(), f.ref("a:trunc"), bridge.UserMessage{Text: text}); err != nil {
		t.Fatal(err)
	}
	sent := f.conn.Messages("a:trunc")
	if len(sent) != 2 {
		t.Fatalf("%d parts, want 2", len(sent))
	}
	if !strings.HasSuffix(sent[0].Text, continuedMarker) || !strings.HasSuffix(sent[1].Text, truncatedMarker) {
		t.Fatalf("markers: %q … %q", sent[0].Text[len(sent[0].Text)-20:], sent[1].Text[len(sent[1].Text)-30:])
	}
}

// A Send that fails after its first activity went out resumes on the retry
// instead of repeating it.
func TestClientResumesPartlySentMessage(t *testing.T) {
	f := newClientFixture(t, func(c *ClientConfig) { c.MaxRetries = -1 })
	ctx := context.Background()
	conv := "a:resume"
	m := bridge.UserMessage{Text: "Pick one", Buttons: []bridge.Button{{Title: "A", Payload: "a"}}}
	f.conn.Fail(conv, teamstest.Fault{Status: 503, Skip: 1, Times: 1})
	if _, err := f.client.Send(ctx, f.ref(conv), m); err == nil || bridge.IsPermanent(err) {
		t.Fatalf("first Send: err = %v, want retryable", err)
	}
	id, err := f.client.Send(ctx, f.ref(conv), m)
	if err != nil {
		t.Fatal(err)
	}
	sent := f.conn.Messages(conv)
	if len(sent) != 2 || sent[0].Text != "Pick one" || len(sent[1].Attachments) != 1 {
		t.Fatalf("sent = %+v, want the text once and the card", sent)
	}
	if id != sent[0].ID {
		t.Fatalf("id = %q, want the first part's %q", id, sent[0].ID)
	}
	// The same message again is a new message.
	if _, err := f.client.Send(ctx, f.ref(conv), m); err != nil {
		t.Fatal(err)
	}
	if n := len(f.conn.Messages(conv)); n != 4 {
		t.Fatalf("%d sent, want 4", n)
	}
}

func TestClientTyping(t *testing.T) {
	f := newClientFixture(t, nil)
	ctx := context.Background()
	if err := f.client.Typing(ctx, f.ref("a:typing")); err != nil {
		t.Fatal(err)
	}
	sent := f.conn.Sent("a:typing")
	if len(sent) != 1 || sent[0].Type != "typing" {
		t.Fatalf("sent = %+v", sent)
	}
	time.Sleep(50 * time.Millisecond) // typing is skipped, not delayed, when the pacing budget is spent
	f.conn.Block("a:typing")
	if err := f.client.Typing(ctx, f.ref("a:typing")); !errors.Is(err, bridge.ErrUserUnreachable) {
		t.Fatalf("blocked typing: %v", err)
	}
	f.conn.Unblock("a:typing")
	f.conn.Fail("a:typing", teamstest.Fault{Status: 503, Times: 1})
	time.Sleep(50 * time.Millisecond)
	if err := f.client.Typing(ctx, f.ref("a:typing")); err == nil {
		t.Fatal("typing 503: want an error (no retries)")
	}
	if n := len(f.conn.Requests("a:typing")); n != 3 {
		t.Fatalf("%d requests, want 3: typing is never retried", n)
	}
}

func TestClientConcurrentConversations(t *testing.T) {
	f := newClientFixture(t, func(c *ClientConfig) { c.Pacing.MaxConversations = 4 })
	ctx := context.Background()
	var wg sync.WaitGroup
	for c := range 12 {
		wg.Go(func() {
			conv := fmt.Sprintf("a:conc%d", c)
			for i := range 5 {
				if _, err := f.client.Send(ctx, f.ref(conv), bridge.UserMessage{Text: fmt.Sprint(i)}); err != nil {
					t.Error(err)
					return
				}
				_ = f.client.Typing(ctx, f.ref(conv))
			}
		})
	}
	wg.Wait()
	for c := range 12 {
		conv := fmt.Sprintf("a:conc%d", c)
		sent := f.conn.Messages(conv)
		if len(sent) != 5 {
			t.Fatalf("%s: %d delivered", conv, len(sent))
		}
		for i, s := range sent {
			if s.Text != fmt.Sprint(i) {
				t.Fatalf("%s: order lost", conv)
			}
		}
	}
	f.client.pacer.mu.Lock()
	n := len(f.client.pacer.convs)
	f.client.pacer.mu.Unlock()
	if n > 12 {
		t.Fatalf("pacer holds %d conversations", n)
	}
}

func TestClientAnonymousDev(t *testing.T) {
	conn := teamstest.NewConnector(teamstest.ConnectorConfig{Limits: []teamstest.Window{}})
	defer conn.Close()
	c, err := NewClient(ClientConfig{AnonymousDev: true, ExtraServiceURLHosts: []string{"smba.trafficmanager.net"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := bridge.ConversationRef{Conversation: "a:1", ServiceURL: strings.Replace(conn.ServiceURL(), "127.0.0.1", "localhost", 1)}
	if _, err := c.Send(context.Background(), ref, bridge.UserMessage{Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	ref.ServiceURL = "https://smba.trafficmanager.net/teams/"
	if _, err := c.Send(context.Background(), ref, bridge.UserMessage{Text: "hi"}); !bridge.IsPermanent(err) {
		t.Fatalf("anonymous client to a public host: %v", err)
	}
}
