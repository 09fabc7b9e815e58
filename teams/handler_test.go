package teams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams/teamstest"
)

const testAppID = "11111111-2222-3333-4444-555555555555"
const testTenant = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

// recordingInbox records what reaches it; err, when set, is returned.
type recordingInbox struct {
	mu  sync.Mutex
	got []bridge.UserActivity
	err error
}

func (in *recordingInbox) UserActivity(ctx context.Context, a bridge.UserActivity) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.err != nil {
		return in.err
	}
	in.got = append(in.got, a)
	return nil
}

func (in *recordingInbox) all() []bridge.UserActivity {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]bridge.UserActivity(nil), in.got...)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// clock is a settable clock shared by the handler and the issuer.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type handlerFixture struct {
	issuer  *teamstest.Issuer
	channel *teamstest.Channel
	inbox   *recordingInbox
	handler *Handler
	server  *httptest.Server
	clock   *clock
	user    teamstest.User
}

func newHandlerFixture(t *testing.T, mutate func(*HandlerConfig)) *handlerFixture {
	t.Helper()
	f := &handlerFixture{issuer: teamstest.NewIssuer(), inbox: &recordingInbox{}, clock: &clock{t: time.Now()}}
	t.Cleanup(f.issuer.Close)
	f.issuer.SetClock(f.clock.Now)
	cfg := HandlerConfig{
		AppID:             testAppID,
		OpenIDMetadataURL: f.issuer.MetadataURL(),
		Now:               f.clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := NewHandler(cfg, f.inbox, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	f.handler = h
	t.Cleanup(h.keys.close) // after the server: a fetch a request started ends before the test does
	f.server = httptest.NewServer(h)
	t.Cleanup(f.server.Close)
	f.channel = &teamstest.Channel{
		Issuer:     f.issuer,
		AppID:      testAppID,
		BotName:    "Helpdesk",
		ServiceURL: "https://smba.trafficmanager.net/emea/",
		BotURL:     f.server.URL + "/api/messages",
		TenantID:   testTenant,
	}
	f.user = teamstest.NewUser("Ada Lovelace")
	return f
}

func TestHandlerRejectsForgedAndMalformedRequests(t *testing.T) {
	f := newHandlerFixture(t, func(c *HandlerConfig) { c.MaxBody = 4096 })
	ctx := context.Background()
	msg := f.channel.Message(f.user, "hello")
	valid := teamstest.Bearer(f.channel.Token(teamstest.TokenValid))
	body, _ := json.Marshal(msg)
	big := f.channel.Message(f.user, strings.Repeat("x", 5000))
	bigBody, _ := json.Marshal(big)
	otherService := msg
	otherService.ServiceURL = "https://smba.trafficmanager.net/amer/"
	webchat := msg
	webchat.ChannelID = "webchat"

	tests := []struct {
		name string
		auth string
		body []byte
		want int
	}{
		{"no Authorization header", "", body, http.StatusUnauthorized},
		{"wrong scheme", "Basic " + f.channel.Token(teamstest.TokenValid), body, http.StatusUnauthorized},
		{"empty bearer", "Bearer ", body, http.StatusUnauthorized},
		{"garbage bearer", "Bearer not.a.jwt", body, http.StatusUnauthorized},
		{"expired", teamstest.Bearer(f.channel.Token(teamstest.TokenExpired)), body, http.StatusUnauthorized},
		{"not yet valid", teamstest.Bearer(f.channel.Token(teamstest.TokenNotYetValid)), body, http.StatusUnauthorized},
		{"wrong issuer", teamstest.Bearer(f.channel.Token(teamstest.TokenWrongIssuer)), body, http.StatusUnauthorized},
		{"wrong audience", teamstest.Bearer(f.channel.Token(teamstest.TokenWrongAudience)), body, http.StatusUnauthorized},
		{"unknown key", teamstest.Bearer(f.channel.Token(teamstest.TokenUnknownKey)), body, http.StatusUnauthorized},
		{"published kid, other key's signature", teamstest.Bearer(f.channel.Token(teamstest.TokenBadSignature)), body, http.StatusUnauthorized},
		{"alg HS256 with the public key", teamstest.Bearer(f.channel.Token(teamstest.TokenAlgHS256)), body, http.StatusUnauthorized},
		{"alg none", teamstest.Bearer(f.channel.Token(teamstest.TokenAlgNone)), body, http.StatusUnauthorized},
		{"no exp", teamstest.Bearer(f.channel.Token(teamstest.TokenNoExpiry)), body, http.StatusUnauthorized},
		{"no serviceurl claim", teamstest.Bearer(f.channel.Token(teamstest.TokenNoServiceURL)), body, http.StatusUnauthorized},
		{"wrong serviceurl claim", teamstest.Bearer(f.channel.Token(teamstest.TokenWrongServiceURL)), body, http.StatusUnauthorized},
		{"activity serviceUrl differs from the claim", valid, mustJSON(t, otherService), http.StatusUnauthorized},
		{"key not endorsed for msteams", teamstest.Bearer(f.channel.Token(teamstest.TokenUnendorsedKey)), body, http.StatusForbidden},
		{"channel the key is not endorsed for", valid, mustJSON(t, webchat), http.StatusForbidden},
		{"malformed JSON", valid, []byte(`{"type":"message",`), http.StatusBadRequest},
		{"JSON array", valid, []byte(`[{"type":"message"}]`), http.StatusBadRequest},
		{"empty body", valid, nil, http.StatusBadRequest},
		{"oversized body", valid, bigBody, http.StatusRequestEntityTooLarge},
		{"oversized body without token", "", bigBody, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, err := f.channel.PostRaw(ctx, tt.body, tt.auth)
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.want {
				t.Errorf("status = %d, want %d", status, tt.want)
			}
			if got := f.inbox.all(); len(got) != 0 {
				t.Errorf("the inbox received %d activities", len(got))
			}
		})
	}
}

func TestHandlerAcceptsValidTokens(t *testing.T) {
	f := newHandlerFixture(t, nil)
	ctx := context.Background()
	msg := f.channel.Message(f.user, "hello")
	tests := []struct {
		name   string
		mutate func(*teamstest.Activity)
		token  string
	}{
		{"valid", nil, f.channel.Token(teamstest.TokenValid)},
		{"expired within the leeway", nil, f.channel.Token(teamstest.TokenExpiredInLeeway)},
		{"audience api://botid-", nil, f.issuer.Sign(teamstest.Claims{Audience: "api://botid-" + testAppID, ServiceURL: msg.ServiceURL})},
		{"audience api://", nil, f.issuer.Sign(teamstest.Claims{Audience: "api://" + testAppID, ServiceURL: msg.ServiceURL})},
		{"serviceUrl differs in case and trailing slash", func(a *teamstest.Activity) { a.ServiceURL = "HTTPS://SMBA.trafficmanager.net/EMEA" }, f.channel.Token(teamstest.TokenValid)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := msg
			a.ID = "act-" + string(rune('a'+i))
			if tt.mutate != nil {
				tt.mutate(&a)
			}
			status, err := f.channel.PostWithAuth(ctx, a, teamstest.Bearer(tt.token))
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusOK {
				t.Fatalf("status = %d, want 200", status)
			}
			got := f.inbox.all()
			if len(got) != i+1 || got[i].ID != a.ID {
				t.Fatalf("inbox = %+v, want activity %s last", got, a.ID)
			}
		})
	}
}

// A request whose token fails must not even have its body read.
func TestHandlerReadsNoBodyBeforeAuthentication(t *testing.T) {
	f := newHandlerFixture(t, nil)
	body := &trackingReader{r: strings.NewReader(`{"type":"message"}`)}
	req := httptest.NewRequest(http.MethodPost, "/api/messages", body)
	req.Header.Set("Authorization", teamstest.Bearer(f.channel.Token(teamstest.TokenExpired)))
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", rec.Code)
	}
	if body.reads != 0 {
		t.Fatalf("body was read %d times before authentication", body.reads)
	}
}

type trackingReader struct {
	r     io.Reader
	reads int
}

func (t *trackingReader) Read(p []byte) (int, error) {
	t.reads++
	return t.r.Read(p)
}

func TestHandlerKeyRotation(t *testing.T) {
	f := newHandlerFixture(t, func(c *HandlerConfig) { c.KeyRefetchSpacing = 20 * time.Millisecond })
	ctx := context.Background()
	post := func(name string, tok string, want int) {
		t.Helper()
		status, err := f.channel.PostWithAuth(ctx, f.channel.Message(f.user, name), teamstest.Bearer(tok))
		if err != nil {
			t.Fatal(err)
		}
		if status != want {
			t.Fatalf("%s: status = %d, want %d", name, status, want)
		}
	}
	fetches := func(name string, want int) {
		t.Helper()
		if n := f.issuer.Counts().JWKS; n != want {
			t.Fatalf("%s: JWKS fetched %d times, want %d", name, n, want)
		}
	}
	post("first key", f.channel.Token(teamstest.TokenValid), http.StatusOK)
	fetches("first request", 1)

	newKey, oldKey := f.issuer.Rotate()
	f.issuer.Retire(oldKey)
	oldTok := f.issuer.Sign(teamstest.Claims{Audience: testAppID, ServiceURL: f.channel.ServiceURL, Key: oldKey})

	post("new key, unknown kid: refetched", f.channel.Token(teamstest.TokenValid), http.StatusOK)
	fetches("unknown kid", 2)
	post("retired key", oldTok, http.StatusUnauthorized)
	fetches("retired key: one more fetch", 3)
	post("retired key again", oldTok, http.StatusUnauthorized)
	fetches("a kid a fresh fetch did not find is refused without fetching", 3)
	post("unknown key", f.channel.Token(teamstest.TokenUnknownKey), http.StatusUnauthorized)
	fetches("another plausible unknown kid", 4)
	junk := []string{
		f.issuer.Sign(teamstest.Claims{Audience: "someone-else", ServiceURL: f.channel.ServiceURL, Key: f.issuer.UnpublishedKey()}),
		f.issuer.Sign(teamstest.Claims{Audience: testAppID, ServiceURL: f.channel.ServiceURL, Key: f.issuer.UnpublishedKey(), Expiry: time.Now().Add(-time.Hour)}),
		f.issuer.Sign(teamstest.Claims{Audience: testAppID, Key: f.issuer.UnpublishedKey(), Extra: map[string]any{"serviceurl": nil}}),
		f.issuer.Sign(teamstest.Claims{Audience: testAppID, ServiceURL: f.channel.ServiceURL, Key: f.issuer.UnpublishedKey(), Issuer: "https://evil.example.com"}),
	}
	for i, tok := range junk {
		post(fmt.Sprintf("junk %d", i), tok, http.StatusUnauthorized)
	}
	fetches("junk with claims that fail anyway never fetches", 4)
	post("new key again", f.issuer.Sign(teamstest.Claims{Audience: testAppID, ServiceURL: f.channel.ServiceURL, Key: newKey}), http.StatusOK)

	// A day later the cached set still serves at once; a fetch starts in the
	// background.
	// (A request within the spacing of the last fetch starts none: the next
	// one does.)
	f.clock.Advance(25 * time.Hour)
	deadline := time.Now().Add(30 * time.Second)
	n := 0
	for f.issuer.Counts().JWKS == 4 && time.Now().Before(deadline) {
		post("after a day", f.channel.Token(teamstest.TokenValid), http.StatusOK)
		n++
		time.Sleep(5 * time.Millisecond)
	}
	for f.issuer.Counts().JWKS == 5 && time.Now().Before(deadline) {
		f.handler.keys.mu.Lock()
		done := f.handler.keys.inflight == nil
		f.handler.keys.mu.Unlock()
		if done {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	fetches("daily refresh", 5)
	if got := len(f.inbox.all()); got != 3+n {
		t.Fatalf("inbox got %d activities, want %d", got, 3+n)
	}
}

func TestHandlerKeysUnavailable(t *testing.T) {
	f := newHandlerFixture(t, func(c *HandlerConfig) { c.OpenIDMetadataURL = "http://127.0.0.1:1/nothing" })
	status, err := f.channel.Post(context.Background(), f.channel.Message(f.user, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", status)
	}
	if len(f.inbox.all()) != 0 {
		t.Fatal("inbox received an activity")
	}
}

func TestHandlerInboxErrorIs500(t *testing.T) {
	f := newHandlerFixture(t, nil)
	f.inbox.err = errors.New("database down")
	status, err := f.channel.Post(context.Background(), f.channel.Message(f.user, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", status)
	}
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	f := newHandlerFixture(t, nil)
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/messages", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != http.MethodPost {
		t.Fatalf("GET: status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestHandlerMapsActivities(t *testing.T) {
	f := newHandlerFixture(t, nil)
	ctx := context.Background()
	u := f.user
	ch := f.channel
	conv := bridge.ConversationID(ch.ConversationID(u))

	withAttachments := ch.Message(u, "see attached")
	withAttachments.Attachments = []teamstest.Attachment{
		{ContentType: "text/html", Content: "<p>see attached</p>"},
		{ContentType: "image/png", ContentURL: "https://smba.trafficmanager.net/emea/v3/attachments/1/views/original"},
		{ContentType: "application/vnd.microsoft.teams.file.download.info", Name: "report.pdf", ContentURL: "https://contoso.sharepoint.com/report.pdf", Content: map[string]any{"downloadUrl": "https://download/1"}},
		{ContentType: "application/vnd.microsoft.teams.file.download.info", Name: "b.txt", Content: map[string]any{"downloadUrl": "https://download/2"}},
		{ContentType: "image/png", ContentURL: "data:image/png;base64,AAAA"},
	}
	groupChat := ch.Message(u, "hi all")
	groupChat.Conversation.ConversationType = "groupChat"
	groupChat.Conversation.ID = "19:group@thread.v2"
	noTenant := ch.Message(u, "tenant from channelData")
	noTenant.Conversation.TenantID = ""
	updateOther := ch.ConversationUpdate(u)
	updateOther.MembersAdded = []teamstest.Account{{ID: "29:someone-else"}}
	removed := ch.ConversationUpdate(u)
	removed.MembersAdded = nil
	removed.MembersRemoved = []teamstest.Account{{ID: ch.BotID()}}
	reaction := ch.Message(u, "")
	reaction.Type = "messageReaction"
	invoke := ch.Message(u, "")
	invoke.Type = "invoke"
	empty := ch.Message(u, "   ")

	tests := []struct {
		name     string
		act      teamstest.Activity
		wantKind bridge.ActivityKind // "" = ignored
		wantText string
		wantConv bridge.ConversationID
		wantType string
		wantTen  string
	}{
		{"text message", ch.Message(u, "  my laptop is broken "), bridge.ActivityMessage, "my laptop is broken", conv, "personal", testTenant},
		{"attachments become links", withAttachments, bridge.ActivityMessage, "see attached\nreport.pdf: https://contoso.sharepoint.com/report.pdf\nb.txt: https://download/2", conv, "personal", testTenant},
		{"card submit payload", ch.CardSubmit(u, map[string]any{"payload": "/restart", "msteams": map[string]any{"type": "messageBack"}}), bridge.ActivityMessage, "/restart", conv, "personal", testTenant},
		{"card submit text field", ch.CardSubmit(u, map[string]any{"text": "yes"}), bridge.ActivityMessage, "yes", conv, "personal", testTenant},
		{"card submit form", ch.CardSubmit(u, map[string]any{"seat": 12, "name": "Ada", "msteams": map[string]any{"type": "messageBack"}}), bridge.ActivityMessage, `{"name":"Ada","seat":12}`, conv, "personal", testTenant},
		{"card submit string value", ch.CardSubmit(u, "plain"), bridge.ActivityMessage, "plain", conv, "personal", testTenant},
		{"card submit array value", ch.CardSubmit(u, []any{1, "two"}), bridge.ActivityMessage, `[1,"two"]`, conv, "personal", testTenant},
		{"group chat is passed on", groupChat, bridge.ActivityMessage, "hi all", "19:group@thread.v2", "groupChat", testTenant},
		{"tenant from channelData", noTenant, bridge.ActivityMessage, "tenant from channelData", conv, "personal", testTenant},
		{"bot added", ch.ConversationUpdate(u), bridge.ActivityInstall, "", conv, "personal", testTenant},
		{"someone else added", updateOther, bridge.ActivityUpdate, "", conv, "personal", testTenant},
		{"bot removed from the conversation", removed, bridge.ActivityRemoved, "", conv, "personal", testTenant},
		{"installation add", ch.InstallationUpdate(u, "add"), bridge.ActivityInstall, "", conv, "personal", testTenant},
		{"installation remove", ch.InstallationUpdate(u, "remove"), bridge.ActivityRemoved, "", conv, "personal", testTenant},
		{"installation upgrade", ch.InstallationUpdate(u, "add-upgrade"), bridge.ActivityUpdate, "", conv, "personal", testTenant},
		{"typing", ch.Typing(u), bridge.ActivityTyping, "", conv, "personal", testTenant},
		{"reaction ignored", reaction, "", "", "", "", ""},
		{"invoke ignored", invoke, "", "", "", "", ""},
		{"empty message ignored", empty, "", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.inbox.all())
			status, err := ch.Post(ctx, tt.act)
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusOK {
				t.Fatalf("status = %d, want 200", status)
			}
			got := f.inbox.all()[before:]
			if tt.wantKind == "" {
				if len(got) != 0 {
					t.Fatalf("ignored activity reached the inbox: %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("inbox got %d activities, want 1", len(got))
			}
			a := got[0]
			if a.Kind != tt.wantKind || a.Text != tt.wantText || a.ID != tt.act.ID {
				t.Errorf("got kind %q text %q id %q, want %q %q %q", a.Kind, a.Text, a.ID, tt.wantKind, tt.wantText, tt.act.ID)
			}
			want := bridge.ConversationRef{
				Conversation:     tt.wantConv,
				ServiceURL:       ch.ServiceURL,
				ChannelID:        "msteams",
				ConversationType: tt.wantType,
				TenantID:         tt.wantTen,
				BotID:            "28:" + testAppID,
				BotName:          "Helpdesk",
				UserID:           u.ID,
				UserName:         u.Name,
				UserAADID:        u.AADObjectID,
				Locale:           "en-US",
				UpdatedAt:        a.Ref.UpdatedAt,
			}
			if a.Ref != want {
				t.Errorf("ref = %+v\nwant  %+v", a.Ref, want)
			}
			if !a.At.Equal(tt.act.Timestamp) {
				t.Errorf("At = %v, want %v", a.At, tt.act.Timestamp)
			}
		})
	}
}

// Shapes msbotbuilder's types cannot decode must not fail the activity.
func TestDecodeActivityTolerance(t *testing.T) {
	tests := []struct {
		name, body, wantText string
		wantErr              bool
	}{
		{"non-object value", `{"type":"message","conversation":{"id":"a:1"},"value":[1,2]}`, "[1,2]", false},
		{"string isGroup", `{"type":"message","text":"hi","conversation":{"id":"a:1","isGroup":"yes"}}`, "hi", false},
		{"odd timestamp", `{"type":"message","text":"hi","timestamp":"yesterday","conversation":{"id":"a:1"}}`, "hi", false},
		{"numeric timestamp", `{"type":"message","text":"hi","timestamp":12,"localTimestamp":{},"conversation":{"id":"a:1"}}`, "hi", false},
		{"channelData array", `{"type":"message","text":"hi","channelData":[],"conversation":{"id":"a:1"}}`, "hi", false},
		{"entities with extra fields", `{"type":"message","text":"hi","entities":[{"type":"mention","mentioned":{"id":"28:x"}}],"conversation":{"id":"a:1"}}`, "hi", false},
		{"truncated", `{"type":"message"`, "", true},
		{"not an object", `"message"`, "", true},
	}
	now := time.Now()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := decodeActivity([]byte(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			ua, ok, err := mapActivity(a, now)
			if err != nil || !ok {
				t.Fatalf("map: ok=%v err=%v", ok, err)
			}
			if ua.Text != tt.wantText {
				t.Errorf("text = %q, want %q", ua.Text, tt.wantText)
			}
		})
	}
}

func TestMapActivityWithoutConversationIs400(t *testing.T) {
	f := newHandlerFixture(t, nil)
	a := f.channel.Message(f.user, "hi")
	a.Conversation.ID = ""
	status, err := f.channel.Post(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400", status)
	}
}

func TestAnonymousDev(t *testing.T) {
	if _, err := NewHandler(HandlerConfig{AnonymousDev: true, ListenAddr: ":3978"}, &recordingInbox{}, nil); err == nil {
		t.Fatal("anonymous dev mode accepted on all interfaces")
	}
	if _, err := NewHandler(HandlerConfig{AnonymousDev: true, ListenAddr: "0.0.0.0:3978"}, &recordingInbox{}, nil); err == nil {
		t.Fatal("anonymous dev mode accepted on 0.0.0.0")
	}
	f := newHandlerFixture(t, func(c *HandlerConfig) {
		c.AnonymousDev = true
		c.ListenAddr = "127.0.0.1:3978"
	})
	f.channel.ServiceURL = "http://localhost:56150/_connector" // the Playground's mock connector
	ctx := context.Background()
	msg := f.channel.Message(f.user, "anonymous hello")
	status, err := f.channel.PostWithAuth(ctx, msg, "")
	if err != nil || status != http.StatusOK {
		t.Fatalf("anonymous loopback request: status %d, err %v", status, err)
	}
	// A token that is present is still verified.
	status, err = f.channel.PostWithAuth(ctx, msg, teamstest.Bearer(f.channel.Token(teamstest.TokenExpired)))
	if err != nil || status != http.StatusUnauthorized {
		t.Fatalf("expired token in anonymous mode: status %d, err %v", status, err)
	}
	// A request from a non-loopback peer needs a token.
	req := httptest.NewRequest(http.MethodPost, "/api/messages", bytes.NewReader(mustJSON(t, msg)))
	req.RemoteAddr = "192.0.2.10:4711"
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("anonymous request from a remote peer: status %d", rec.Code)
	}
	// Nor through a reverse proxy on the same host.
	req = httptest.NewRequest(http.MethodPost, "/api/messages", bytes.NewReader(mustJSON(t, msg)))
	req.RemoteAddr = "127.0.0.1:4711"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	rec = httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("anonymous request through a proxy: status %d", rec.Code)
	}
	if got := f.inbox.all(); len(got) != 1 || got[0].Text != "anonymous hello" {
		t.Fatalf("inbox = %+v", got)
	}

	// Without an AppID there is no audience to check: tokens are refused.
	g := newHandlerFixture(t, func(c *HandlerConfig) {
		c.AppID = ""
		c.AnonymousDev = true
		c.ListenAddr = "localhost:3978"
	})
	if status, err := g.channel.Post(ctx, g.channel.Message(g.user, "hi")); err != nil || status != http.StatusUnauthorized {
		t.Fatalf("token without a configured AppID: status %d, err %v", status, err)
	}
}

func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:3978", true},
		{"127.1.2.3:80", true},
		{"localhost:3978", true},
		{"LOCALHOST:1", true},
		{"[::1]:3978", true},
		{"::1", true},
		{"127.0.0.1", true},
		{":3978", false},
		{"", false},
		{"0.0.0.0:3978", false},
		{"[::]:3978", false},
		{"192.168.1.10:3978", false},
		{"example.com:3978", false},
		{"localhost.example.com:80", false},
	}
	for _, tt := range tests {
		if got := LoopbackOnly(tt.addr); got != tt.want {
			t.Errorf("LoopbackOnly(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCardSubmitData: a submit of a button carrying bridge data (the rating
// card's) arrives as UserActivity.Submit with the comment field's value and
// no text; a plain payload button and typed "/csat 5" stay text.
func TestCardSubmitData(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name       string
		body       string
		wantSubmit map[string]string
		wantText   string
	}{
		{"rating", `{"type":"message","id":"1","from":{"id":"29:u"},"recipient":{"id":"28:b"},"conversation":{"id":"a:1"},
			"value":{"action":"handoff.csat","session":"s1","rating":"4","csat_comment":"great"}}`,
			map[string]string{"action": "handoff.csat", "session": "s1", "rating": "4", "csat_comment": "great"}, ""},
		{"numbers become strings", `{"type":"message","id":"1","from":{"id":"29:u"},"recipient":{"id":"28:b"},"conversation":{"id":"a:1"},
			"value":{"action":"handoff.csat","session":"s1","rating":4}}`,
			map[string]string{"action": "handoff.csat", "session": "s1", "rating": "4"}, ""},
		{"payload button", `{"type":"message","id":"1","from":{"id":"29:u"},"recipient":{"id":"28:b"},"conversation":{"id":"a:1"},
			"value":{"payload":"/csat 4"}}`, nil, "/csat 4"},
		{"other action is JSON text", `{"type":"message","id":"1","from":{"id":"29:u"},"recipient":{"id":"28:b"},"conversation":{"id":"a:1"},
			"value":{"action":"other","rating":"4"}}`, nil, `{"action":"other","rating":"4"}`},
		{"typed", `{"type":"message","id":"1","from":{"id":"29:u"},"recipient":{"id":"28:b"},"conversation":{"id":"a:1"},"text":"/csat 5"}`, nil, "/csat 5"},
	} {
		a, err := decodeActivity([]byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		ua, ok, err := mapActivity(a, now)
		if err != nil || !ok {
			t.Fatalf("%s: ok=%v err=%v", tc.name, ok, err)
		}
		if !maps.Equal(ua.Submit, tc.wantSubmit) || ua.Text != tc.wantText || (tc.wantSubmit != nil) != (ua.Submit != nil) {
			t.Errorf("%s: submit %v text %q; want %v %q", tc.name, ua.Submit, ua.Text, tc.wantSubmit, tc.wantText)
		}
	}
}
