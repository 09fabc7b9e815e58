package snowtest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// receiver records the requests the instance sends.
type receiver struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies [][]byte
	delay  time.Duration
	status int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.bodies = append(r.bodies, b)
	st := r.status
	r.mu.Unlock()
	if st == 0 {
		st = 200
	}
	w.WriteHeader(st)
}

func (r *receiver) got() ([]*http.Request, [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs), slices.Clone(r.bodies)
}

func newReceiver(t *testing.T) (*receiver, string) {
	r := &receiver{}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

func waitDeliveries(t *testing.T, in *snowtest.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.WaitDeliveries(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBusinessRuleWebhook: every new message of a chat is POSTed, signed as
// the script signs it; the bridge user's messages are skipped when asked.
func TestBusinessRuleWebhook(t *testing.T) {
	in := newInstance(t, snowtest.Options{Now: t0})
	rec, url := newReceiver(t)
	clock := time.Unix(1714658600, 0)
	in.EnableWebhooks(snowtest.WebhookOptions{URL: url, Secret: "s3cret", SkipCreatedBy: snowtest.DefaultUser,
		Clock: func() time.Time { return clock }})
	a := do(t, in, "POST", "/api/now/connect/support/queues/"+snowtest.DefaultQueue+"/sessions", "", map[string]string{"message": "hi"})
	group := a.result().(map[string]any)["group"].(string)
	if err := in.Accept(group, "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	msg, err := in.Say(group, "Beth Anglin", "how can I help?")
	if err != nil {
		t.Fatal(err)
	}
	waitDeliveries(t, in)
	reqs, bodies := rec.got()
	if len(reqs) != 2 { // greeting and answer; the requester's "hi" is skipped
		t.Fatalf("%d webhooks, want 2", len(reqs))
	}
	var last map[string]any
	for i, r := range reqs {
		stamp := r.Header.Get("X-Handoff-Timestamp")
		if stamp != "1714658600" {
			t.Errorf("timestamp %q", stamp)
		}
		m := hmac.New(sha256.New, []byte("s3cret"))
		m.Write([]byte(stamp + "."))
		m.Write(bodies[i])
		if want := "sha256=" + base64.StdEncoding.EncodeToString(m.Sum(nil)); r.Header.Get("X-Handoff-Signature") != want {
			t.Errorf("signature %q, want %q", r.Header.Get("X-Handoff-Signature"), want)
		}
		if r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("content type %q", r.Header.Get("Content-Type"))
		}
		var p map[string]any
		if err := json.Unmarshal(bodies[i], &p); err != nil {
			t.Fatal(err)
		}
		if p["sys_id"] == msg.SysID { // deliveries run concurrently: find the answer's
			last = p
		}
	}
	if last["sys_id"] != msg.SysID || last["group"] != group || last["message"] != "how can I help?" ||
		last["created_by"] != "beth.anglin" || last["sender_name"] != "Beth Anglin" ||
		last["sys_created_on"] != "2024-05-02 14:03:11" || last["timestamp"] != float64(t0.UnixMilli()) {
		t.Errorf("payload %v", last)
	}
}

// TestDeliveryFaults: drops, duplicates and reordering happen as configured.
func TestDeliveryFaults(t *testing.T) {
	in := newInstance(t, snowtest.Options{})
	rec, url := newReceiver(t)
	in.EnableWebhooks(snowtest.WebhookOptions{URL: url, Username: "u", Password: "p"})
	in.SetDeliveryFaults(snowtest.DeliveryFaults{DropEvery: 5, DuplicateEvery: 4, ReorderEvery: 3, ReorderHold: 200 * time.Millisecond})
	a := do(t, in, "POST", "/api/now/connect/support/queues/"+snowtest.DefaultQueue+"/sessions", "", map[string]string{"message": "m0"})
	group := a.result().(map[string]any)["group"].(string)
	if err := in.Accept(group, "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	for i := range 18 {
		if _, err := in.Say(group, "Beth Anglin", "x"+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond)
	}
	waitDeliveries(t, in)
	var dropped, dups int
	for _, d := range in.Deliveries() {
		if d.Dropped {
			dropped++
		}
		if d.Copy > 0 {
			dups++
		}
		if !d.Dropped && d.Status != 200 {
			t.Errorf("delivery %+v", d)
		}
	}
	// 20 messages (m0, greeting, 18 answers): every 5th dropped.
	if dropped != 4 || dups == 0 {
		t.Errorf("dropped %d duplicated %d", dropped, dups)
	}
	reqs, bodies := rec.got()
	if len(reqs) != 20-dropped+dups {
		t.Errorf("%d requests", len(reqs))
	}
	var order []string
	for i, b := range bodies {
		if user, pass, ok := reqs[i].BasicAuth(); !ok || user != "u" || pass != "p" {
			t.Errorf("basic auth %q %q", user, pass)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		order = append(order, m["message"].(string))
	}
	if slices.IsSorted(order[2:]) {
		t.Errorf("no reordering: %q", order)
	}
}

// vaDo posts a Bot Integration API request.
func vaDo(t *testing.T, in *snowtest.Instance, body string, hdr map[string]string, basic bool) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", in.URL()+"/api/sn_va_as_service/bot/integration", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if basic {
		req.SetBasicAuth(snowtest.DefaultUser, snowtest.DefaultPassword)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &a.body)
	return a
}

// TestVAEndpointRejects: what a real instance refuses at once, the fake
// refuses; a failed message auth is accepted and dropped, as documented.
func TestVAEndpointRejects(t *testing.T) {
	in := newInstance(t, snowtest.Options{})
	if a := vaDo(t, in, `{}`, nil, true); a.status != 400 {
		t.Errorf("VA mode off: %d", a.status)
	}
	in.EnableVA(snowtest.VAOptions{Token: "ORANGE", Secret: "hash"})
	agent := `{"requestId":"r1","clientSessionId":"c1","userId":"c1","action":"AGENT","message":{"text":"help","typed":true}}`
	tok := map[string]string{"token": "ORANGE"}
	tests := []struct {
		name   string
		body   string
		hdr    map[string]string
		basic  bool
		status int
	}{
		{"no credentials", agent, tok, false, 401},
		{"not json", `hello`, tok, true, 400},
		{"no requestId", `{"userId":"u","message":{"text":"x"}}`, tok, true, 400},
		{"no userId", `{"requestId":"r","message":{"text":"x"}}`, tok, true, 400},
		{"message without message", `{"requestId":"r","userId":"u","clientSessionId":"c1"}`, tok, true, 400},
		{"end with text", `{"requestId":"r","userId":"u","clientSessionId":"c1","action":"END_CONVERSATION","message":{"text":"bye"}}`, tok, true, 400},
		{"update without list", `{"requestId":"r","userId":"u","clientSessionId":"c1","action":"UPDATE_MESSAGES","message":{"id":"x"}}`, tok, true, 400},
		{"update bad status", `{"requestId":"r","userId":"u","clientSessionId":"c1","action":"UPDATE_MESSAGES","message":[{"id":"x","status":"read"}]}`, tok, true, 400},
		{"unknown action", `{"requestId":"r","userId":"u","action":"DANCE","message":{"text":""}}`, tok, true, 400},
		{"wrong token: 200, dropped", agent, map[string]string{"token": "APPLE"}, true, 200},
	}
	for _, tt := range tests {
		if a := vaDo(t, in, tt.body, tt.hdr, tt.basic); a.status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, a.status, tt.status, a.raw)
		} else if tt.status != 200 && a.body["status"] != "failure" {
			t.Errorf("%s: body %s", tt.name, a.raw)
		}
	}
	if len(in.Chats()) != 0 || len(in.VALog()) != 1 {
		t.Errorf("chats %d, log %q", len(in.Chats()), in.VALog())
	}
	m := hmac.New(sha1.New, []byte("hash"))
	m.Write([]byte(agent))
	if a := vaDo(t, in, agent, map[string]string{"x-b2b-signature": hex.EncodeToString(m.Sum(nil))}, true); a.status != 200 || a.body["status"] != "success" {
		t.Fatalf("signed: %d %s", a.status, a.raw)
	}
	if len(in.Chats()) != 1 {
		t.Errorf("signed AGENT opened %d chats", len(in.Chats()))
	}
}

// TestVACallbacks: the agent's actions come back as callbacks with the
// configured headers and the echoed clientVariables, one after the other.
func TestVACallbacks(t *testing.T) {
	in := newInstance(t, snowtest.Options{})
	rec, url := newReceiver(t)
	in.EnableVA(snowtest.VAOptions{Token: "ORANGE", CallbackURL: url, CallbackHeaders: map[string]string{"X-Handoff-Secret": "cb"}})
	tok := map[string]string{"token": "ORANGE"}
	body := `{"requestId":"r1","clientSessionId":"c1","userId":"c1","action":"AGENT","message":{"text":"help","typed":true},` +
		`"clientVariables":{"nonce":"n1"},"history":[{"displayName":"Abel","isBotMessage":false,"value":"vpn broken","type":"text"}]}`
	if a := vaDo(t, in, body, tok, true); a.status != 200 {
		t.Fatal(a.raw)
	}
	group := in.Chats()[0].Group
	if !strings.Contains(in.Messages(group)[0].Text, "vpn broken") {
		t.Errorf("first message %q", in.Messages(group)[0].Text)
	}
	if err := in.Accept(group, "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Say(group, "Beth Anglin", "on it"); err != nil {
		t.Fatal(err)
	}
	if err := in.AgentTyping(group); err != nil {
		t.Fatal(err)
	}
	if err := in.CloseChat(group); err != nil {
		t.Fatal(err)
	}
	if a := vaDo(t, in, `{"requestId":"r2","clientSessionId":"c1","userId":"c1","message":{"text":"late"}}`, tok, true); a.status != 200 {
		t.Fatal(a.raw)
	}
	waitDeliveries(t, in)
	reqs, bodies := rec.got()
	var kinds []string
	for i, b := range bodies {
		if reqs[i].Header.Get("X-Handoff-Secret") != "cb" {
			t.Errorf("callback %d without the header", i)
		}
		var cb struct {
			ClientSessionID string         `json:"clientSessionId"`
			ClientVariables map[string]any `json:"clientVariables"`
			Completed       bool           `json:"completed"`
			Body            []struct {
				UIType     string `json:"uiType"`
				ActionType string `json:"actionType"`
				Value      string `json:"value"`
				AgentInfo  *struct {
					SentFromAgent bool `json:"sentFromAgent"`
				} `json:"agentInfo"`
			} `json:"body"`
		}
		if err := json.Unmarshal(b, &cb); err != nil {
			t.Fatal(err)
		}
		if cb.ClientSessionID != "c1" || cb.ClientVariables["nonce"] != "n1" {
			t.Errorf("callback %d: %s", i, b)
		}
		for _, it := range cb.Body {
			k := it.UIType + ":" + it.ActionType
			if it.AgentInfo != nil && it.AgentInfo.SentFromAgent {
				k += ":agent"
			}
			kinds = append(kinds, k)
		}
		if cb.Completed {
			kinds = append(kinds, "completed")
		}
	}
	want := []string{"OutputText:", "ActionMsg:StartSpinner", "ActionMsg:SwitchToLiveAgent", "ActionMsg:System",
		"OutputText::agent", "OutputText::agent", "ActionMsg:StartTypingIndicator", "ActionMsg:System", "ActionMsg:SwitchToVirtualAgent", "completed"}
	if !slices.Equal(kinds, want) {
		t.Errorf("callbacks %q\nwant      %q", kinds, want)
	}
	if log := in.VALog(); len(log) != 1 || !strings.Contains(log[0], "no live agent conversation") {
		t.Errorf("log %q", log)
	}
}

// TestVACallbackTimeout: a receiver slower than the outbound timeout is a
// failed delivery.
func TestVACallbackTimeout(t *testing.T) {
	in := newInstance(t, snowtest.Options{})
	rec, url := newReceiver(t)
	rec.delay = 300 * time.Millisecond
	in.EnableVA(snowtest.VAOptions{Token: "ORANGE", CallbackURL: url, Timeout: 100 * time.Millisecond})
	body := `{"requestId":"r1","clientSessionId":"c1","userId":"c1","action":"AGENT","message":{"text":"help"}}`
	if a := vaDo(t, in, body, map[string]string{"token": "ORANGE"}, true); a.status != 200 {
		t.Fatal(a.raw)
	}
	waitDeliveries(t, in)
	ds := in.Deliveries()
	if len(ds) != 1 || ds[0].Status != 0 || ds[0].Err == "" {
		t.Errorf("deliveries %+v", ds)
	}
}
