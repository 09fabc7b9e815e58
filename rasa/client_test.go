package rasa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/rasa/rasatest"
)

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// recorded is an httptest server answering every request with one canned
// response, remembering what it received.
type recorded struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []capturedRequest
}

type capturedRequest struct {
	Method, Path, RawQuery, ContentType string
	Body                                []byte
}

func serve(t testing.TB, status int, body []byte) *recorded {
	t.Helper()
	r := &recorded{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, capturedRequest{req.Method, req.URL.EscapedPath(), req.URL.RawQuery, req.Header.Get("Content-Type"), b})
		r.mu.Unlock()
		if len(body) > 0 && (body[0] == '{' || body[0] == '[') {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorded) last(t testing.TB) capturedRequest {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("no request received")
	}
	return r.reqs[len(r.reqs)-1]
}

func TestNewValidatesConfig(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{URL: "rasa:5005"},
		{URL: "ftp://rasa"},
		{URL: "http://"},
		{URL: "http://rasa:5005?token=x"},
		{URL: "http://user:pw@rasa:5005"},
		{URL: "http://rasa:5005", Timeout: -time.Second},
		{URL: "http://ra sa"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	c := newClient(t, Config{URL: "http://rasa:5005/prefix/"})
	if c.base != "http://rasa:5005/prefix" || c.timeout != DefaultTimeout || c.slotActive != "handoff_active" || c.slotOutcome != "handoff_outcome" || c.hc.Timeout != DefaultTimeout {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestSendRecordedReplies(t *testing.T) {
	srv := serve(t, http.StatusOK, testdata(t, "webhook_replies.json"))
	c := newClient(t, Config{URL: srv.URL, Token: "s3cret"})
	got, err := c.Send(context.Background(), bridge.BotInput{
		Conversation: "a:1xYz",
		Text:         "reset password",
		Metadata:     map[string]any{"user_name": "Jane Doe", "tenant_id": "t1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []bridge.BotReply{
		{Text: "I can help with your password."},
		{Text: "What do you need?", Buttons: []bridge.Button{{Title: "Reset my password", Payload: "/reset_password"}, {Title: "I'm locked out", Payload: "/account_locked"}}},
		{ImageURL: "https://it.example.com/img/vpn-settings.png"},
		{Text: "https://it.example.com/docs/vpn-guide.pdf"},
		{Custom: map[string]any{"card": "survey", "questions": 3.0}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replies =\n%#v\nwant\n%#v", got, want)
	}
	req := srv.last(t)
	if req.Method != http.MethodPost || req.Path != "/webhooks/rest/webhook" || req.RawQuery != "token=s3cret" || req.ContentType != "application/json" {
		t.Fatalf("request = %+v", req)
	}
	wantBody := `{"sender":"a:1xYz","message":"reset password","metadata":{"tenant_id":"t1","user_name":"Jane Doe"}}`
	if string(req.Body) != wantBody {
		t.Fatalf("body = %s\nwant %s", req.Body, wantBody)
	}
}

func TestSendRecordedHandoff(t *testing.T) {
	srv := serve(t, http.StatusOK, testdata(t, "webhook_handoff.json"))
	c := newClient(t, Config{URL: srv.URL})
	got, err := c.Send(context.Background(), bridge.BotInput{Conversation: "a:1xYz", Text: "human please"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Handoff != nil || got[0].Text == "" {
		t.Fatalf("replies = %+v", got)
	}
	want := &bridge.HandoffSignal{Reason: "user_asked", Queue: "it-service-desk"}
	if !reflect.DeepEqual(got[1].Handoff, want) || got[1].Text != "" {
		t.Fatalf("handoff reply = %+v", got[1])
	}
	if req := srv.last(t); string(req.Body) != `{"sender":"a:1xYz","message":"human please"}` || req.RawQuery != "" {
		t.Fatalf("request = %+v (no metadata, no token)", req)
	}
}

func TestParseReplies(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		want  []bridge.BotReply
		warns int
		err   bool
	}{
		{name: "empty body", body: ``},
		{name: "null", body: `null`},
		{name: "empty list", body: `[]`},
		{name: "not a list", body: `{"text":"hi"}`, err: true},
		{name: "not json", body: `<html>`, err: true},
		{name: "text split messages", body: `[{"recipient_id":"x","text":"one"},{"recipient_id":"x","text":"two"}]`,
			want: []bridge.BotReply{{Text: "one"}, {Text: "two"}}},
		{name: "handoff without reason", body: `[{"custom":{"handoff":{}}}]`,
			want: []bridge.BotReply{{Custom: map[string]any{"handoff": map[string]any{}}, Handoff: &bridge.HandoffSignal{Reason: "unspecified"}}}},
		{name: "handoff blank reason", body: `[{"custom":{"handoff":{"reason":"  ","queue":" desk "}}}]`,
			want: []bridge.BotReply{{Custom: map[string]any{"handoff": map[string]any{"reason": "  ", "queue": " desk "}}, Handoff: &bridge.HandoffSignal{Reason: "unspecified", Queue: "desk"}}}},
		{name: "handoff reason not a string", body: `[{"custom":{"handoff":{"reason":42,"queue":["x"]}}}]`, warns: 2,
			want: []bridge.BotReply{{Custom: map[string]any{"handoff": map[string]any{"reason": 42.0, "queue": []any{"x"}}}, Handoff: &bridge.HandoffSignal{Reason: "unspecified"}}}},
		{name: "handoff true is ignored", body: `[{"custom":{"handoff":true}}]`, warns: 1,
			want: []bridge.BotReply{{Custom: map[string]any{"handoff": true}}}},
		{name: "handoff string is ignored", body: `[{"custom":{"handoff":"user_asked"}}]`, warns: 1,
			want: []bridge.BotReply{{Custom: map[string]any{"handoff": "user_asked"}}}},
		{name: "handoff null is ignored", body: `[{"custom":{"handoff":null}}]`, warns: 1,
			want: []bridge.BotReply{{Custom: map[string]any{"handoff": nil}}}},
		{name: "handoff with text and extra keys", body: `[{"text":"bye","custom":{"handoff":{"reason":"fallback","confidence":0.2},"x":1}}]`,
			want: []bridge.BotReply{{Text: "bye", Custom: map[string]any{"handoff": map[string]any{"reason": "fallback", "confidence": 0.2}, "x": 1.0}, Handoff: &bridge.HandoffSignal{Reason: "fallback"}}}},
		{name: "custom not an object", body: `[{"custom":["a"]},{"custom":"s"},{"text":"t","custom":7}]`, warns: 3,
			want: []bridge.BotReply{{Text: "t"}}},
		{name: "custom empty object kept", body: `[{"custom":{}}]`,
			want: []bridge.BotReply{{Custom: map[string]any{}}}},
		{name: "non-object entries skipped", body: `[1,"x",null,{"text":"ok"}]`, warns: 3,
			want: []bridge.BotReply{{Text: "ok"}}},
		{name: "empty message dropped", body: `[{"recipient_id":"x"},{"recipient_id":"x","text":""}]`},
		{name: "wrong field types", body: `[{"text":5,"image":true,"buttons":"b"}]`, warns: 3},
		{name: "buttons variants", body: `[{"text":"pick","buttons":[
			{"title":"A","payload":"/a"},
			{"title":"Docs","type":"web_url","url":"https://docs.example.com"},
			{"title":"Only title"},
			{"payload":"/only_payload"},
			{"title":"Obj","payload":{"k":1}},
			{"title":7,"payload":true},
			"junk",
			{}]}]`, warns: 1,
			want: []bridge.BotReply{{Text: "pick\nDocs: https://docs.example.com", Buttons: []bridge.Button{
				{Title: "A", Payload: "/a"}, {Title: "Only title", Payload: "Only title"}, {Title: "/only_payload", Payload: "/only_payload"},
				{Title: "Obj", Payload: `{"k":1}`}, {Title: "7", Payload: "true"},
			}}}},
		{name: "quick replies as buttons", body: `[{"text":"q","quick_replies":[{"title":"Yes","payload":"/affirm"}]}]`,
			want: []bridge.BotReply{{Text: "q", Buttons: []bridge.Button{{Title: "Yes", Payload: "/affirm"}}}}},
		{name: "attachment object", body: `[{"attachment":{"type":"file","url":"u"}}]`,
			want: []bridge.BotReply{{Custom: map[string]any{"attachment": map[string]any{"type": "file", "url": "u"}}}}},
		{name: "attachment string with text", body: `[{"text":"see","attachment":"https://x/a.pdf"}]`,
			want: []bridge.BotReply{{Text: "see\nhttps://x/a.pdf"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			got, err := parseReplies([]byte(tt.body), log)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("replies =\n%#v\nwant\n%#v", got, tt.want)
			}
			if n := strings.Count(logs.String(), "level=WARN"); n != tt.warns {
				t.Fatalf("%d warnings, want %d:\n%s", n, tt.warns, logs.String())
			}
		})
	}
}

func TestHandoffFieldsAreBounded(t *testing.T) {
	long := strings.Repeat("é", 300)
	body, _ := json.Marshal([]any{map[string]any{"custom": map[string]any{"handoff": map[string]any{"reason": long, "queue": long}}}})
	got, err := parseReplies(body, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := got[0].Handoff
	if len(h.Reason) > maxSignalField || len(h.Queue) > maxSignalField || !strings.HasPrefix(long, h.Reason) || h.Reason == "" {
		t.Fatalf("reason %d bytes, queue %d bytes", len(h.Reason), len(h.Queue))
	}
}

func ts(sec float64) time.Time {
	return eventTime(map[string]any{"timestamp": sec})
}

func TestContextRecordedTrackers(t *testing.T) {
	tests := []struct {
		file string
		want bridge.BotContext
	}{
		{"tracker_handoff.json", bridge.BotContext{
			LatestIntent:       "talk_to_human",
			Confidence:         0.8712345361709595,
			RunnerUpIntent:     "vpn_help",
			RunnerUpConfidence: 0.0612873211503029,
			ActiveLoop:         "vpn_form",
			LatestAction:       "action_handoff",
			Turns: []bridge.Turn{
				{Role: "user", Text: "hi", Intent: "greet", Confidence: 0.9983153343200684, At: ts(1732093401.1095316)},
				{Role: "bot", Text: "Hi! I'm the IT helpdesk bot. How can I help?", At: ts(1732093401.2314517)},
				{Role: "user", Text: "my vpn keeps dropping", Intent: "vpn_help", Confidence: 0.9412001371383667, At: ts(1732093442.5061342)},
				{Role: "bot", Text: "Which VPN client do you use?\n[GlobalProtect] [AnyConnect]", At: ts(1732093442.6013977)},
				{Role: "user", Text: "can I talk to a real person please", Intent: "talk_to_human", Confidence: 0.8712345361709595, At: ts(1732093507.3127012)},
				{Role: "bot", Text: "Let me connect you with a colleague from the IT service desk.", At: ts(1732093507.4498121)},
			},
		}},
		{"tracker_fallback.json", bridge.BotContext{
			LatestIntent:       "nlu_fallback",
			Confidence:         0.3,
			RunnerUpIntent:     "vpn_help",
			RunnerUpConfidence: 0.2412345409393311,
			LatestAction:       "action_fallback_or_handoff",
			Turns: []bridge.Turn{
				{Role: "user", Text: "printer broken", Intent: "nlu_fallback", Confidence: 0.3, At: ts(1732095000.5)},
				{Role: "bot", Text: "Sorry, I didn't get that. Could you rephrase?", At: ts(1732095000.7)},
				{Role: "user", Text: "the thing with the printer on floor 3 is weird", Intent: "nlu_fallback", Confidence: 0.3, At: ts(1732095060.1)},
				{Role: "bot", Text: "I'm still not sure what you need, so I'm handing you over to a colleague.", At: ts(1732095060.16)},
			},
		}},
		{"tracker_new.json", bridge.BotContext{}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			srv := serve(t, http.StatusOK, testdata(t, tt.file))
			c := newClient(t, Config{URL: srv.URL, Token: "tok"})
			got, err := c.Context(context.Background(), "a:1xYz")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("context =\n%#v\nwant\n%#v", got, tt.want)
			}
			req := srv.last(t)
			if req.Method != http.MethodGet || req.Path != "/conversations/a:1xYz/tracker" || req.RawQuery != "token=tok" || len(req.Body) != 0 {
				t.Fatalf("request = %+v", req)
			}
		})
	}
	if got := ts(1732093401.1095316); got.UnixMicro() != 1732093401109532 || got.Location() != time.UTC {
		t.Fatalf("timestamp conversion = %v", got)
	}
}

func TestParseTrackerEdges(t *testing.T) {
	tests := []struct {
		name string
		body string
		want bridge.BotContext
		err  bool
	}{
		{name: "not json", body: `{`, err: true},
		{name: "not an object", body: `[]`, err: true},
		{name: "empty object", body: `{}`},
		{name: "no events: tracker fields", body: `{"events":null,"latest_action_name":"action_handoff","latest_message":{"intent":{"name":"x","confidence":0.5}},"active_loop":{"name":null}}`,
			want: bridge.BotContext{LatestIntent: "x", Confidence: 0.5, LatestAction: "action_handoff"}},
		{name: "latest_message missing: last user event", body: `{"events":[{"event":"user","text":"t","parse_data":{"intent":{"name":"a","confidence":0.9},"intent_ranking":[{"name":"a","confidence":0.9},{"name":"b","confidence":0.1}]}}]}`,
			want: bridge.BotContext{LatestIntent: "a", Confidence: 0.9, RunnerUpIntent: "b", RunnerUpConfidence: 0.1, Turns: []bridge.Turn{{Role: "user", Text: "t", Intent: "a", Confidence: 0.9}}}},
		{name: "only action_listen after user", body: `{"events":[{"event":"action","name":"utter_old"},{"event":"user","text":"t"},{"event":"action","name":"action_listen"}]}`,
			want: bridge.BotContext{Turns: []bridge.Turn{{Role: "user", Text: "t"}}}},
		{name: "emitter of the handoff, not a later action", body: `{"events":[{"event":"user","text":"t"},{"event":"action","name":"action_handoff"},{"event":"bot","data":{"custom":{"handoff":{"reason":"x"}}}},{"event":"action","name":"utter_later"},{"event":"bot","text":"later"},{"event":"action","name":"action_listen"}]}`,
			want: bridge.BotContext{LatestAction: "action_handoff", Turns: []bridge.Turn{{Role: "user", Text: "t"}, {Role: "bot", Text: "later"}}}},
		{name: "legacy active_form", body: `{"active_form":{"name":"old_form"}}`, want: bridge.BotContext{ActiveLoop: "old_form"}},
		{name: "junk events and types", body: `{"events":[1,"x",null,{"event":7},{"event":"bot","data":{"image":"https://i/x.png"}},{"event":"bot","text":null,"data":{"custom":{"handoff":{}}}},{"event":"user","text":5,"timestamp":"now","parse_data":{"intent":"x"}}],"latest_message":{"intent":{"name":5,"confidence":"high"},"intent_ranking":[5,{"name":""}]}}`,
			want: bridge.BotContext{Turns: []bridge.Turn{{Role: "bot", Text: "https://i/x.png"}, {Role: "user"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTracker([]byte(tt.body))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("context =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestHandbackEventBodies(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		hb   bridge.Handback
		want string
	}{
		{"agent closed", Config{}, bridge.Handback{Reason: bridge.ReasonAgentClosed},
			`[{"event":"slot","name":"handoff_active","value":false},{"event":"slot","name":"handoff_outcome","value":"agent_closed"},{"event":"resume"}]`},
		{"user restarted", Config{}, bridge.Handback{Reason: bridge.ReasonUserRestarted, Restart: true},
			`[{"event":"slot","name":"handoff_active","value":false},{"event":"slot","name":"handoff_outcome","value":"user_restarted"},{"event":"resume"},{"event":"restart"}]`},
		{"custom slots, no reason", Config{SlotHandoffActive: "live_chat", SlotOutcome: "live_chat_result"}, bridge.Handback{},
			`[{"event":"slot","name":"live_chat","value":false},{"event":"slot","name":"live_chat_result","value":null},{"event":"resume"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, http.StatusOK, []byte(`{"sender_id":"x","events":null}`))
			cfg := tt.cfg
			cfg.URL, cfg.Token = srv.URL, "tok"
			c := newClient(t, cfg)
			if err := c.Handback(context.Background(), "19:abc@thread.v2;messageid=17", tt.hb); err != nil {
				t.Fatal(err)
			}
			req := srv.last(t)
			if string(req.Body) != tt.want {
				t.Fatalf("body =\n%s\nwant\n%s", req.Body, tt.want)
			}
			if req.Method != http.MethodPost || req.Path != "/conversations/19:abc@thread.v2;messageid=17/tracker/events" || req.RawQuery != "include_events=NONE&token=tok" || req.ContentType != "application/json" {
				t.Fatalf("request = %+v", req)
			}
		})
	}
}

func TestAgainstFake(t *testing.T) {
	fake := rasatest.New(rasatest.Options{Token: "tok"})
	defer fake.Close()
	c := newClient(t, Config{URL: fake.URL(), Token: "tok"})
	ctx := context.Background()
	conv := bridge.ConversationID("a:1Teams_Conv-ID")

	got, err := c.Send(ctx, bridge.BotInput{Conversation: conv, Text: "hello", Metadata: map[string]any{"user_name": "Jane"}})
	if err != nil || len(got) != 1 || !strings.Contains(got[0].Text, "helpdesk") {
		t.Fatalf("greet: %+v, %v", got, err)
	}
	got, err = c.Send(ctx, bridge.BotInput{Conversation: conv, Text: "I need a password reset"})
	if err != nil || len(got) != 1 || len(got[0].Buttons) != 2 || got[0].Buttons[1].Payload != "/account_locked" {
		t.Fatalf("buttons: %+v, %v", got, err)
	}
	got, err = c.Send(ctx, bridge.BotInput{Conversation: conv, Text: got[0].Buttons[1].Payload})
	if err != nil || len(got) != 1 || !strings.Contains(got[0].Text, "unlock") {
		t.Fatalf("button click: %+v, %v", got, err)
	}
	got, err = c.Send(ctx, bridge.BotInput{Conversation: conv, Text: "can I talk to live agent"})
	if err != nil || len(got) != 2 || got[1].Handoff == nil || *got[1].Handoff != (bridge.HandoffSignal{Reason: "user_asked"}) {
		t.Fatalf("handoff: %+v, %v", got, err)
	}

	bc, err := c.Context(ctx, conv)
	if err != nil {
		t.Fatal(err)
	}
	if bc.LatestIntent != "talk_to_human" || bc.Confidence != 0.95 || bc.LatestAction != "action_handoff" || bc.RunnerUpIntent == "" || bc.RunnerUpConfidence >= 0.05 || len(bc.Turns) != 8 {
		t.Fatalf("context = %+v", bc)
	}
	if tu := bc.Turns[2]; tu.Role != "user" || tu.Intent != "password_reset" || tu.Text != "I need a password reset" || tu.At.IsZero() {
		t.Fatalf("turn = %+v", tu)
	}
	if tu := bc.Turns[3]; tu.Role != "bot" || !strings.HasSuffix(tu.Text, "[I forgot my password] [My account is locked]") {
		t.Fatalf("bot turn = %+v", tu)
	}
	if tu := bc.Turns[4]; tu.Role != "user" || tu.Text != "My account is locked" || tu.Intent != "account_locked" || tu.Confidence != 1 {
		t.Fatalf("button click turn = %+v", tu)
	}

	// Handback resumes the bot; restart wipes the tracker.
	if err := c.Handback(ctx, conv, bridge.Handback{Reason: bridge.ReasonAgentClosed}); err != nil {
		t.Fatal(err)
	}
	tr, _ := fake.Tracker(string(conv))
	if tr.Slots["handoff_active"] != false || tr.Slots["handoff_outcome"] != "agent_closed" || tr.Paused {
		t.Fatalf("after handback: %+v", tr)
	}
	if err := c.Handback(ctx, conv, bridge.Handback{Reason: bridge.ReasonUserRestarted, Restart: true}); err != nil {
		t.Fatal(err)
	}
	bc, err = c.Context(ctx, conv)
	if err != nil || !reflect.DeepEqual(bc, bridge.BotContext{}) {
		t.Fatalf("context after restart = %+v, %v", bc, err)
	}
	tr, _ = fake.Tracker(string(conv))
	if tr.Slots["handoff_outcome"] != nil || tr.LatestIntent != "" {
		t.Fatalf("after restart: %+v", tr)
	}
	// The next message starts a fresh session.
	if _, err := c.Send(ctx, bridge.BotInput{Conversation: conv, Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	bc, _ = c.Context(ctx, conv)
	if len(bc.Turns) != 2 || bc.LatestIntent != "greet" {
		t.Fatalf("context after restart and hi = %+v", bc)
	}

	// Fallback twice: the handoff carries reason "fallback" and the context the
	// NLU's best guess as runner-up.
	conv2 := bridge.ConversationID("a:2")
	if _, err := c.Send(ctx, bridge.BotInput{Conversation: conv2, Text: "the printer thing"}); err != nil {
		t.Fatal(err)
	}
	got, _ = c.Send(ctx, bridge.BotInput{Conversation: conv2, Text: "qwerty"})
	if len(got) != 2 || got[1].Handoff == nil || got[1].Handoff.Reason != "fallback" {
		t.Fatalf("fallback handoff = %+v", got)
	}
	bc, _ = c.Context(ctx, conv2)
	if bc.LatestIntent != "nlu_fallback" || bc.Confidence != 0.3 || bc.RunnerUpIntent == "" || bc.RunnerUpConfidence >= 0.3 || bc.LatestAction != "action_fallback_or_handoff" {
		t.Fatalf("fallback context = %+v", bc)
	}

	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}

	// An unknown conversation has an empty context, not an error.
	bc, err = c.Context(ctx, "a:unknown")
	if err != nil || !reflect.DeepEqual(bc, bridge.BotContext{}) {
		t.Fatalf("unknown conversation: %+v, %v", bc, err)
	}
}

func TestConversationIDsReachTheSameTracker(t *testing.T) {
	fake := rasatest.New(rasatest.Options{})
	defer fake.Close()
	c := newClient(t, Config{URL: fake.URL()})
	ctx := context.Background()
	for _, id := range []string{
		"a:1xYz-_AbC.9~",
		"19:4a1b2c3d@thread.v2;messageid=1732093401",
		"29:1Abc/def+ghi=",
		"conv with space#and?query%25",
		"ünïcode",
	} {
		conv := bridge.ConversationID(id)
		if _, err := c.Send(ctx, bridge.BotInput{Conversation: conv, Text: "talk to live agent"}); err != nil {
			t.Fatal(err)
		}
		if err := c.Handback(ctx, conv, bridge.Handback{Reason: bridge.ReasonAgentLeft}); err != nil {
			t.Fatal(err)
		}
		bc, err := c.Context(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		tr, ok := fake.Tracker(id)
		rfc3986 := !strings.ContainsAny(id, " #?%") && id != "ünïcode"
		if rfc3986 {
			// Same tracker for the REST channel and the tracker API.
			if !ok || tr.Slots["handoff_outcome"] != "agent_left" || bc.LatestIntent != "talk_to_human" {
				t.Errorf("%q: tracker %+v, context %+v", id, tr, bc)
			}
		} else if ok && tr.Slots["handoff_outcome"] == "agent_left" {
			t.Errorf("%q: expected Rasa (no path decoding) to see an escaped id", id)
		}
	}
}

func TestEscapePath(t *testing.T) {
	tests := map[string]string{
		"a:1xYz":                     "a:1xYz",
		"19:x@thread.v2;messageid=1": "19:x@thread.v2;messageid=1",
		"a/b":                        "a/b",
		"a b":                        "a%20b",
		"a?b#c%d":                    "a%3Fb%23c%25d",
		"é":                          "%C3%A9",
		"!$&'()*+,=~":                "!$&'()*+,=~",
		"\x00\n":                     "%00%0A",
		`"<>[\]^{|}` + "`":           "%22%3C%3E%5B%5C%5D%5E%7B%7C%7D%60",
	}
	for in, want := range tests {
		if got := escapePath(in); got != want {
			t.Errorf("escapePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	type check struct {
		status       int
		message      string
		detail       string
		permanent    bool
		unauthorized bool
		notFound     bool
	}
	html := []byte("<html><body><h1>502 Bad Gateway</h1>\n</body></html>")
	tests := []struct {
		name   string
		status int
		body   []byte
		call   string // send, context, handback, ping
		want   check
	}{
		{"401 rasa envelope", 401, testdata(t, "error_401.json"), "context", check{401, "User is not authenticated.", "NotAuthenticated", true, true, false}},
		{"401 on handback", 401, testdata(t, "error_401.json"), "handback", check{401, "User is not authenticated.", "NotAuthenticated", true, true, false}},
		{"403 jwt scope", 403, []byte(`{"version":"3.6.20","status":"failure","message":"User has insufficient permissions.","reason":"NotAuthorized","details":{},"help":null,"code":403}`), "context", check{403, "User has insufficient permissions.", "NotAuthorized", true, true, false}},
		{"404 rasa envelope on tracker", 404, testdata(t, "error_404_rasa.json"), "context", check{404, "Conversation ID not found.", "Not found", true, false, true}},
		{"404 sanic route on send", 404, testdata(t, "sanic_404.json"), "send", check{404, "Requested URL /webhooks/rest/webhook not found", "Not Found", true, false, false}},
		{"404 sanic route on tracker", 404, testdata(t, "sanic_404.json"), "context", check{404, "Requested URL /webhooks/rest/webhook not found", "Not Found", true, false, false}},
		{"400 bad events", 400, testdata(t, "error_400_events.json"), "handback", check{400, "Failed to validate the events format. For more information about the format visit the docs. Error: 'value' is a required property", "BadRequest", true, false, false}},
		{"409 no agent loaded is retryable", 409, testdata(t, "error_409.json"), "ping", check{409, "No agent loaded. To continue processing, a model of a trained agent needs to be loaded.", "Conflict", false, false, false}},
		{"429 is retryable (throttled)", 429, []byte(`slow down`), "send", check{429, "slow down", "", false, false, false}},
		{"500 rasa envelope", 500, testdata(t, "error_500.json"), "handback", check{500, "An unexpected error occurred. Error: Connection to tracker store lost", "ConversationError", false, false, false}},
		{"502 html from a proxy", 502, html, "send", check{502, "<html><body><h1>502 Bad Gateway</h1> </body></html>", "", false, false, false}},
		{"503 empty body", 503, nil, "context", check{503, "", "", false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.status, tt.body)
			c := newClient(t, Config{URL: srv.URL, Token: "s3cret-token"})
			err := call(c, tt.call)
			if err == nil {
				t.Fatal("no error")
			}
			var se *bridge.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("%v is not a StatusError", err)
			}
			got := check{se.Status, se.Message, se.Detail, bridge.IsPermanent(err), errors.Is(err, bridge.ErrUnauthorized), errors.Is(err, bridge.ErrNotFound)}
			if got != tt.want {
				t.Fatalf("got  %+v\nwant %+v\n(%v)", got, tt.want, err)
			}
			if se.System != "rasa" || se.Op == "" || strings.Contains(err.Error(), "s3cret-token") {
				t.Fatalf("error %q", err)
			}
		})
	}
}

// TestThrottled: 429, and 503 with Retry-After, come back as a
// *bridge.ThrottledError naming when to try again, wrapping the StatusError.
func TestThrottled(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name       string
		status     int
		retryAfter string
		want       time.Duration // -1: not throttled
	}{
		{"429 with seconds", 429, "30", 30 * time.Second},
		{"429 with a date", 429, now.Add(time.Minute).UTC().Format(http.TimeFormat), time.Minute},
		{"429 without Retry-After", 429, "", defaultThrottle},
		{"429 with junk", 429, "soon", defaultThrottle},
		{"503 with seconds", 503, "7", 7 * time.Second},
		{"503 without Retry-After", 503, "", -1},
		{"500 with Retry-After", 500, "7", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, Config{URL: srv.URL})
			start := time.Now()
			err := call(c, "send")
			th, ok := bridge.Throttled(err)
			if tt.want < 0 {
				if ok {
					t.Fatalf("err = %v, want no throttle", err)
				}
				return
			}
			if !ok || th.Destination != "rasa" || bridge.IsPermanent(err) {
				t.Fatalf("err = %v, want a rasa ThrottledError", err)
			}
			if got := th.Until.Sub(start); got < tt.want-2*time.Second || got > tt.want+2*time.Second {
				t.Errorf("throttled for %s, want about %s", got, tt.want)
			}
			var se *bridge.StatusError
			if !errors.As(err, &se) || se.Status != tt.status {
				t.Errorf("err %v does not carry the HTTP %d StatusError", err, tt.status)
			}
		})
	}
}

func call(c *Client, which string) error {
	ctx := context.Background()
	switch which {
	case "send":
		_, err := c.Send(ctx, bridge.BotInput{Conversation: "a:1", Text: "hi"})
		return err
	case "context":
		_, err := c.Context(ctx, "a:1")
		return err
	case "handback":
		return c.Handback(ctx, "a:1", bridge.Handback{Reason: bridge.ReasonUserEnded})
	case "ping":
		return c.Ping(ctx)
	}
	panic(which)
}

func TestInvalidInputIsPermanent(t *testing.T) {
	srv := serve(t, http.StatusOK, []byte(`[]`))
	c := newClient(t, Config{URL: srv.URL})
	ctx := context.Background()
	_, err1 := c.Send(ctx, bridge.BotInput{Text: "hi"})
	_, err2 := c.Context(ctx, "")
	err3 := c.Handback(ctx, "", bridge.Handback{})
	_, err4 := c.Send(ctx, bridge.BotInput{Conversation: "a:1", Metadata: map[string]any{"f": func() {}}})
	for i, err := range []error{err1, err2, err3, err4} {
		if !bridge.IsPermanent(err) {
			t.Errorf("%d: err = %v, want permanent", i, err)
		}
	}
	if len(srv.reqs) != 0 {
		t.Fatalf("requests sent: %+v", srv.reqs)
	}
}

func TestUnexpectedSuccessBodies(t *testing.T) {
	for _, tt := range []struct{ call, body string }{
		{"send", `{"status":"ok"}`},
		{"send", `<html>`},
		{"context", `[1,2]`},
		{"context", `not json`},
	} {
		srv := serve(t, http.StatusOK, []byte(tt.body))
		err := call(newClient(t, Config{URL: srv.URL}), tt.call)
		if err == nil || bridge.IsPermanent(err) {
			t.Errorf("%s %q: err = %v, want a retryable error", tt.call, tt.body, err)
		}
	}
}

func TestTokenAgainstFake(t *testing.T) {
	fake := rasatest.New(rasatest.Options{Token: "right"})
	defer fake.Close()
	c := newClient(t, Config{URL: fake.URL(), Token: "wrong"})
	ctx := context.Background()
	// The REST channel is not protected by the token, as in Rasa.
	if _, err := c.Send(ctx, bridge.BotInput{Conversation: "a:1", Text: "hi"}); err != nil {
		t.Fatalf("send: %v", err)
	}
	for _, which := range []string{"context", "handback", "ping"} {
		err := call(c, which)
		if !errors.Is(err, bridge.ErrUnauthorized) || !bridge.IsPermanent(err) {
			t.Errorf("%s: %v", which, err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("%s: token in error %q", which, err)
		}
	}
	noToken := newClient(t, Config{URL: fake.URL()})
	if err := call(noToken, "context"); !errors.Is(err, bridge.ErrUnauthorized) {
		t.Fatalf("no token: %v", err)
	}
	for _, cl := range fake.Calls() {
		if cl.Path == "/conversations/a:1/tracker" && cl.Query.Get("token") == "" && cl.Status != http.StatusUnauthorized {
			t.Fatalf("call %+v", cl)
		}
	}
	if st := fake.Stats(); st.Unauthorized != 4 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestTimeouts(t *testing.T) {
	fake := rasatest.New(rasatest.Options{Token: "s3cret"})
	defer fake.Close()
	fake.SetLatency(5 * time.Second)
	defer fake.SetLatency(0)

	c := newClient(t, Config{URL: fake.URL(), Token: "s3cret", Timeout: 100 * time.Millisecond})
	for _, which := range []string{"send", "context", "handback", "ping"} {
		start := time.Now()
		err := call(c, which)
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Fatalf("%s took %v", which, elapsed)
		}
		if err == nil || bridge.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: err = %v, want a retryable deadline error", which, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("%s: token in error %q", which, err)
		}
	}

	// A caller-supplied HTTP client without timeout still gets the per-call
	// deadline, and the caller's context is honoured too.
	c = newClient(t, Config{URL: fake.URL(), HTTPClient: &http.Client{}, Timeout: 150 * time.Millisecond})
	if err := call(c, "send"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("custom client: %v", err)
	}
	c = newClient(t, Config{URL: fake.URL(), Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Context(ctx, "a:1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller deadline: %v", err)
	}
}

func TestFakeFaultsSurface(t *testing.T) {
	fake := rasatest.New(rasatest.Options{})
	defer fake.Close()
	c := newClient(t, Config{URL: fake.URL()})
	fake.FailNext(1, 500)
	err := c.Handback(context.Background(), "a:1", bridge.Handback{Reason: bridge.ReasonIdleTimeout})
	var se *bridge.StatusError
	if !errors.As(err, &se) || se.Status != 500 || se.Detail != "ConversationError" || bridge.IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
	// The retry succeeds and lands the same events.
	if err := c.Handback(context.Background(), "a:1", bridge.Handback{Reason: bridge.ReasonIdleTimeout}); err != nil {
		t.Fatal(err)
	}
	tr, _ := fake.Tracker("a:1")
	if tr.Slots["handoff_outcome"] != "idle_timeout" {
		t.Fatalf("tracker = %+v", tr)
	}
}

func TestRedactURL(t *testing.T) {
	if got := redactURL("http://r:5005/conversations/a/tracker?include_events=NONE&token=abc"); strings.Contains(got, "abc") || !strings.Contains(got, "include_events=NONE") {
		t.Fatalf("redactURL = %q", got)
	}
	if got := redactURL("http://r:5005/%zz?token=abc"); strings.Contains(got, "abc") {
		t.Fatalf("redactURL(unparsable) = %q", got)
	}
}
