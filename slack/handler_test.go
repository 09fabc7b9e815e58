package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

const testSecret = "test-signing-secret"

// testHandler returns a handler for channel C0HANDOFF1 whose users.info
// answers from testdata, and its sink.
func testHandler(t testing.TB, now time.Time, window time.Duration) (*Handler, *recordingSink) {
	t.Helper()
	srv, _ := apiServer(t, 200, nil, example(t, "api_users_info.json"))
	c := testClient(t, srv.URL, now)
	sink := &recordingSink{}
	h, err := NewHandler(HandlerConfig{SigningSecret: testSecret, OrderWindow: window, Now: func() time.Time { return now }}, c, sink, sink)
	if err != nil {
		t.Fatal(err)
	}
	return h, sink
}

func signed(t testing.TB, path string, body []byte, ts int64, secret string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	r.Header.Set("X-Slack-Signature", Sign(secret, ts, body))
	return r
}

func serve(h http.HandlerFunc, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h(w, r)
	return w
}

// Slack's worked example of a signature verifies; the bridge's Sign agrees.
func TestSignatureDocumentedExample(t *testing.T) {
	var ex struct {
		Secret    string `json:"signing_secret"`
		Timestamp int64  `json:"timestamp"`
		Body      string `json:"body"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(example(t, "signature.json"), &ex); err != nil {
		t.Fatal(err)
	}
	if got := Sign(ex.Secret, ex.Timestamp, []byte(ex.Body)); got != ex.Signature {
		t.Fatalf("Sign = %s, want %s", got, ex.Signature)
	}
	h := http.Header{}
	h.Set(HeaderTimestamp, strconv.FormatInt(ex.Timestamp, 10))
	h.Set(HeaderSignature, ex.Signature)
	if err := verify(ex.Secret, DefaultMaxSkew, time.Unix(ex.Timestamp+299, 0), h, []byte(ex.Body)); err != nil {
		t.Errorf("documented example refused 299 s later: %v", err)
	}
	if err := verify(ex.Secret, DefaultMaxSkew, time.Unix(ex.Timestamp+301, 0), h, []byte(ex.Body)); err == nil {
		t.Error("documented example accepted 301 s later")
	}
}

// Forged, stale, future and unsigned requests get 401 and reach nothing.
func TestForgedRequestsRefused(t *testing.T) {
	now := time.Unix(1712345690, 0)
	body := example(t, "event_message_reply.json")
	form := []byte(url.Values{"payload": {string(example(t, "interactive_block_actions.json"))}}.Encode())
	for _, tt := range []struct {
		name   string
		path   string
		body   []byte
		ts     int64
		secret string
		strip  string // header to remove
		tamper bool
	}{
		{"wrong secret", "/webhooks/slack", body, now.Unix(), "guess", "", false},
		{"stale", "/webhooks/slack", body, now.Unix() - 301, testSecret, "", false},
		{"future", "/webhooks/slack", body, now.Unix() + 301, testSecret, "", false},
		{"no signature", "/webhooks/slack", body, now.Unix(), testSecret, HeaderSignature, false},
		{"no timestamp", "/webhooks/slack", body, now.Unix(), testSecret, HeaderTimestamp, false},
		{"body changed after signing", "/webhooks/slack", body, now.Unix(), testSecret, "", true},
		{"interactive wrong secret", "/webhooks/slack/interactive", form, now.Unix(), "guess", "", false},
		{"interactive stale", "/webhooks/slack/interactive", form, now.Unix() - 3600, testSecret, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, sink := testHandler(t, now, -1)
			r := signed(t, tt.path, tt.body, tt.ts, tt.secret)
			if tt.strip != "" {
				r.Header.Del(tt.strip)
			}
			if tt.tamper {
				r = httptest.NewRequest(http.MethodPost, tt.path, bytes.NewReader(bytes.Replace(tt.body, []byte("reset page"), []byte("phish page"), 1)))
				r.Header.Set(HeaderTimestamp, strconv.FormatInt(tt.ts, 10))
				r.Header.Set(HeaderSignature, Sign(testSecret, tt.ts, tt.body))
			}
			serveFn := h.ServeEvents
			if strings.HasSuffix(tt.path, "interactive") {
				serveFn = h.ServeInteractive
			}
			if w := serve(serveFn, r); w.Code != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", w.Code)
			}
			if calls, _ := sink.snapshot(); calls != 0 {
				t.Errorf("sink called %d times for a refused request", calls)
			}
		})
	}
}

func TestURLVerification(t *testing.T) {
	now := time.Now()
	h, sink := testHandler(t, now, -1)
	w := serve(h.ServeEvents, signed(t, "/webhooks/slack", example(t, "event_url_verification.json"), now.Unix(), testSecret))
	var got map[string]string
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &got) != nil || got["challenge"] != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if calls, _ := sink.snapshot(); calls != 0 {
		t.Error("url_verification reached the sink")
	}
}

// Each documented event becomes what the relay needs, or nothing.
func TestEventConversion(t *testing.T) {
	now := time.Unix(1712345690, 0)
	chat := ChatID("C0HANDOFF1", "1712345678.000100")
	for _, tt := range []struct {
		file string
		want []bridge.AgentEvent // Kind, ExternalID, Author, Text, System, Joined, Edited, Attachments compared
	}{
		{"event_message_reply.json", []bridge.AgentEvent{
			{Kind: bridge.AgentMessage, ExternalID: "joined:1712345678.000100", Author: "Beth A.", Text: "Beth A. joined the chat.", System: true, Joined: true},
			{Kind: bridge.AgentMessage, ExternalID: "1712345690.000200", Author: "Beth A.", Text: "Try the reset page (https://aka.ms/sspr) & tell me if it works"}}},
		{"event_message_bot.json", nil},
		{"event_message_deleted.json", nil},
		{"event_message_changed.json", []bridge.AgentEvent{
			{Kind: bridge.AgentMessage, ExternalID: "joined:1712345678.000100", Author: "Beth A.", Text: "Beth A. joined the chat.", System: true, Joined: true},
			{Kind: bridge.AgentMessage, ExternalID: "edit:1712345690.000200:1712345700.000000", Author: "Beth A.", Text: "Try the reset page at https://aka.ms/sspr", Edited: true}}},
		{"event_file_share.json", []bridge.AgentEvent{
			{Kind: bridge.AgentMessage, ExternalID: "joined:1712345678.000100", Author: "Beth A.", Text: "Beth A. joined the chat.", System: true, Joined: true},
			{Kind: bridge.AgentMessage, ExternalID: "1712345720.000500", Author: "Beth A.", Text: "Here is the guide",
				Attachments: []bridge.Attachment{{Name: "vpn-guide.pdf", ContentType: "application/pdf", URL: "https://handoff.slack.com/files/U0AGENT001/F0GUIDE0001/vpn-guide.pdf", Size: 482133}}}}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			h, sink := testHandler(t, now, -1)
			w := serve(h.ServeEvents, signed(t, "/webhooks/slack", example(t, tt.file), now.Unix(), testSecret))
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			_, got := sink.snapshot()
			if len(got) != len(tt.want) {
				t.Fatalf("events %+v, want %+v", got, tt.want)
			}
			for i, g := range got {
				wt := tt.want[i]
				if g.Kind != wt.Kind || g.ExternalID != wt.ExternalID || g.Author != wt.Author || g.Text != wt.Text || g.System != wt.System || g.Joined != wt.Joined || g.Edited != wt.Edited || g.Chat != chat ||
					!reflect.DeepEqual(g.Attachments, wt.Attachments) {
					t.Errorf("event %d = %+v, want %+v", i, g, wt)
				}
			}
		})
	}
}

func replyEvent(t testing.TB, eventID, ts, text string) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(example(t, "event_message_reply.json"), &env); err != nil {
		t.Fatal(err)
	}
	env["event_id"] = eventID
	ev := env["event"].(map[string]any)
	ev["ts"], ev["event_ts"], ev["text"] = ts, ts, text
	b, _ := json.Marshal(env)
	return b
}

// A retry of an event (same event_id, X-Slack-Retry-Num) maps to the same
// key, so the store keeps it once; "#handback" ends the chat and is never
// relayed as text.
func TestRetriedEventSameKeyAndHandback(t *testing.T) {
	now := time.Unix(1712345690, 0)
	h, sink := testHandler(t, now, -1)
	body := replyEvent(t, "Ev1", "1712345690.000200", "hello")
	for retry := range 3 {
		r := signed(t, "/webhooks/slack", body, now.Unix(), testSecret)
		if retry > 0 {
			r.Header.Set(HeaderRetryNum, strconv.Itoa(retry))
			r.Header.Set(HeaderRetryCause, "http_timeout")
		}
		if w := serve(h.ServeEvents, r); w.Code != 200 {
			t.Fatalf("attempt %d: %d", retry, w.Code)
		}
	}
	serve(h.ServeEvents, signed(t, "/webhooks/slack", replyEvent(t, "Ev2", "1712345691.000300", "  #Handback  "), now.Unix(), testSecret))
	calls, got := sink.snapshot()
	if calls != 4 {
		t.Errorf("sink calls %d, want 4", calls)
	}
	var msgs, ends int
	for _, ev := range got {
		switch {
		case ev.Kind == bridge.AgentMessage && !ev.System:
			msgs++
		case ev.Kind == bridge.AgentEnded:
			ends++
			if ev.EndReason != bridge.ReasonAgentClosed {
				t.Errorf("handback reason %s", ev.EndReason)
			}
		}
	}
	if msgs != 1 || ends != 1 {
		t.Errorf("stored %d messages and %d endings, want 1 and 1: %+v", msgs, ends, got)
	}
}

// The ways an agent hands the employee back by typing in the thread:
// "#handback" (every client sends it as text) and "/handback" (where a
// client sends it as text rather than as a slash command), in any case,
// with or without words after it. Anything else, and an edit that turns a
// reply into "#handback", is an ordinary message.
func TestHandbackForms(t *testing.T) {
	now := time.Unix(1712345690, 0)
	for _, tt := range []struct {
		text string
		ends bool
	}{
		{"#handback", true},
		{"  #HandBack  ", true},
		{"/handback", true},
		{" /HANDBACK", true},
		{"#handback thanks, all sorted", true},
		{"/handback resolved", true},
		{"#handbacks", false},
		{"handback", false},
		{"please #handback", false},
		{"/handbackward", false},
	} {
		t.Run(tt.text, func(t *testing.T) {
			h, sink := testHandler(t, now, -1)
			if w := serve(h.ServeEvents, signed(t, "/webhooks/slack", replyEvent(t, "Ev1", "1712345690.000200", tt.text), now.Unix(), testSecret)); w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
			_, got := sink.snapshot()
			var ends, msgs int
			for _, ev := range got {
				switch {
				case ev.Kind == bridge.AgentEnded && ev.EndReason == bridge.ReasonAgentClosed:
					ends++
				case ev.Kind == bridge.AgentMessage && !ev.System:
					msgs++
				}
			}
			if want := map[bool][2]int{true: {1, 0}, false: {0, 1}}[tt.ends]; ends != want[0] || msgs != want[1] {
				t.Errorf("%q: %d endings and %d messages, want %d and %d: %+v", tt.text, ends, msgs, want[0], want[1], got)
			}
		})
	}
	// An edit that reads "#handback" does not end the chat: the employee
	// gets it as an edited line.
	var env map[string]any
	if err := json.Unmarshal(example(t, "event_message_changed.json"), &env); err != nil {
		t.Fatal(err)
	}
	env["event"].(map[string]any)["message"].(map[string]any)["text"] = "#handback"
	body, _ := json.Marshal(env)
	h, sink := testHandler(t, now, -1)
	if w := serve(h.ServeEvents, signed(t, "/webhooks/slack", body, now.Unix(), testSecret)); w.Code != 200 {
		t.Fatalf("edit: status %d", w.Code)
	}
	_, got := sink.snapshot()
	if len(got) == 0 || got[len(got)-1].Kind != bridge.AgentMessage || got[len(got)-1].Text != "#handback" || !got[len(got)-1].Edited {
		t.Errorf("an edit to #handback gave %+v, want the edited line", got)
	}
}

// A failing store answers 500 so that Slack retries; an event of a thread
// that is no handoff is acknowledged and dropped.
func TestStoreFailureAndUnknownThread(t *testing.T) {
	now := time.Unix(1712345690, 0)
	h, sink := testHandler(t, now, -1)
	sink.err = errors.New("database is locked")
	if w := serve(h.ServeEvents, signed(t, "/webhooks/slack", example(t, "event_message_reply.json"), now.Unix(), testSecret)); w.Code != 500 {
		t.Errorf("status %d with a failing store, want 500", w.Code)
	}
	h2, sink2 := testHandler(t, now, -1)
	h2.cfg.OpenWait = 10 * time.Millisecond
	sink2.known = map[bridge.AgentChatID]bool{}
	if w := serve(h2.ServeEvents, signed(t, "/webhooks/slack", example(t, "event_message_reply.json"), now.Unix(), testSecret)); w.Code != 200 {
		t.Errorf("status %d for another thread, want 200", w.Code)
	}
	if calls, _ := sink2.snapshot(); calls != 0 {
		t.Error("an event of an unknown thread reached the sink")
	}
}

// Replies that Slack delivered in parallel, newest first, are stored in one
// batch in ts order.
func TestOrderWindowSortsByTS(t *testing.T) {
	now := time.Unix(1712345690, 0)
	h, sink := testHandler(t, now, time.Hour) // the window ends when both have arrived: see below
	var wg sync.WaitGroup
	results := make(chan int, 2)
	ctx, cancel := context.WithCancel(context.Background())
	for i, ts := range []string{"1712345695.000900", "1712345691.000100"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := signed(t, "/webhooks/slack", replyEvent(t, "Ev"+ts, ts, "m"+strconv.Itoa(i)), now.Unix(), testSecret).WithContext(ctx)
			results <- serve(h.ServeEvents, r).Code
		}()
	}
	// Close the window explicitly once both requests joined the batch.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h.order.mu.Lock()
		n := 0
		for _, b := range h.order.chats {
			n = len(b.events)
		}
		h.order.mu.Unlock()
		if n == 4 { // two messages, each with its joined line
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel() // the leader stops waiting and stores the batch; followers get its result
	wg.Wait()
	close(results)
	_, got := sink.snapshot()
	var texts []string
	for _, ev := range got {
		if !ev.System {
			texts = append(texts, ev.Text)
		}
	}
	if strings.Join(texts, ",") != "m1,m0" {
		t.Errorf("stored in order %v, want the older ts first", texts)
	}
	if calls, _ := sink.snapshot(); calls != 1 {
		t.Errorf("%d store calls, want one batch", calls)
	}
}

// Take moves the chat live with the agent's name and updates the parent to
// name the agent and keep only Close; Close ends the chat.
func TestInteractiveTakeAndClose(t *testing.T) {
	now := time.Unix(1712345690, 0)
	var updated updateMessage
	done := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/users.info":
			_, _ = w.Write(example(t, "api_users_info.json"))
		case "/chat.update":
			_ = json.NewDecoder(r.Body).Decode(&updated)
			_, _ = w.Write(example(t, "api_chat_update.json"))
		}
	}))
	defer srv.Close()
	sink := &recordingSink{}
	h, err := NewHandler(HandlerConfig{SigningSecret: testSecret, OrderWindow: -1, Now: func() time.Time { return now }}, testClient(t, srv.URL, now), sink, sink)
	if err != nil {
		t.Fatal(err)
	}
	h.afterTake = func() { done <- struct{}{} }
	form := []byte(url.Values{"payload": {string(example(t, "interactive_block_actions.json"))}}.Encode())
	if w := serve(h.ServeInteractive, signed(t, "/webhooks/slack/interactive", form, now.Unix(), testSecret)); w.Code != 200 {
		t.Fatalf("take: %d %s", w.Code, w.Body)
	}
	<-done
	_, got := sink.snapshot()
	if len(got) != 2 || got[0].Kind != bridge.AgentJoined || got[0].Author != "Beth A." || got[1].Text != "Beth A. joined the chat." || !got[1].Joined {
		t.Fatalf("take stored %+v", got)
	}
	blocks := fmtBlocks(updated.Blocks)
	if updated.TS != "1712345678.000100" || strings.Contains(blocks, actionTake) || !strings.Contains(blocks, actionClose) || !strings.Contains(blocks, "Taken by Beth A.") {
		t.Errorf("parent update %s %s", updated.TS, blocks)
	}
	closeForm := []byte(url.Values{"payload": {strings.ReplaceAll(string(example(t, "interactive_block_actions.json")), `"action_id": "handoff_take",
      "block_id"`, `"action_id": "handoff_close",
      "block_id"`)}}.Encode())
	if w := serve(h.ServeInteractive, signed(t, "/webhooks/slack/interactive", closeForm, now.Unix(), testSecret)); w.Code != 200 {
		t.Fatalf("close: %d", w.Code)
	}
	_, got = sink.snapshot()
	if last := got[len(got)-1]; last.Kind != bridge.AgentEnded || last.EndReason != bridge.ReasonAgentClosed {
		t.Errorf("close stored %+v", last)
	}
}

func fmtBlocks(bs []block) string {
	b, _ := json.Marshal(bs)
	return string(b)
}

// A first reply takes the handoff like the Take button, so it updates the
// parent message the same way: the parent is read once, Take goes, the
// status names the agent. Later replies (and a retried first reply) read
// nothing more; a parent that no longer offers Take is left alone.
func TestFirstReplyUpdatesParent(t *testing.T) {
	now := time.Unix(1712345695, 0)
	var inter struct {
		Message message `json:"message"`
	}
	if err := json.Unmarshal(example(t, "interactive_block_actions.json"), &inter); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		parent  message
		updates int
	}{
		{"parent offers Take", inter.Message, 1},
		{"parent already taken by the button", message{TS: inter.Message.TS, Blocks: withStatus(inter.Message.Blocks, "*Taken by Ann.*", actionClose)}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var (
				mu      sync.Mutex
				calls   = map[string]int{}
				updated updateMessage
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				calls[strings.TrimPrefix(r.URL.Path, "/")]++
				switch r.URL.Path {
				case "/users.info":
					_, _ = w.Write(example(t, "api_users_info.json"))
				case "/conversations.replies":
					_ = r.ParseForm()
					if r.Form.Get("ts") != c.parent.TS {
						t.Errorf("replies of %q, want the parent %s", r.Form.Get("ts"), c.parent.TS)
					}
					_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "messages": []message{c.parent}, "has_more": false})
				case "/chat.update":
					_ = json.NewDecoder(r.Body).Decode(&updated)
					_, _ = w.Write(example(t, "api_chat_update.json"))
				}
			}))
			defer srv.Close()
			sink := &recordingSink{}
			h, err := NewHandler(HandlerConfig{SigningSecret: testSecret, OrderWindow: -1, Now: func() time.Time { return now }}, testClient(t, srv.URL, now), sink, sink)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{}, 4)
			h.afterTake = func() { done <- struct{}{} }
			reply := example(t, "event_message_reply.json")
			second := bytes.ReplaceAll(bytes.ReplaceAll(reply, []byte("1712345690.000200"), []byte("1712345691.000300")), []byte("Ev0MSGREPLY1"), []byte("Ev0MSGREPLY2"))
			for i, body := range [][]byte{reply, reply, second} {
				if w := serve(h.ServeEvents, signed(t, "/webhooks/slack", body, now.Unix(), testSecret)); w.Code != 200 {
					t.Fatalf("reply %d: %d %s", i, w.Code, w.Body)
				}
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the first reply never led to a look at the parent")
			}
			mu.Lock()
			defer mu.Unlock()
			if calls["conversations.replies"] != 1 || calls["chat.update"] != c.updates {
				t.Fatalf("Web API calls %v, want the parent read once and %d update(s)", calls, c.updates)
			}
			if c.updates == 1 {
				blocks := fmtBlocks(updated.Blocks)
				if updated.TS != c.parent.TS || strings.Contains(blocks, actionTake) || !strings.Contains(blocks, actionClose) || !strings.Contains(blocks, "Taken by Beth A.") {
					t.Errorf("parent update %s %s", updated.TS, blocks)
				}
			}
			if len(done) != 0 {
				t.Errorf("%d more parent updates after the first reply", len(done))
			}
		})
	}
}
