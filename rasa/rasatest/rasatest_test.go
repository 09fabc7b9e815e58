package rasatest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/rasa/rasatest"
)

type reply = map[string]any

func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func say(t *testing.T, srv *rasatest.Server, sender, text string) []reply {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"sender": sender, "message": text, "metadata": map[string]any{"user_name": "Jane"}})
	code, b := post(t, srv.URL()+"/webhooks/rest/webhook", string(body))
	if code != http.StatusOK {
		t.Fatalf("webhook: HTTP %d %s", code, b)
	}
	var out []reply
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("webhook answer %s: %v", b, err)
	}
	return out
}

func names(events []rasatest.Event) []string {
	var out []string
	for _, e := range events {
		n := e.Name()
		if n == "action" {
			n += ":" + e["name"].(string)
		}
		out = append(out, n)
	}
	return out
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

func TestWebhookDefaultScript(t *testing.T) {
	srv := rasatest.New(rasatest.Options{})
	defer srv.Close()

	got := say(t, srv, "a:1conv", "Hi there")
	if len(got) != 1 || !strings.HasPrefix(got[0]["text"].(string), "Hi! I'm the IT helpdesk bot") || got[0]["recipient_id"] != "a:1conv" {
		t.Fatalf("greet replies = %v", got)
	}
	want := []string{"action:action_session_start", "session_started", "action:action_listen", "user", "user_featurization", "action:utter_greet", "bot", "action:action_listen"}
	if n := names(srv.Events("a:1conv")); !reflect.DeepEqual(n, want) {
		t.Fatalf("events = %v, want %v", n, want)
	}

	got = say(t, srv, "a:1conv", "I forgot my password")
	if len(got) != 1 {
		t.Fatalf("password replies = %v", got)
	}
	buttons, _ := got[0]["buttons"].([]any)
	if len(buttons) != 2 || buttons[0].(map[string]any)["payload"] != "/password_forgotten" {
		t.Fatalf("password buttons = %v", got[0])
	}

	got = say(t, srv, "a:1conv", "/password_forgotten")
	if len(got) != 1 || !strings.Contains(got[0]["text"].(string), "passwordreset.example.com") {
		t.Fatalf("button payload replies = %v", got)
	}
	tr, _ := srv.Tracker("a:1conv")
	if tr.LatestIntent != "password_forgotten" || tr.LatestAction != "action_listen" {
		t.Fatalf("tracker = %+v", tr)
	}
	var lastUser rasatest.Event
	for _, e := range tr.Events {
		if e.Name() == "user" {
			lastUser = e
		}
	}
	intent := lastUser["parse_data"].(map[string]any)["intent"].(map[string]any)
	if intent["confidence"] != 1.0 {
		t.Fatalf("intent syntax confidence = %v", intent)
	}
	if lastUser["metadata"].(map[string]any)["user_name"] != "Jane" || lastUser["input_channel"] != "rest" {
		t.Fatalf("user event = %v", lastUser)
	}
}

func TestHandoffRule(t *testing.T) {
	srv := rasatest.New(rasatest.Options{})
	defer srv.Close()
	got := say(t, srv, "u1", "please let me talk to live agent")
	if len(got) != 2 {
		t.Fatalf("replies = %v", got)
	}
	if _, ok := got[0]["text"]; !ok {
		t.Fatalf("first reply has no text: %v", got[0])
	}
	want := map[string]any{"recipient_id": "u1", "custom": map[string]any{"handoff": map[string]any{"reason": "user_asked"}}}
	if !reflect.DeepEqual(got[1], want) {
		t.Fatalf("handoff reply = %v, want %v", got[1], want)
	}
	tr, _ := srv.Tracker("u1")
	if tr.Slots["handoff_active"] != true || tr.LatestIntent != "talk_to_human" {
		t.Fatalf("tracker = %+v", tr)
	}
	n := names(tr.Events)
	if want := []string{"action:action_handoff", "bot", "bot", "slot", "action:action_listen"}; !reflect.DeepEqual(n[len(n)-5:], want) {
		t.Fatalf("events = %v", n)
	}
}

func TestFallbackCountsToHandoff(t *testing.T) {
	srv := rasatest.New(rasatest.Options{})
	defer srv.Close()
	got := say(t, srv, "u2", "the printer on floor three is haunted")
	if len(got) != 1 || got[0]["custom"] != nil {
		t.Fatalf("first fallback = %v", got)
	}
	tr, _ := srv.Tracker("u2")
	if tr.LatestIntent != "nlu_fallback" || tr.ConsecutiveFallbacks != 1 {
		t.Fatalf("tracker after one fallback = %+v", tr)
	}
	got = say(t, srv, "u2", "zzz qqq")
	if len(got) != 2 {
		t.Fatalf("second fallback = %v", got)
	}
	h := got[1]["custom"].(map[string]any)["handoff"].(map[string]any)
	if h["reason"] != "fallback" {
		t.Fatalf("handoff = %v", h)
	}
	tr, _ = srv.Tracker("u2")
	if tr.ConsecutiveFallbacks != 0 || tr.Slots["handoff_active"] != true {
		t.Fatalf("tracker after handoff = %+v", tr)
	}
	// The parse data looks like the FallbackClassifier's.
	var pd map[string]any
	for _, e := range tr.Events {
		if e.Name() == "user" {
			pd = e["parse_data"].(map[string]any)
		}
	}
	if in := pd["intent"].(map[string]any); in["name"] != "nlu_fallback" || in["confidence"] != 0.3 {
		t.Fatalf("intent = %v", in)
	}
	ranking := pd["intent_ranking"].([]any)
	if len(ranking) < 2 || ranking[0].(map[string]any)["name"] != "nlu_fallback" || ranking[1].(map[string]any)["confidence"].(float64) >= 0.3 {
		t.Fatalf("ranking = %v", ranking)
	}

	// An understood message resets the count.
	say(t, srv, "u3", "blah")
	say(t, srv, "u3", "what are your opening hours")
	got = say(t, srv, "u3", "blah again")
	if len(got) != 1 {
		t.Fatalf("fallback after reset = %v", got)
	}
}

func TestRESTChannelSplitsLikeRasa(t *testing.T) {
	sc := rasatest.Script{Rules: []rasatest.Rule{{
		Intent:  "multi",
		Phrases: []string{"multi"},
		Replies: []rasatest.Reply{
			{Text: "one\n\ntwo"},
			{Text: "pick", Buttons: []rasatest.Button{{Title: "A", Payload: "/a"}}, Image: "https://x/img.png", Custom: map[string]any{"k": "v"}, Attachment: "https://x/doc.pdf"},
			{Custom: map[string]any{}}, // falsy: not sent
		},
	}}}
	srv := rasatest.New(rasatest.Options{Script: &sc})
	defer srv.Close()
	got := say(t, srv, "s", "multi")
	want := []reply{
		{"recipient_id": "s", "text": "one"},
		{"recipient_id": "s", "text": "two"},
		{"recipient_id": "s", "text": "pick", "buttons": []any{map[string]any{"title": "A", "payload": "/a"}}},
		{"recipient_id": "s", "custom": map[string]any{"k": "v"}},
		{"recipient_id": "s", "image": "https://x/img.png"},
		{"recipient_id": "s", "attachment": "https://x/doc.pdf"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replies =\n%v\nwant\n%v", got, want)
	}
	bots := 0
	for _, e := range srv.Events("s") {
		if e.Name() == "bot" {
			bots++
		}
	}
	if bots != 3 {
		t.Fatalf("bot events = %d, want one per response", bots)
	}
}

func TestWebhookBadRequests(t *testing.T) {
	srv := rasatest.New(rasatest.Options{Token: "tok"})
	defer srv.Close()
	url := srv.URL() + "/webhooks/rest/webhook"
	tests := []struct {
		name, body string
		code       int
		want       string
	}{
		{"not json", "{", http.StatusBadRequest, "Failed when parsing body as json"},
		{"not an object", `["x"]`, http.StatusInternalServerError, "internal error"},
		{"empty body", ``, http.StatusInternalServerError, "internal error"},
		{"no message", `{"sender":"x"}`, http.StatusOK, "[]"},
		{"no token needed", `{"sender":"x","message":"hi"}`, http.StatusOK, "helpdesk bot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, b := post(t, url, tt.body)
			if code != tt.code || !strings.Contains(string(b), tt.want) {
				t.Fatalf("HTTP %d %s, want %d containing %q", code, b, tt.code, tt.want)
			}
		})
	}
	code, b := post(t, srv.URL()+"/webhooks/rest/webhook", `{"message":"hi"}`)
	if code != http.StatusOK || !bytes.Contains(b, []byte(`"recipient_id":"default"`)) {
		t.Fatalf("missing sender: %d %s", code, b)
	}
	if code, _ := get(t, url); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET webhook: %d", code)
	}
	if code, b := get(t, srv.URL()+"/nope"); code != http.StatusNotFound || !bytes.Contains(b, []byte(`"description":"Not Found"`)) {
		t.Fatalf("unknown route: %d %s", code, b)
	}
}

func TestTrackerAPIAuth(t *testing.T) {
	srv := rasatest.New(rasatest.Options{Token: "tok"})
	defer srv.Close()
	for _, url := range []string{
		srv.URL() + "/conversations/c1/tracker",
		srv.URL() + "/conversations/c1/tracker?token=wrong",
		srv.URL() + "/status",
	} {
		code, b := get(t, url)
		if code != http.StatusUnauthorized {
			t.Fatalf("%s: HTTP %d", url, code)
		}
		env := decode(t, b)
		if env["status"] != "failure" || env["reason"] != "NotAuthenticated" || env["message"] != "User is not authenticated." || env["code"] != 401.0 || env["version"] != rasatest.DefaultVersion {
			t.Fatalf("envelope = %v", env)
		}
	}
	code, _ := post(t, srv.URL()+"/conversations/c1/tracker/events", `{"event":"resume"}`)
	if code != http.StatusUnauthorized {
		t.Fatalf("append without token: %d", code)
	}
	if st := srv.Stats(); st.Unauthorized != 4 || st.EventAppends != 0 || st.TrackerReads != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if code, _ := get(t, srv.URL()+"/status?token=tok"); code != http.StatusOK {
		t.Fatalf("status with token: %d", code)
	}
	if _, ok := srv.Tracker("c1"); ok {
		t.Fatal("an unauthorized request created a tracker")
	}
}

func TestTrackerUnknownConversation(t *testing.T) {
	srv := rasatest.New(rasatest.Options{})
	defer srv.Close()
	code, b := get(t, srv.URL()+"/conversations/never-seen/tracker")
	if code != http.StatusOK {
		t.Fatalf("HTTP %d %s", code, b)
	}
	st := decode(t, b)
	evs := st["events"].([]any)
	if len(evs) != 3 || evs[1].(map[string]any)["event"] != "session_started" {
		t.Fatalf("events = %v", evs)
	}
	if st["latest_action_name"] != "action_listen" || st["sender_id"] != "never-seen" || st["paused"] != false {
		t.Fatalf("state = %v", st)
	}
	if lm := st["latest_message"].(map[string]any); len(lm["intent"].(map[string]any)) != 0 || lm["text"] != nil {
		t.Fatalf("latest_message = %v", lm)
	}
	tr, ok := srv.Tracker("never-seen")
	if !ok || len(tr.Events) != 0 {
		t.Fatalf("stored tracker = %+v %v (Rasa stores it empty)", tr, ok)
	}
}

func TestAppendEvents(t *testing.T) {
	srv := rasatest.New(rasatest.Options{Token: "tok"})
	defer srv.Close()
	say(t, srv, "c2", "talk to live agent")
	url := srv.URL() + "/conversations/c2/tracker/events?token=tok"

	code, b := post(t, url+"&include_events=NONE", `[{"event":"slot","name":"handoff_active","value":false},{"event":"slot","name":"handoff_outcome","value":"agent_closed"},{"event":"resume"}]`)
	if code != http.StatusOK {
		t.Fatalf("HTTP %d %s", code, b)
	}
	st := decode(t, b)
	if st["events"] != nil || st["slots"].(map[string]any)["handoff_outcome"] != "agent_closed" || st["slots"].(map[string]any)["handoff_active"] != false {
		t.Fatalf("state = %v", st)
	}

	// A single event object is accepted too; pause makes the bot silent.
	if code, b := post(t, url, `{"event":"pause"}`); code != http.StatusOK {
		t.Fatalf("pause: %d %s", code, b)
	}
	if got := say(t, srv, "c2", "hello?"); len(got) != 0 {
		t.Fatalf("paused bot answered %v", got)
	}
	tr, _ := srv.Tracker("c2")
	if !tr.Paused || tr.Events[len(tr.Events)-1].Name() != "user" {
		t.Fatalf("paused tracker = %+v", tr)
	}

	// Restart wipes the state; GET shows only events after it.
	if code, b := post(t, url, `[{"event":"resume"},{"event":"restart"}]`); code != http.StatusOK {
		t.Fatalf("restart: %d %s", code, b)
	}
	code, b = get(t, srv.URL()+"/conversations/c2/tracker?token=tok")
	st = decode(t, b)
	if code != http.StatusOK || len(st["events"].([]any)) != 0 || st["followup_action"] != "action_session_start" || st["slots"].(map[string]any)["handoff_outcome"] != nil {
		t.Fatalf("after restart: %d %v", code, st)
	}
	code, b = get(t, srv.URL()+"/conversations/c2/tracker?token=tok&include_events=all")
	if st = decode(t, b); code != http.StatusOK || len(st["events"].([]any)) < 10 {
		t.Fatalf("ALL events: %d %v", code, st)
	}
	// The next message starts a new session.
	say(t, srv, "c2", "hi")
	code, b = get(t, srv.URL()+"/conversations/c2/tracker?token=tok")
	st = decode(t, b)
	if evs := st["events"].([]any); code != http.StatusOK || evs[0].(map[string]any)["name"] != "action_session_start" {
		t.Fatalf("after restart + message: %v", evs)
	}
}

func TestAppendEventsValidation(t *testing.T) {
	srv := rasatest.New(rasatest.Options{})
	defer srv.Close()
	url := srv.URL() + "/conversations/c3/tracker/events"
	tests := []struct {
		name, body string
		code       int
		want       string
	}{
		{"not json", `[{`, 400, "Failed when parsing body as json"},
		{"empty", ``, 400, "None is not of type 'object'"},
		{"no event key", `[{"name":"x"}]`, 400, "'event' is a required property"},
		{"unknown event", `{"event":"teleport"}`, 400, "is not valid under any of the given schemas"},
		{"slot without value", `{"event":"slot","name":"handoff_active"}`, 400, "'value' is a required property"},
		{"bad include_events", `{"event":"resume"}`, 400, "include_events"},
		{"action without name", `{"event":"action"}`, 500, "ConversationError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := url
			if tt.name == "bad include_events" {
				u += "?include_events=some"
			}
			code, b := post(t, u, tt.body)
			if code != tt.code || !strings.Contains(string(b), tt.want) {
				t.Fatalf("HTTP %d %s, want %d containing %q", code, b, tt.code, tt.want)
			}
		})
	}
	if _, ok := srv.Tracker("c3"); ok {
		t.Fatal("invalid requests created a tracker")
	}
	// Appending to a new tracker starts a session first.
	if code, b := post(t, url, `{"event":"slot","name":"handoff_active","value":true}`); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	want := []string{"action:action_session_start", "session_started", "action:action_listen", "slot"}
	if n := names(srv.Events("c3")); !reflect.DeepEqual(n, want) {
		t.Fatalf("events = %v", n)
	}
}

func TestRawConversationIDInPath(t *testing.T) {
	srv := rasatest.New(rasatest.Options{})
	defer srv.Close()
	get(t, srv.URL()+"/conversations/a:1%3Ab;x=1@y/tracker")
	if _, ok := srv.Tracker("a:1%3Ab;x=1@y"); !ok {
		t.Fatal("the fake decoded the path id; Sanic does not")
	}
	get(t, srv.URL()+"/conversations/with/slash/tracker")
	if _, ok := srv.Tracker("with/slash"); !ok {
		t.Fatal("a slash in the id (Rasa's <conversation_id:path>) was not kept")
	}
}

func TestRestartMessage(t *testing.T) {
	srv := rasatest.New(rasatest.Options{})
	defer srv.Close()
	say(t, srv, "r", "blah")
	if got := say(t, srv, "r", "/restart"); len(got) != 0 {
		t.Fatalf("restart replies = %v", got)
	}
	tr, _ := srv.Tracker("r")
	n := names(tr.Events)
	want := []string{"user", "action:action_restart", "restart", "action:action_session_start", "session_started", "action:action_listen"}
	if !reflect.DeepEqual(n[len(n)-6:], want) || tr.ConsecutiveFallbacks != 0 {
		t.Fatalf("events = %v, fallbacks %d", n, tr.ConsecutiveFallbacks)
	}
}

func TestFaultsAndLatency(t *testing.T) {
	srv := rasatest.New(rasatest.Options{})
	defer srv.Close()
	srv.FailNext(2, 0)
	for i := 0; i < 2; i++ {
		code, b := post(t, srv.URL()+"/webhooks/rest/webhook", `{"sender":"f","message":"hi"}`)
		if code != 500 || !bytes.Contains(b, []byte(`"status":"failure"`)) {
			t.Fatalf("fault %d: %d %s", i, code, b)
		}
	}
	if _, ok := srv.Tracker("f"); ok {
		t.Fatal("a failed request changed state")
	}
	if got := say(t, srv, "f", "hi"); len(got) != 1 {
		t.Fatalf("after faults: %v", got)
	}
	srv.FailNext(1, http.StatusServiceUnavailable)
	if code, b := get(t, srv.URL()+"/version"); code != 503 || !bytes.Contains(b, []byte(`"reason":"ServiceUnavailable"`)) {
		t.Fatalf("503 fault: %d %s", code, b)
	}
	if st := srv.Stats(); st.Faults != 3 || st.Messages != 1 {
		t.Fatalf("stats = %+v", st)
	}

	srv.SetLatency(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+"/version", nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Fatalf("latency: err %v after %v", err, time.Since(start))
	}
	srv.SetLatency(0)
}

func TestCallsRecordWire(t *testing.T) {
	srv := rasatest.New(rasatest.Options{Token: "tok"})
	defer srv.Close()
	post(t, srv.URL()+"/conversations/a:b/tracker/events?token=tok&include_events=NONE", `{"event":"resume"}`)
	calls := srv.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls = %v", calls)
	}
	c := calls[0]
	if c.Method != "POST" || c.Path != "/conversations/a:b/tracker/events" || c.Query.Get("token") != "tok" || c.Query.Get("include_events") != "NONE" || string(c.Body) != `{"event":"resume"}` || c.Status != 200 {
		t.Fatalf("call = %+v", c)
	}
}

func TestParseScriptYAML(t *testing.T) {
	sc, err := rasatest.ParseScript([]byte(`
rules:
  - intent: talk_to_human
    phrases: ["agent please"]
    replies: [{text: "Connecting."}]
    handoff: {reason: user_asked, queue: it-desk}
  - intent: vpn_help
    pattern: '\bvpn\b'
    confidence: 0.81
    active_loop: vpn_form
    set_slots: {topic: vpn}
    replies:
      - text: "Which client?"
        buttons: [{title: GlobalProtect, payload: /vpn_gp}]
        custom: {card: {kind: hero}}
fallback:
  replies: [{text: "Sorry?"}]
  handoff_after: -1
slots: {handoff_active: false, handoff_outcome: null, topic: null}
`))
	if err != nil {
		t.Fatal(err)
	}
	srv := rasatest.New(rasatest.Options{Script: &sc})
	defer srv.Close()
	got := say(t, srv, "y", "my VPN is down")
	if len(got) != 2 || got[1]["custom"].(map[string]any)["card"].(map[string]any)["kind"] != "hero" {
		t.Fatalf("replies = %v", got)
	}
	tr, _ := srv.Tracker("y")
	if tr.ActiveLoop != "vpn_form" || tr.Slots["topic"] != "vpn" {
		t.Fatalf("tracker = %+v", tr)
	}
	got = say(t, srv, "y", "agent please")
	if h := got[1]["custom"].(map[string]any)["handoff"].(map[string]any); h["queue"] != "it-desk" {
		t.Fatalf("handoff = %v", h)
	}
	for i := 0; i < 3; i++ {
		if got := say(t, srv, "y", "gibberish"); len(got) != 1 {
			t.Fatalf("handoff_after -1 still handed off: %v", got)
		}
	}

	for _, bad := range []string{
		"rules: [{phrases: [x]}]",
		"rules: [{intent: a, pattern: '('}]",
		"rules: [{intent: a, unknown: 1}]",
		"rules: [{intent: nlu_fallback}]",
		"fallback: {threshold: 2}",
	} {
		if _, err := rasatest.ParseScript([]byte(bad)); err == nil {
			t.Errorf("ParseScript(%q) accepted", bad)
		}
	}
	if err := srv.SetScript(rasatest.Script{Rules: []rasatest.Rule{{Intent: ""}}}); err == nil {
		t.Error("SetScript accepted a rule without intent")
	}
}

func TestSeedAndConcurrency(t *testing.T) {
	srv := rasatest.New(rasatest.Options{})
	defer srv.Close()
	if err := srv.Seed("z", rasatest.Event{"event": "active_loop", "name": "ticket_form"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Seed("z", rasatest.Event{"event": "slot", "name": "x"}); err == nil {
		t.Fatal("Seed accepted a slot without value")
	}
	tr, _ := srv.Tracker("z")
	if tr.ActiveLoop != "ticket_form" {
		t.Fatalf("tracker = %+v", tr)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := `{"sender":"z","message":"vpn"}`
			resp, err := http.Post(srv.URL()+"/webhooks/rest/webhook", "application/json", strings.NewReader(body))
			if err == nil {
				resp.Body.Close()
			}
			_, _ = srv.Tracker("z")
		}()
	}
	wg.Wait()
	if st := srv.Stats(); st.Messages != 8 {
		t.Fatalf("stats = %+v", st)
	}
	srv.Reset()
	if _, ok := srv.Tracker("z"); ok || srv.Stats().Requests != 0 {
		t.Fatal("Reset kept state")
	}
}
