package servicenow

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/recorded"
)

// TestVAAgentFiles: the agent's link and image outputs of the recorded
// callback (the documented controls) become agent messages with files; the
// text output stays a plain message.
func TestVAAgentFiles(t *testing.T) {
	cb, err := ParseVACallback(recorded.Load("va_agent_file_callback.json").Request)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1714659791, 0)
	evs := newVAClassifier(VAWebhookConfig{}).events("teams-conv-42", cb, at)
	type got struct {
		ID, Author, Text string
		Files            []bridge.Attachment
	}
	var out []got
	for _, ev := range evs {
		if ev.Kind != bridge.AgentMessage {
			t.Fatalf("event %+v, want only agent messages", ev)
		}
		out = append(out, got{ev.ExternalID, ev.Author, ev.Text, ev.Attachments})
	}
	want := []got{
		{"c91d5f6bdb5a1010a4c1f2b3c4d5e6f7", "Beth Anglin", "Here is the VPN guide", nil},
		{"d02e5f6bdb5a1010a4c1f2b3c4d5e6f7", "Beth Anglin", "VPN setup guide", []bridge.Attachment{
			{Name: "vpn-guide.pdf", URL: "https://acme.service-now.com/sys_attachment.do?sys_id=615ea769c0a80166001cf5f2367302f5"}}},
		{"e13f5f6bdb5a1010a4c1f2b3c4d5e6f7", "Beth Anglin", "", []bridge.Attachment{
			{Name: "vpn-error.png", ContentType: "image", URL: "https://acme.service-now.com/sys_attachment.do?sys_id=7a1f2b3c4d5e6f708192a3b4c5d6e7f9"}}},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("events\n%+v\nwant\n%+v", out, want)
	}
}

func TestVAFile(t *testing.T) {
	for _, tt := range []struct {
		name, uiType, item string
		want               bridge.Attachment
		header             string
		ok                 bool
	}{
		{"link", "OutputLink", `{"label":"guide.pdf","header":"The guide","value":{"action":"https://i.example/g.pdf","target":"_blank"}}`,
			bridge.Attachment{Name: "guide.pdf", URL: "https://i.example/g.pdf"}, "The guide", true},
		{"link named by its header only", "OutputLink", `{"label":"guide.pdf","header":"guide.pdf","value":{"action":"https://i.example/g.pdf"}}`,
			bridge.Attachment{Name: "guide.pdf", URL: "https://i.example/g.pdf"}, "", true},
		{"link without a label stays text", "OutputLink", `{"header":"Reset here:","value":{"action":"https://i.example/reset"}}`,
			bridge.Attachment{}, "", false},
		{"image", "OutputImage", `{"value":"https://i.example/a.png","altText":"screen"}`,
			bridge.Attachment{Name: "screen", ContentType: "image", URL: "https://i.example/a.png"}, "", true},
		{"image without alt text: the path names it", "OutputImage", `{"value":"https://i.example/files/error.png?x=1"}`,
			bridge.Attachment{Name: "error.png", ContentType: "image", URL: "https://i.example/files/error.png?x=1"}, "", true},
		{"link without action", "OutputLink", `{"label":"x","value":{}}`, bridge.Attachment{}, "", false},
		{"link value not an object", "OutputLink", `{"label":"x","value":"https://i.example"}`, bridge.Attachment{}, "", false},
		{"image without a URL", "OutputImage", `{"value":""}`, bridge.Attachment{}, "", false},
		{"image value an object", "OutputImage", `{"value":{"a":1}}`, bridge.Attachment{}, "", false},
		{"text", "OutputText", `{"value":"hello"}`, bridge.Attachment{}, "", false},
		{"not JSON", "OutputLink", `{`, bridge.Attachment{}, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, header, ok := vaFile(tt.uiType, json.RawMessage(tt.item))
			if ok != tt.ok || f != tt.want || header != tt.header {
				t.Errorf("vaFile = %+v, %q, %v; want %+v, %q, %v", f, header, ok, tt.want, tt.header, tt.ok)
			}
		})
	}
	// The virtual agent's own link (not from an agent) stays text.
	cb, err := ParseVACallback([]byte(`{"clientSessionId":"c","body":[{"uiType":"OutputLink","header":"Read","value":{"action":"https://kb.example/1"}}]}`))
	if err != nil || len(cb.Items) != 1 || len(cb.Items[0].Files) != 0 || cb.Items[0].Text != "Read https://kb.example/1" {
		t.Errorf("bot link: %+v, %v", cb.Items, err)
	}
}

// FuzzVAFile: any item parses without panicking; a file found always has a
// link.
func FuzzVAFile(f *testing.F) {
	f.Add("OutputLink", []byte(`{"label":"guide.pdf","value":{"action":"https://i.example/g.pdf"}}`))
	f.Add("OutputImage", []byte(`{"value":"https://i.example/a.png","altText":"a"}`))
	f.Add("OutputImage", []byte(`{"value":12}`))
	f.Fuzz(func(t *testing.T, uiType string, raw []byte) {
		file, _, ok := vaFile(uiType, raw)
		if ok && file.URL == "" {
			t.Fatalf("a file without a link from %s %q", uiType, raw)
		}
	})
}
