package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// apiServer answers every Web API call with status, headers and body, and
// records the requests.
func apiServer(t testing.TB, status int, header map[string]string, body []byte) (*httptest.Server, *[]*http.Request) {
	t.Helper()
	var (
		mu   sync.Mutex // requests may arrive concurrently
		reqs []*http.Request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, r)
		mu.Unlock()
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &reqs
}

func testClient(t testing.TB, url string, now time.Time) *Client {
	t.Helper()
	c, err := New(Config{Token: "xoxb-test", Channel: "C0HANDOFF1", APIURL: url, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientAnswers(t *testing.T) {
	now := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		body      string // testdata file
		check     func(t *testing.T, chat bridge.AgentChatID, err error)
		wantRetry bool // retryable (neither permanent nor throttled)
	}{
		{name: "posted", status: 200, body: "api_chat_postMessage.json", check: func(t *testing.T, chat bridge.AgentChatID, err error) {
			if err != nil || chat != "C0HANDOFF1:1712345678.000100" {
				t.Errorf("chat %q err %v, want the parent's thread", chat, err)
			}
		}},
		{name: "channel_not_found", status: 200, body: "api_error_channel_not_found.json", check: func(t *testing.T, _ bridge.AgentChatID, err error) {
			if !bridge.IsPermanent(err) || !strings.Contains(err.Error(), "HANDOFF_SLACK_CHANNEL") {
				t.Errorf("err %v: want permanent, naming the setting", err)
			}
		}},
		{name: "not_in_channel", status: 200, body: "api_error_not_in_channel.json", check: func(t *testing.T, _ bridge.AgentChatID, err error) {
			if !bridge.IsPermanent(err) || !errors.Is(err, bridge.ErrChatClosed) || !strings.Contains(err.Error(), "/invite") {
				t.Errorf("err %v: want permanent chat-closed, saying to invite the app", err)
			}
		}},
		{name: "invalid_auth", status: 200, body: "api_error_invalid_auth.json", check: func(t *testing.T, _ bridge.AgentChatID, err error) {
			if !errors.Is(err, bridge.ErrUnauthorized) || !strings.Contains(err.Error(), "HANDOFF_SLACK_BOT_TOKEN") {
				t.Errorf("err %v: want unauthorized, naming the setting", err)
			}
		}},
		{name: "ratelimited 429", status: 429, header: map[string]string{"Retry-After": "30"}, body: "api_error_ratelimited.json", check: func(t *testing.T, _ bridge.AgentChatID, err error) {
			th, ok := bridge.Throttled(err)
			if !ok || !th.Until.Equal(now.Add(30*time.Second)) || th.Destination != "slack" || bridge.IsPermanent(err) {
				t.Errorf("err %v: want throttled until +30s", err)
			}
		}},
		{name: "server error", status: 500, body: "api_error_ratelimited.json", wantRetry: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, reqs := apiServer(t, tt.status, tt.header, example(t, tt.body))
			c := testClient(t, srv.URL, now)
			dc, err := c.Open(context.Background(), bridge.Handoff{Session: "s1", UserName: "Megan Bowen", Reason: "user_asked"})
			chat := dc.ID
			if tt.check != nil {
				tt.check(t, chat, err)
			}
			if tt.wantRetry {
				if _, th := bridge.Throttled(err); err == nil || bridge.IsPermanent(err) || th {
					t.Errorf("err %v: want a plain retryable error", err)
				}
			}
			if len(*reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(*reqs))
			}
			r := (*reqs)[0]
			if r.URL.Path != "/chat.postMessage" || r.Header.Get("Authorization") != "Bearer xoxb-test" ||
				!strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				t.Errorf("request %s %v", r.URL.Path, r.Header)
			}
		})
	}
}

// The parent message carries who, why, the transcript and both buttons, and
// its metadata names the session so a retried Open can adopt it.
func TestParentMessage(t *testing.T) {
	var got postMessage
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&got)
		_, _ = w.Write(example(t, "api_chat_postMessage.json"))
	}))
	defer srv.Close()
	c := testClient(t, srv.URL, time.Now())
	h := bridge.Handoff{Session: "s1", UserName: "Megan <Bowen>", UserEmail: "megan@contoso.com", Reason: "user_asked",
		Transcript: []bridge.Turn{{Role: "user", Author: "Megan", Text: "reset my password"}, {Role: "bot", Text: "What happened?"}}}
	if _, err := c.Open(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	raw := fmt.Sprint(got.Blocks)
	for _, want := range []string{"Megan &lt;Bowen&gt;", "mailto:megan@contoso.com", "user_asked", "reset my password", "What happened?", actionTake, actionClose} {
		if !strings.Contains(raw, want) {
			t.Errorf("parent blocks lack %q: %s", want, raw)
		}
	}
	if got.Metadata == nil || got.Metadata.EventType != metaOpened || got.Metadata.EventPayload["session"] != "s1" {
		t.Errorf("metadata %+v", got.Metadata)
	}
	if got.Channel != "C0HANDOFF1" || got.ThreadTS != "" {
		t.Errorf("posted to %q thread %q", got.Channel, got.ThreadTS)
	}
}

// conversations.replies as documented: a retried Send finds its earlier post
// by the key in the metadata and does not post again; a new key is posted.
func TestSendRetryFindsEarlierPost(t *testing.T) {
	var posts int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/conversations.replies":
			if err := r.ParseForm(); err != nil || r.Form.Get("include_all_metadata") != "true" || r.Form.Get("ts") != "1712345678.000100" {
				t.Errorf("replies form %v %v", r.Form, err)
			}
			_, _ = w.Write(example(t, "api_conversations_replies.json"))
		case "/chat.postMessage":
			posts++
			_, _ = w.Write(example(t, "api_chat_postMessage.json"))
		}
	}))
	defer srv.Close()
	c := testClient(t, srv.URL, time.Now())
	chat := bridge.DeskChat{ID: ChatID("C0HANDOFF1", "1712345678.000100")}
	if err := c.Send(context.Background(), chat, bridge.DeskMessage{Key: "s1/7", Text: "my laptop is broken", Author: "Megan Bowen", Retry: true}); err != nil {
		t.Fatal(err)
	}
	if posts != 0 {
		t.Fatalf("retry posted again although the thread holds key s1/7")
	}
	if err := c.Send(context.Background(), chat, bridge.DeskMessage{Key: "s1/8", Text: "my laptop is broken", Author: "Megan Bowen", Retry: true}); err != nil {
		t.Fatal(err)
	}
	if posts != 1 {
		t.Fatalf("a new key with the same text was posted %d times, want 1", posts)
	}
}

func TestDisplayName(t *testing.T) {
	srv, reqs := apiServer(t, 200, nil, example(t, "api_users_info.json"))
	c := testClient(t, srv.URL, time.Now())
	for range 2 {
		if n := c.DisplayName(context.Background(), "U0AGENT001"); n != "Beth A." {
			t.Errorf("name %q, want the profile's display name", n)
		}
	}
	if len(*reqs) != 1 {
		t.Errorf("%d users.info calls, want 1 (cached)", len(*reqs))
	}
	bad, _ := apiServer(t, 200, nil, example(t, "api_error_invalid_auth.json"))
	if n := testClient(t, bad.URL, time.Now()).DisplayName(context.Background(), "U0X"); n != "U0X" {
		t.Errorf("name %q on failure, want the id", n)
	}
}

func TestTextConversion(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Try <https://aka.ms/sspr|the reset page> &amp; tell me", "Try the reset page (https://aka.ms/sspr) & tell me"},
		{"see <https://x.example/a>", "see https://x.example/a"},
		{"ask <@U0AGENT002|beth>", "ask @beth"},
		{"<#C0123|handback>", "#handback"},
		{"a &lt;b&gt; c", "a <b> c"},
	} {
		if got := fromSlack(tt.in); got != tt.want {
			t.Errorf("fromSlack(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := toSlack("a <b> & c\nreport.pdf: https://files.example/r.pdf"); got != "a &lt;b&gt; &amp; c\n<https://files.example/r.pdf|report.pdf>" {
		t.Errorf("toSlack = %q", got)
	}
}

func TestParseTS(t *testing.T) {
	a, err := parseTS("1712345678.000100")
	if err != nil || !a.Equal(time.Unix(1712345678, 100_000).UTC()) {
		t.Fatalf("%v %v", a, err)
	}
	b, _ := parseTS("1712345678.000101")
	if !b.After(a) {
		t.Error("a later ts must be a later time")
	}
	for _, bad := range []string{"", ".5", "12.", "x.1", "-1.0", "1.1234567890"} {
		if _, err := parseTS(bad); err == nil {
			t.Errorf("parseTS(%q) accepted", bad)
		}
	}
}
