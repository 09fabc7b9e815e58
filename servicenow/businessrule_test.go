package servicenow_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

type ruleRequest struct {
	Rule        string            `json:"rule"`
	Endpoint    string            `json:"endpoint"`
	Method      string            `json:"method"`
	Headers     map[string]string `json:"headers"`
	AuthProfile string            `json:"auth_profile"`
	BodyBase64  string            `json:"body_base64"`
}

// runRules runs the Business Rules of runs under Node.js (stubs of the
// documented server-side APIs in testdata/businessrule_harness.js) and
// returns the requests they sent.
func runRules(t *testing.T, node, macCharset string, props map[string]string, runs []map[string]any, now time.Time, liveMessages ...map[string]string) []ruleRequest {
	t.Helper()
	return runRulesWith(t, node, macCharset, props, runs, now, map[string]any{"live_message": liveMessages})
}

// runRulesWith is runRules with more tables (by name, rows of fields).
func runRulesWith(t *testing.T, node, macCharset string, props map[string]string, runs []map[string]any, now time.Time, tables map[string]any) []ruleRequest {
	t.Helper()
	dir, err := filepath.Abs("businessrule")
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]any{"chat_queue_entry": []map[string]string{
		{"group": whGroup, "opened_by.user_name": snowtest.DefaultUser},
	}}
	for k, v := range tables {
		all[k] = v
	}
	scenario, _ := json.Marshal(map[string]any{
		"dir": dir, "includes": []string{"HandoffWebhook.js"}, "props": props, "now_ms": now.UnixMilli(),
		"mac_charset": macCharset,
		"tables":      all,
		"runs":        runs,
	})
	cmd := exec.Command(node, "testdata/businessrule_harness.js")
	cmd.Stdin = bytes.NewReader(scenario)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var res struct {
		Sent []ruleRequest `json:"sent"`
		Logs []string      `json:"logs"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("harness output %q: %v", out, err)
	}
	for _, l := range res.Logs {
		t.Logf("instance log: %s", l)
	}
	return res.Sent
}

// TestBusinessRules runs servicenow/businessrule/*.js under Node.js with
// stubs of ServiceNow's documented server-side APIs, and posts each request
// a rule sends to the real webhook handler: accepted when intact, 401 when
// tampered, non-ASCII text intact whatever character set generateMac hashes
// in, and a queue entry closed without a message ends the chat.
func TestBusinessRules(t *testing.T) {
	node := needNode(t)
	const text = "Café 😀 <b>& naïve ünïcödé"
	now := time.Now().Truncate(time.Millisecond)
	props := map[string]string{"handoff.webhook.url": "https://bridge.example.com/webhooks/servicenow",
		"handoff.webhook.secret": whSecret, "handoff.webhook.bridge_user": snowtest.DefaultUser}
	msg := func(sysID, by, text string) map[string]any {
		return map[string]any{"rule": "live_message_webhook.js",
			"current": map[string]any{"sys_id": sysID, "group": whGroup, "message": text, "sys_created_by": by,
				"profile": "p1", "sys_created_on": now.UTC().Format(servicenow.TimeLayout)},
			"display": map[string]string{"profile": "Beth Anglin"}}
	}
	state := func(from, to string) map[string]any {
		return map[string]any{"rule": "chat_queue_entry_webhook.js",
			"current":  map[string]any{"sys_id": "qe1", "group": whGroup, "state": to},
			"display":  map[string]string{"assigned_to": "Beth Anglin"},
			"previous": map[string]any{"sys_id": "qe1", "group": whGroup, "state": from}}
	}
	runs := []map[string]any{
		msg("m1", "beth.anglin", text),
		msg("m2", snowtest.DefaultUser, "the bridge's own echo: not sent"),
		state("2", "2"), // another field changed: not sent
		state("2", "7"), // closed from outside
	}
	for _, charset := range []string{"utf8", "latin1"} {
		t.Run("generateMac hashes "+charset, func(t *testing.T) {
			sent := runRules(t, node, charset, props, runs, now)
			if got := len(sent); got != 2 {
				t.Fatalf("%d requests sent, want 2 (the agent's message and the closing state): %+v", got, sent)
			}
			relay := &memRelay{}
			relay.add("s-1", whGroup)
			h := newWebhook(t, relay, func(c *servicenow.WebhookConfig) { c.Now = func() time.Time { return now } })
			for _, r := range sent {
				body, _ := base64.StdEncoding.DecodeString(r.BodyBase64)
				if r.Method != http.MethodPost || r.Endpoint != props["handoff.webhook.url"] ||
					r.Headers["Content-Type"] != "application/json; charset=utf-8" {
					t.Errorf("%s: %s %s Content-Type %q", r.Rule, r.Method, r.Endpoint, r.Headers["Content-Type"])
				}
				if regexp.MustCompile(`[^\x20-\x7e]`).Match(body) {
					t.Errorf("%s: body is not pure ASCII: %s", r.Rule, body)
				}
				post := func(b []byte) int {
					req := httptest.NewRequest(http.MethodPost, "/webhooks/servicenow", bytes.NewReader(b))
					for k, v := range r.Headers {
						req.Header.Set(k, v)
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					return rec.Code
				}
				tampered := bytes.Replace(body, []byte(`"m1"`), []byte(`"m9"`), 1)
				tampered = bytes.Replace(tampered, []byte(`"7"`), []byte(`"3"`), 1)
				if code := post(tampered); code != http.StatusUnauthorized {
					t.Errorf("%s: tampered body answered %d, want 401", r.Rule, code)
				}
				if code := post(body); code != http.StatusOK {
					t.Errorf("%s: intact request answered %d, want 200: %s", r.Rule, code, body)
				}
			}
			s := relay.session(whGroup)
			if got := s.texts(); !slices.Equal(got, []string{text}) {
				t.Errorf("delivered %q, want the agent's text intact", got)
			}
			if !slices.Equal(s.ended, []bridge.CloseReason{bridge.ReasonDeskClosed}) {
				t.Errorf("ended %v, want [desk_closed] from the queue entry's state 7", s.ended)
			}
		})
	}
}

// TestBusinessRulePrevious: the live_message rule names the chat's previous
// message(s) in "previous": the rows of the same chat, other than the new
// one and not the bridge user's, of the newest second at or before the new
// row's sys_created_on (all of them, since sys_id does not order a second);
// [] for the chat's first message.
func TestBusinessRulePrevious(t *testing.T) {
	node := needNode(t)
	now := time.Now().Truncate(time.Millisecond)
	props := map[string]string{"handoff.webhook.url": "https://bridge.example.com/webhooks/servicenow",
		"handoff.webhook.secret": whSecret, "handoff.webhook.bridge_user": snowtest.DefaultUser}
	row := func(id, group, by, on string) map[string]string {
		return map[string]string{"sys_id": id, "group": group, "sys_created_by": by, "sys_created_on": "2026-12-02 10:00:" + on}
	}
	current := row("new", whGroup, "beth.anglin", "05")
	run := []map[string]any{{"rule": "live_message_webhook.js",
		"display": map[string]string{"profile": "Beth Anglin"},
		"current": map[string]any{"sys_id": "new", "group": whGroup, "message": "hi", "sys_created_by": "beth.anglin", "profile": "p1",
			"sys_created_on": current["sys_created_on"]}}}
	other := strings.Repeat("b", 32)
	tests := []struct {
		name string
		rows []map[string]string
		want []string
	}{
		{"first message", []map[string]string{current, row("x", other, "beth.anglin", "01")}, []string{}},
		{"one before", []map[string]string{row("a", whGroup, "beth.anglin", "01"), current}, []string{"a"}},
		{"newest second, all of it, skipping the bridge, later rows and other chats", []map[string]string{
			row("a", whGroup, "beth.anglin", "01"), row("c", whGroup, "system", "03"), row("d", whGroup, "beth.anglin", "03"),
			row("b", whGroup, snowtest.DefaultUser, "04"), row("e", other, "beth.anglin", "04"),
			row("f", whGroup, "beth.anglin", "09"), current}, []string{"c", "d"}},
		{"same second as the new row", []map[string]string{row("a", whGroup, "beth.anglin", "01"),
			row("g", whGroup, "abel.tuter", "05"), current}, []string{"g"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sent := runRules(t, node, "utf8", props, run, now, tc.rows...)
			if len(sent) != 1 {
				t.Fatalf("%d requests sent, want 1", len(sent))
			}
			body, _ := base64.StdEncoding.DecodeString(sent[0].BodyBase64)
			var ev struct {
				Previous []string `json:"previous"`
			}
			if err := json.Unmarshal(body, &ev); err != nil || ev.Previous == nil {
				t.Fatalf("body %s: previous missing (%v)", body, err)
			}
			slices.Sort(ev.Previous)
			if !slices.Equal(ev.Previous, tc.want) {
				t.Errorf("previous = %q, want %q", ev.Previous, tc.want)
			}
		})
	}
}

// TestBusinessRuleHeaders: every rule names its table as ServiceNow does.
func TestBusinessRuleHeaders(t *testing.T) {
	want := map[string]string{
		"live_message_webhook.js":     "Live Feed Message [live_message]",
		"chat_queue_entry_webhook.js": "Chat Queue Entry [chat_queue_entry]",
	}
	for file, table := range want {
		f, err := os.Open(filepath.Join("businessrule", file))
		if err != nil {
			t.Fatal(err)
		}
		found := ""
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if _, v, ok := strings.Cut(sc.Text(), "Table:"); ok {
				found = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
		if found != table {
			t.Errorf("%s: Table %q, want %q", file, found, table)
		}
	}
}
