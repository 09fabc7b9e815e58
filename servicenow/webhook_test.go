package servicenow_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

const (
	whSecret = "shared-webhook-secret"
	whGroup  = "5c2d4f60db5a1010a4c1f2b3c4d5e6f7"
)

// countingSink records every AgentEvents call.
type countingSink struct {
	mu     sync.Mutex
	calls  [][]bridge.AgentEvent
	chats  []bridge.AgentChatID
	poll   []bool
	failed int // fail this many calls
}

func (s *countingSink) AgentEvents(_ context.Context, chat bridge.AgentChatID, evs []bridge.AgentEvent, fromPoll bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed > 0 {
		s.failed--
		return context.DeadlineExceeded
	}
	s.calls = append(s.calls, slices.Clone(evs))
	s.chats = append(s.chats, chat)
	s.poll = append(s.poll, fromPoll)
	return nil
}

func (s *countingSink) events() []bridge.AgentEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []bridge.AgentEvent
	for _, c := range s.calls {
		out = append(out, c...)
	}
	return out
}

func whBody(sysID, text string, at time.Time) []byte {
	b, _ := json.Marshal(map[string]any{"sys_id": sysID, "group": whGroup, "message": text, "created_by": "beth.anglin",
		"sender_name": "Beth Anglin", "sys_created_on": at.UTC().Format(servicenow.TimeLayout), "timestamp": at.UnixMilli()})
	return b
}

func signHex(secret string, ts time.Time, body []byte) (string, string) {
	stamp := strconv.FormatInt(ts.Unix(), 10)
	return stamp, "sha256=" + hex.EncodeToString(servicenow.SignatureMAC(secret, stamp, body))
}

// postSigned posts body to h as the Business Rule does, signed with whSecret
// at the time signed, and returns the response.
func postSigned(h http.Handler, path string, body []byte, signed time.Time) *httptest.ResponseRecorder {
	stamp, sig := signHex(whSecret, signed, body)
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set(servicenow.HeaderTimestamp, stamp)
	req.Header.Set(servicenow.HeaderSignature, sig)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func newWebhook(t *testing.T, sink servicenow.EventSink, mod func(*servicenow.WebhookConfig)) *servicenow.WebhookHandler {
	t.Helper()
	cfg := servicenow.WebhookConfig{Secret: whSecret, Username: "sn.webhook", Password: "pw", BridgeUser: snowtest.DefaultUser,
		OrderWindow: 50 * time.Millisecond, MaxBody: 4096, Logger: testLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	h, err := servicenow.NewWebhookHandler(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestWebhookAuthentication: only correctly signed (fresh, not replayed)
// or correctly Basic-authenticated requests are stored; everything else is
// 401 with nothing stored.
func TestWebhookAuthentication(t *testing.T) {
	now := time.Now()
	body := whBody("a1", "hello", now)
	stamp, sig := signHex(whSecret, now, body)
	b64 := "sha256=" + base64.StdEncoding.EncodeToString(servicenow.SignatureMAC(whSecret, stamp, body))
	oldStamp, oldSig := signHex(whSecret, now.Add(-6*time.Minute), body)
	newStamp, newSig := signHex(whSecret, now.Add(6*time.Minute), body)
	_, wrongSig := signHex("not-the-secret", now, body)
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	tests := []struct {
		name   string
		hdr    map[string]string
		body   []byte
		status int
	}{
		{"hex signature", map[string]string{servicenow.HeaderTimestamp: stamp, servicenow.HeaderSignature: sig}, body, 200},
		{"base64 signature (generateMac)", map[string]string{servicenow.HeaderTimestamp: stamp, servicenow.HeaderSignature: b64}, body, 200},
		{"bare hex without prefix", map[string]string{servicenow.HeaderTimestamp: stamp, servicenow.HeaderSignature: strings.TrimPrefix(sig, "sha256=")}, body, 200},
		{"basic auth", map[string]string{"Authorization": basic("sn.webhook", "pw")}, body, 200},
		{"unsigned", nil, body, 401},
		{"wrong secret", map[string]string{servicenow.HeaderTimestamp: stamp, servicenow.HeaderSignature: wrongSig}, body, 401},
		{"body changed", map[string]string{servicenow.HeaderTimestamp: stamp, servicenow.HeaderSignature: sig}, whBody("a1", "hellO", now), 401},
		{"timestamp changed", map[string]string{servicenow.HeaderTimestamp: strconv.FormatInt(now.Unix()+1, 10), servicenow.HeaderSignature: sig}, body, 401},
		{"expired timestamp", map[string]string{servicenow.HeaderTimestamp: oldStamp, servicenow.HeaderSignature: oldSig}, body, 401},
		{"future timestamp", map[string]string{servicenow.HeaderTimestamp: newStamp, servicenow.HeaderSignature: newSig}, body, 401},
		{"malformed timestamp", map[string]string{servicenow.HeaderTimestamp: "yesterday", servicenow.HeaderSignature: sig}, body, 401},
		{"signature without timestamp", map[string]string{servicenow.HeaderSignature: sig}, body, 401},
		{"garbage signature", map[string]string{servicenow.HeaderTimestamp: stamp, servicenow.HeaderSignature: "sha256=zz"}, body, 401},
		{"wrong basic password", map[string]string{"Authorization": basic("sn.webhook", "nope")}, body, 401},
		{"bad signature beats good basic", map[string]string{servicenow.HeaderTimestamp: stamp, servicenow.HeaderSignature: wrongSig,
			"Authorization": basic("sn.webhook", "pw")}, body, 401},
		{"unsigned malformed body", nil, []byte("{"), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &countingSink{}
			h := newWebhook(t, sink, nil)
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/webhooks/servicenow", bytes.NewReader(tt.body))
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			stored := len(sink.events())
			if tt.status == 200 && stored == 0 {
				t.Error("accepted but nothing stored")
			}
			if tt.status != 200 && stored != 0 {
				t.Errorf("rejected but %d events stored", stored)
			}
		})
	}
}

// TestWebhookReplay: the exact same signed request is accepted once; a
// replay within the window is 401 and stores nothing, and a request that
// could not be stored may be sent again.
func TestWebhookReplay(t *testing.T) {
	sink := &countingSink{}
	h := newWebhook(t, sink, nil)
	now := time.Now()
	body := whBody("r1", "once", now)
	post := func() int { return postSigned(h, "/webhooks/servicenow", body, now).Code }
	sink.failed = 1
	if got := post(); got != 500 {
		t.Fatalf("store failure: status %d, want 500", got)
	}
	if got := post(); got != 200 {
		t.Fatalf("retry after a failure: status %d, want 200", got)
	}
	n := len(sink.events())
	if got := post(); got != 401 {
		t.Fatalf("replay: status %d, want 401", got)
	}
	if len(sink.events()) != n {
		t.Errorf("replay stored events")
	}
}

// TestWebhookBody: malformed bodies are 400 and oversized ones 413, with
// nothing stored.
func TestWebhookBody(t *testing.T) {
	now := time.Now()
	many := "[" + strings.Repeat(string(whBody("x", "y", now))+",", 10) + string(whBody("x", "y", now)) + "]"
	tests := []struct {
		name   string
		body   string
		status int
	}{
		{"not json", "hello", 400},
		{"truncated", `{"sys_id":"a"`, 400},
		{"empty", "", 400},
		{"empty array", "[]", 400},
		{"no sys_id", `{"group":"` + whGroup + `","message":"x","timestamp":1714658591123}`, 400},
		{"no group", `{"sys_id":"a","message":"x","timestamp":1714658591123}`, 400},
		{"group not a sys_id", `{"sys_id":"a","group":"x'^ORDERBY","message":"x","timestamp":1714658591123}`, 400},
		{"no time", `{"sys_id":"a","group":"` + whGroup + `","message":"x"}`, 400},
		{"bad created_on", `{"sys_id":"a","group":"` + whGroup + `","sys_created_on":"yesterday"}`, 400},
		{"wrong type", `{"sys_id":["a"],"group":"` + whGroup + `","timestamp":1}`, 400},
		{"too many items", many, 400},
		{"oversized", `{"sys_id":"a","group":"` + whGroup + `","message":"` + strings.Repeat("x", 5000) + `","timestamp":1714658591123}`, 413},
		{"seconds only", `{"sys_id":"a","group":"` + whGroup + `","message":"x","sys_created_on":"2024-05-02 14:03:11"}`, 200},
		{"array", "[" + string(whBody("a", "1", now)) + "," + string(whBody("b", "2", now)) + "]", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &countingSink{}
			h := newWebhook(t, sink, func(c *servicenow.WebhookConfig) { c.MaxItems = 10 })
			body := []byte(tt.body)
			rec := postSigned(h, "/webhooks/servicenow", body, time.Now())
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status != 200 && len(sink.events()) != 0 {
				t.Error("a rejected body stored events")
			}
		})
	}
}

// TestNewWebhookHandlerConfig: a handler needs a way to authenticate.
func TestNewWebhookHandlerConfig(t *testing.T) {
	for _, cfg := range []servicenow.WebhookConfig{
		{},
		{Username: "u"},
		{Password: "p", Secret: "s"},
		{Secret: "s", EndPhrases: []servicenow.EndPhrase{{Text: "x", Reason: "nope"}}},
	} {
		if _, err := servicenow.NewWebhookHandler(cfg, &countingSink{}); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	if _, err := servicenow.NewWebhookHandler(servicenow.WebhookConfig{Secret: "s"}, nil); err == nil {
		t.Error("nil sink: no error")
	}
}

// TestWebhookOrderAndDuplicates: the fake instance's Business Rule delivers
// agent messages with duplicates and reordering (HMAC-signed and Basic);
// each message reaches the sink once, in the order the agent wrote them. No
// step depends on a window: it is an hour here and there is no desk to read,
// so a message that overtook its predecessor is released only by that
// predecessor's arrival (a 300 ms window against a 100 ms reorder hold was
// exceeded on a loaded machine).
func TestWebhookOrderAndDuplicates(t *testing.T) {
	for _, auth := range []string{"hmac", "basic"} {
		t.Run(auth, func(t *testing.T) {
			in := newFake(t, snowtest.Options{})
			c := newClient(t, in, nil)
			relay := &memRelay{}
			h := newWebhook(t, relay, func(cfg *servicenow.WebhookConfig) {
				cfg.OrderWindow = time.Hour
				cfg.Sessions = relay
			})
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			o := snowtest.WebhookOptions{URL: srv.URL, SkipCreatedBy: snowtest.DefaultUser}
			if auth == "hmac" {
				o.Secret = whSecret
			} else {
				o.Username, o.Password = "sn.webhook", "pw"
			}
			in.EnableWebhooks(o)
			in.SetDeliveryFaults(snowtest.DeliveryFaults{DuplicateEvery: 3, ReorderEvery: 2, ReorderHold: 100 * time.Millisecond})

			chat := openChat(t, c, "s-1")
			relay.add("s-1", chat)
			if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
				t.Fatal(err)
			}
			for i := range 12 {
				if _, err := in.Say(string(chat), "Beth Anglin", "answer "+strconv.Itoa(i)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := in.WaitDeliveries(ctx); err != nil {
				t.Fatal(err)
			}
			if got, want := relay.session(chat).texts(), wantTexts(in, chat); !slices.Equal(got, want) {
				t.Errorf("delivered %q\nwant      %q", got, want)
			}
			var dups, bad int
			sent := map[string]int{}
			for _, d := range in.Deliveries() {
				sent[d.Key]++
				if d.Copy > 0 {
					dups++
				}
				if d.Status != 200 && !(d.Copy > 0 && d.Status == 401) {
					bad++ // a duplicate signed in the same second is a replay: 401 is right
				}
			}
			if dups == 0 {
				t.Error("the fault injection made no duplicates")
			}
			if bad > 0 {
				t.Errorf("%d deliveries failed: %+v", bad, in.Deliveries())
			}
		})
	}
}

// TestWebhookPointerFaults: with the "previous" pointer and a desk to read,
// deliveries that are late, out of order, doubled or lost still reach the
// sink exactly once and in the order the agent wrote them, without the
// window: it is an hour here, so a message that waited for it would fail the
// test's deadline. Lost webhooks are recovered by the targeted poll of the
// next message's missing predecessor.
func TestWebhookPointerFaults(t *testing.T) {
	in := newFake(t, snowtest.Options{})
	c := newClient(t, in, nil)
	relay := &memRelay{}
	h := newWebhook(t, relay, func(cfg *servicenow.WebhookConfig) {
		cfg.OrderWindow = time.Hour
		cfg.Sessions = relay
		cfg.Desk = c
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	in.EnableWebhooks(snowtest.WebhookOptions{URL: srv.URL, Secret: whSecret, SkipCreatedBy: snowtest.DefaultUser})
	in.SetDeliveryFaults(snowtest.DeliveryFaults{DropEvery: 4, DuplicateEvery: 5, ReorderEvery: 3, ReorderHold: 200 * time.Millisecond,
		Jitter: 20 * time.Millisecond})

	chat := openChat(t, c, "s-1")
	relay.add("s-1", chat)
	if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := in.Say(string(chat), "Beth Anglin", "answer "+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The last message goes through cleanly: nothing after it could ask
	// for it if it were lost (hybrid's reconcile does that).
	in.SetDeliveryFaults(snowtest.DeliveryFaults{})
	if _, err := in.Say(string(chat), "Beth Anglin", "last"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := in.WaitDeliveries(ctx); err != nil {
		t.Fatal(err)
	}
	dropped := 0
	for _, d := range in.Deliveries() {
		if d.Dropped {
			dropped++
		}
	}
	if dropped == 0 {
		t.Fatal("the fault injection dropped nothing")
	}
	if got, want := relay.session(chat).texts(), wantTexts(in, chat); !slices.Equal(got, want) {
		t.Errorf("delivered %q\nwant      %q", got, want)
	}
}

// TestWebhookReorderAcrossWindow documents the residual: a delivery later
// than the order window is still delivered once, after the newer message.
func TestWebhookReorderAcrossWindow(t *testing.T) {
	sink := &countingSink{}
	h := newWebhook(t, sink, func(c *servicenow.WebhookConfig) { c.OrderWindow = 30 * time.Millisecond })
	t0 := time.Now()
	post := func(id string, at time.Time) {
		if rec := postSigned(h, "/", whBody(id, id, at), time.Now()); rec.Code != 200 {
			t.Fatalf("%s: %d", id, rec.Code)
		}
	}
	// Inside the window: sorted.
	var wg sync.WaitGroup
	wg.Go(func() { post("m2", t0.Add(2*time.Millisecond)) })
	time.Sleep(5 * time.Millisecond)
	wg.Go(func() { post("m1", t0.Add(time.Millisecond)) })
	wg.Wait()
	// Later than the window: after.
	post("m4", t0.Add(4*time.Millisecond))
	post("m3", t0.Add(3*time.Millisecond))
	var got []string
	for _, ev := range sink.events() {
		if ev.Kind == bridge.AgentMessage {
			got = append(got, ev.Text)
		}
	}
	if want := []string{"m1", "m2", "m4", "m3"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for i, p := range sink.poll {
		if p {
			t.Errorf("call %d: fromPoll = true for a webhook", i)
		}
	}
}

// TestWebhookEventsMatchPoll: the same messages give the same events by
// webhook as by polling (echo, system, joined, end phrase).
func TestWebhookEventsMatchPoll(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, nil)
	sink := &countingSink{}
	h := newWebhook(t, sink, func(cfg *servicenow.WebhookConfig) { cfg.OrderWindow = -1 })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	in.EnableWebhooks(snowtest.WebhookOptions{URL: srv.URL, Secret: whSecret, HexSignature: true})
	chat := openChat(t, c, "s-1")
	if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	in.Advance(time.Second)
	if err := c.Send(context.Background(), dc(chat), bridge.DeskMessage{Key: "k", Text: "thanks"}); err != nil {
		t.Fatal(err)
	}
	in.Advance(time.Second)
	if err := in.Transfer(string(chat), "Fred Luddy"); err != nil {
		t.Fatal(err)
	}
	in.Advance(time.Second)
	if err := in.CloseChat(string(chat)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := in.WaitDeliveries(ctx); err != nil {
		t.Fatal(err)
	}
	polled, err := c.Poll(context.Background(), chat, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	key := func(evs []bridge.AgentEvent) []string {
		var out []string
		seen := map[string]bool{}
		for _, ev := range evs {
			if ev.Kind == bridge.AgentJoined || strings.HasPrefix(ev.ExternalID, "state:") || seen[ev.ExternalID] {
				continue // joined repeats per call; state events come from the queue entry polling reads
			}
			seen[ev.ExternalID] = true
			out = append(out, string(ev.Kind)+"|"+ev.ExternalID+"|"+ev.Author+"|"+ev.Text+"|"+ev.At.String()+"|"+
				strconv.FormatBool(ev.System)+strconv.FormatBool(ev.Echo)+"|"+string(ev.EndReason))
		}
		return out
	}
	got, want := key(sink.events()), key(polled)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("webhook events\n%s\npoll events\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// FuzzParseWebhook feeds arbitrary bodies to the handler: it never panics,
// answers 200 or 400, and stores only well-formed messages.
func FuzzParseWebhook(f *testing.F) {
	now := time.Now()
	f.Add(whBody("a", "hi", now))
	f.Add([]byte("[" + string(whBody("a", "1", now)) + "," + string(whBody("b", "2", now)) + "]"))
	f.Add([]byte(`{"sys_id":"a","group":"` + whGroup + `","sys_created_on":"2024-05-02 14:03:11","message":{"value":"x","display_value":"y"}}`))
	f.Add([]byte(`{"sys_id":1,"group":"` + whGroup + `","timestamp":"1.7e12"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"table":"chat_queue_entry","sys_id":"q","group":"` + whGroup + `","state":"7","timestamp":1714658591123}`))
	f.Add([]byte(`{"table":"chat_queue_entry","group":"` + whGroup + `","state":"8"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		sink := &countingSink{}
		h := newWebhook(t, sink, func(c *servicenow.WebhookConfig) { c.OrderWindow = -1; c.MaxBody = 1 << 20 })
		rec := postSigned(h, "/", body, time.Now())
		switch rec.Code {
		case 200:
			for _, ev := range sink.events() {
				if ev.ExternalID == "" || ev.At.IsZero() {
					t.Fatalf("stored an event without id or time: %+v", ev)
				}
			}
		case 400:
			if len(sink.events()) != 0 {
				t.Fatal("400 but stored")
			}
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}

// TestWebhookStateEvent: the queue-entry rule's state event ends the chat with
// the state's reason; a state that is not closed is refused.
func TestWebhookStateEvent(t *testing.T) {
	tests := []struct {
		state string
		code  int
		want  []bridge.CloseReason
	}{
		{"3", 200, []bridge.CloseReason{bridge.ReasonAgentClosed}},
		{"7", 200, []bridge.CloseReason{bridge.ReasonDeskClosed}},
		{"8", 200, []bridge.CloseReason{bridge.ReasonDeskAbandoned}},
		{"2", 400, nil},
	}
	for _, tc := range tests {
		t.Run("state "+tc.state, func(t *testing.T) {
			now := time.Now()
			relay := &memRelay{}
			relay.add("s-1", whGroup)
			h := newWebhook(t, relay, nil)
			body, _ := json.Marshal(map[string]any{"table": "chat_queue_entry", "sys_id": "qe1", "group": whGroup,
				"state": tc.state, "assigned_to": "Beth Anglin", "timestamp": now.UnixMilli()})
			if rec := postSigned(h, "/webhooks/servicenow", body, now); rec.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if got := relay.session(whGroup).ended; !slices.Equal(got, tc.want) {
				t.Errorf("ended %v, want %v", got, tc.want)
			}
		})
	}
}

// countingLookup is a SessionLookup that knows the chat only from its
// unknownFor+1-th question on, and counts the questions.
type countingLookup struct {
	mu         sync.Mutex
	asked      int
	unknownFor int
}

func (l *countingLookup) DeskData(_ context.Context, chat bridge.AgentChatID) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked++
	if l.asked <= l.unknownFor {
		return "", fmt.Errorf("chat %s: %w", chat, bridge.ErrNotFound)
	}
	return "", nil
}

// TestWebhookLooksUpChatOnce: a delivery for a chat the bridge has not
// recorded yet waits for it, and once the chat was seen recorded, later
// deliveries of it are not held up by a lookup (one read transaction each).
func TestWebhookLooksUpChatOnce(t *testing.T) {
	tests := []struct {
		name       string
		unknownFor int
		wantAsked  int
	}{
		{"recorded before the first delivery", 0, 1},
		{"recorded while the first delivery waits", 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &countingSink{}
			look := &countingLookup{unknownFor: tt.unknownFor}
			h := newWebhook(t, sink, func(c *servicenow.WebhookConfig) {
				c.Sessions, c.OpenWait, c.OrderWindow = look, 2*time.Second, time.Millisecond
			})
			now := time.Now()
			for i := range 4 {
				body := whBody(fmt.Sprintf("s%d", i), fmt.Sprintf("m%d", i), now.Add(time.Duration(i)*time.Second))
				if rec := postSigned(h, "/webhooks/servicenow", body, time.Now()); rec.Code != http.StatusOK {
					t.Fatalf("delivery %d: status %d: %s", i, rec.Code, rec.Body)
				}
			}
			var texts []string
			for _, ev := range sink.events() {
				if ev.Text != "" {
					texts = append(texts, ev.Text)
				}
			}
			if fmt.Sprint(texts) != "[m0 m1 m2 m3]" {
				t.Fatalf("stored %q, want the four messages in order", texts)
			}
			look.mu.Lock()
			defer look.mu.Unlock()
			if look.asked != tt.wantAsked {
				t.Errorf("the chat was looked up %d times for 4 deliveries, want %d", look.asked, tt.wantAsked)
			}
		})
	}
}
