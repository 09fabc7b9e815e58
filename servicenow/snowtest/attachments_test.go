package snowtest_test

import (
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/handoffhq/handoff/servicenow/recorded"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// TestAttachmentAPI: the fake's Attachment API answers in the recorded
// shape (the documented example), lists only the files of the messages the
// query names, refuses a query term it does not know (400) instead of
// answering everything, and serves the file behind download_link.
func TestAttachmentAPI(t *testing.T) {
	x := recorded.Load("attachment_live_message.json")
	in := newInstance(t, snowtest.Options{})
	g := openChat(t, in, "vpn broken")
	if err := in.Accept(g, "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	m, err := in.SayFiles(g, "Beth Anglin", "Here it is", snowtest.File{Name: "vpn.txt", ContentType: "text/plain", Content: []byte("gateway=vpn.example")})
	if err != nil {
		t.Fatal(err)
	}
	other, err := in.SayFiles(g, "Beth Anglin", "And this", snowtest.File{Name: "b.png", ContentType: "image/png", Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	q := func(query string) string { return "/api/now/attachment?sysparm_query=" + url.QueryEscape(query) }
	a := do(t, in, "GET", q("table_name=live_message^table_sys_idIN"+m.SysID+"^ORDERBYsys_created_on"), "", nil)
	if a.status != x.Status || jsonShape(t, []byte(a.raw)) != jsonShape(t, x.Body) {
		t.Fatalf("fake %d %s\nrecorded %d %s", a.status, a.raw, x.Status, x.Body)
	}
	list := a.list(t)
	if len(list) != 1 || list[0]["table_sys_id"] != m.SysID || list[0]["file_name"] != "vpn.txt" || list[0]["size_bytes"] != "19" ||
		list[0]["download_link"] != in.URL()+"/api/now/attachment/"+m.Files[0].SysID+"/file" {
		t.Fatalf("list %+v", list)
	}
	if n := len(do(t, in, "GET", q("table_sys_idIN"+m.SysID+","+other.SysID), "", nil).list(t)); n != 2 {
		t.Errorf("two messages: %d files, want 2", n)
	}
	if a := do(t, in, "GET", q("file_nameLIKEvpn"), "", nil); a.status != http.StatusBadRequest {
		t.Errorf("unknown term: %d %s, want 400", a.status, a.raw)
	}
	req, _ := http.NewRequest(http.MethodGet, list[0]["download_link"].(string), nil)
	req.SetBasicAuth(snowtest.DefaultUser, snowtest.DefaultPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "gateway=vpn.example" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("file: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if a := do(t, in, "GET", "/api/now/attachment/0123/file", "", nil); a.status != http.StatusNotFound {
		t.Errorf("unknown file: %d, want 404", a.status)
	}
}
