package servicenow

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/recorded"
)

func TestParseAttachments(t *testing.T) {
	const msg = "1e0f2b3c4d5e6f708192a3b4c5d6e7f8"
	var body struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(recorded.Load("attachment_live_message.json").Body, &body); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		in      string
		want    map[string][]bridge.Attachment
		skipped int
		err     bool
	}{
		{"recorded (the documented example, on live_message)", string(body.Result), map[string][]bridge.Attachment{msg: {
			{Name: "vpn-client-settings.txt", ContentType: "text/plain", URL: "https://acme.service-now.com/api/now/attachment/615ea769c0a80166001cf5f2367302f5/file", Size: 462},
			{Name: "vpn-error.png", ContentType: "image/png", URL: "https://acme.service-now.com/api/now/attachment/7a1f2b3c4d5e6f708192a3b4c5d6e7f9/file", Size: 106879},
		}}, 0, false},
		{"display-value objects and a number size", `[{"table_sys_id":{"value":"m1","display_value":"m1"},"table_name":"live_message","file_name":{"value":"a.pdf","display_value":"a.pdf"},"content_type":"application/pdf","size_bytes":12,"download_link":"https://i.example/api/now/attachment/x/file"}]`,
			map[string][]bridge.Attachment{"m1": {{Name: "a.pdf", ContentType: "application/pdf", URL: "https://i.example/api/now/attachment/x/file", Size: 12}}}, 0, false},
		{"unreadable size is unknown", `[{"table_sys_id":"m1","size_bytes":"lots","file_name":"a"},{"table_sys_id":"m1","size_bytes":"-5","file_name":"b"}]`,
			map[string][]bridge.Attachment{"m1": {{Name: "a"}, {Name: "b"}}}, 0, false},
		{"another table and no record are skipped", `[{"table_sys_id":"i1","table_name":"incident","file_name":"x"},{"file_name":"y"},{"table_sys_id":["not","a","scalar"]},7]`,
			map[string][]bridge.Attachment{}, 4, false},
		{"empty", `[]`, map[string][]bridge.Attachment{}, 0, false},
		{"not a list", `{"result":[]}`, nil, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped, err := parseAttachments(json.RawMessage(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err == nil && (!reflect.DeepEqual(got, tt.want) || skipped != tt.skipped) {
				t.Errorf("got %+v (%d skipped)\nwant %+v (%d skipped)", got, skipped, tt.want, tt.skipped)
			}
		})
	}
}

func TestParseFileList(t *testing.T) {
	for _, tt := range []struct {
		in    string
		want  []bridge.Attachment
		known bool
		err   bool
	}{
		{``, nil, false, false},
		{`null`, nil, false, false},
		{`[]`, nil, true, false},
		{`[{"sys_id":"a1","file_name":"guide.pdf","content_type":"application/pdf","size_bytes":"2048","download_link":"https://i.example/api/now/attachment/a1/file"}]`,
			[]bridge.Attachment{{Name: "guide.pdf", ContentType: "application/pdf", URL: "https://i.example/api/now/attachment/a1/file", Size: 2048}}, true, false},
		{`{"file_name":"x"}`, nil, false, true},
		{`[` + repeatJSON(`{"file_name":"x"}`, maxFiles+1) + `]`, nil, false, true},
	} {
		got, known, err := parseFileList(json.RawMessage(tt.in))
		if (err != nil) != tt.err || known != tt.known || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseFileList(%.60s) = %+v, %v, %v; want %+v, %v, error %v", tt.in, got, known, err, tt.want, tt.known, tt.err)
		}
	}
}

func repeatJSON(item string, n int) string {
	out := item
	for range n - 1 {
		out += "," + item
	}
	return out
}

// FuzzParseAttachments: any Attachment API answer or Business Rule list
// parses without panicking, and every file it returns belongs to a record.
func FuzzParseAttachments(f *testing.F) {
	var body struct {
		Result json.RawMessage `json:"result"`
	}
	_ = json.Unmarshal(recorded.Load("attachment_live_message.json").Body, &body)
	f.Add([]byte(body.Result))
	f.Add([]byte(`[{"table_sys_id":"m","size_bytes":"99999999999999999999"}]`))
	f.Add([]byte(`[{"sys_id":"a","file_name":"x","download_link":"javascript:1"}]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, _, err := parseAttachments(raw)
		if err == nil {
			for rec, fs := range got {
				if rec == "" || len(fs) == 0 {
					t.Fatalf("record %q with %d files", rec, len(fs))
				}
				for _, a := range fs {
					if a.Size < 0 {
						t.Fatalf("negative size %d", a.Size)
					}
				}
			}
		}
		files, known, err := parseFileList(raw)
		if err != nil && (known || files != nil) {
			t.Fatalf("an error with files %+v (known %v)", files, known)
		}
		if len(files) > maxFiles {
			t.Fatalf("%d files, at most %d", len(files), maxFiles)
		}
	})
}
