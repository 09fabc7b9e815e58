package servicenow_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// TestBusinessRuleAttachments: the live_message rule sends the message's
// sys_attachment records (only this message's, in the Attachment API's
// field names, the link built from glide.servlet.uri) as "attachments",
// with the keys the fake's rule sends, and the bridge turns them into the
// agent event's files.
func TestBusinessRuleAttachments(t *testing.T) {
	node := needNode(t)
	now := time.Now().Truncate(time.Millisecond)
	props := map[string]string{"handoff.webhook.url": "https://bridge.example.com/webhooks/servicenow",
		"handoff.webhook.secret": whSecret, "handoff.webhook.bridge_user": snowtest.DefaultUser,
		"glide.servlet.uri": "https://acme.service-now.com/"}
	run := func(sysID string) map[string]any {
		return map[string]any{"rule": "live_message_webhook.js",
			"current": map[string]any{"sys_id": sysID, "group": whGroup, "message": "Here it is", "sys_created_by": "beth.anglin",
				"profile": "p1", "sys_created_on": now.UTC().Format(servicenow.TimeLayout)},
			"display": map[string]string{"profile": "Beth Anglin"}}
	}
	files := []map[string]string{
		{"sys_id": "a1", "table_name": "live_message", "table_sys_id": "m1", "file_name": "vpn-guide.pdf", "content_type": "application/pdf", "size_bytes": "2048"},
		{"sys_id": "a2", "table_name": "live_message", "table_sys_id": "m1", "file_name": "error.png", "content_type": "image/png", "size_bytes": "106879"},
		{"sys_id": "a3", "table_name": "live_message", "table_sys_id": "m2", "file_name": "other.txt", "content_type": "text/plain", "size_bytes": "3"},
		{"sys_id": "a4", "table_name": "incident", "table_sys_id": "m1", "file_name": "not-this.txt", "content_type": "text/plain", "size_bytes": "3"},
	}
	sent := runRulesWith(t, node, "utf8", props, []map[string]any{run("m1")}, now, map[string]any{"sys_attachment": files})
	if len(sent) != 1 {
		t.Fatalf("%d requests, want 1", len(sent))
	}
	body, _ := base64.StdEncoding.DecodeString(sent[0].BodyBase64)
	var ev struct {
		Attachments []map[string]any `json:"attachments"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	for _, a := range ev.Attachments {
		keys := make([]string, 0, len(a))
		for k := range a {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if want := []string{"content_type", "download_link", "file_name", "size_bytes", "sys_id"}; !slices.Equal(keys, want) {
			t.Errorf("attachment keys %q, want %q (what the fake's rule sends)", keys, want)
		}
	}
	relay := &memRelay{}
	relay.add("s-1", whGroup)
	h := newWebhook(t, relay, func(c *servicenow.WebhookConfig) { c.Now = func() time.Time { return now }; c.OrderWindow = -1 })
	req := httptest.NewRequest(http.MethodPost, "/webhooks/servicenow", bytes.NewReader(body))
	for k, v := range sent[0].Headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("webhook answered %d: %s", rec.Code, rec.Body)
	}
	got := relay.session(whGroup).delivered
	want := []bridge.Attachment{
		{Name: "vpn-guide.pdf", ContentType: "application/pdf", URL: "https://acme.service-now.com/api/now/attachment/a1/file", Size: 2048},
		{Name: "error.png", ContentType: "image/png", URL: "https://acme.service-now.com/api/now/attachment/a2/file", Size: 106879},
	}
	if len(got) != 1 || got[0].Text != "Here it is" || !reflect.DeepEqual(got[0].Attachments, want) {
		t.Fatalf("delivered %+v, want the message with %+v", got, want)
	}
}
