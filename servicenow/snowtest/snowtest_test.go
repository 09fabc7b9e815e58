package snowtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/servicenow/snowtest"
)

var t0 = time.Date(2024, 5, 2, 14, 3, 11, 123_000_000, time.UTC)

func newInstance(t *testing.T, opts snowtest.Options) *snowtest.Instance {
	t.Helper()
	in := snowtest.New(opts)
	t.Cleanup(in.Close)
	return in
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do sends a request as the default user (auth "" → Basic default user;
// "-" → none; anything else is the Authorization header).
func do(t *testing.T, in *snowtest.Instance, method, path, auth string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, in.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	switch auth {
	case "":
		req.SetBasicAuth(snowtest.DefaultUser, snowtest.DefaultPassword)
	case "-":
	default:
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
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

func (a answer) result() any { return a.body["result"] }

func (a answer) list(t *testing.T) []map[string]any {
	t.Helper()
	raw, ok := a.result().([]any)
	if !ok {
		t.Fatalf("result is not a list: %s", a.raw)
	}
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		out[i] = r.(map[string]any)
	}
	return out
}

func (a answer) errorMessage() string {
	e, _ := a.body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

func openChat(t *testing.T, in *snowtest.Instance, text string) string {
	t.Helper()
	a := do(t, in, "POST", "/api/now/connect/support/queues/"+snowtest.DefaultQueue+"/sessions", "", map[string]string{"message": text})
	if a.status != 200 {
		t.Fatalf("open: %d %s", a.status, a.raw)
	}
	return a.result().(map[string]any)["group"].(string)
}

func TestAuth(t *testing.T) {
	in := newInstance(t, snowtest.Options{Now: t0,
		OAuthClients: []snowtest.OAuthClient{{ID: "cid", Secret: "csecret", User: "app.user"}}})
	tests := []struct {
		name, auth string
		status     int
	}{
		{"basic", "", 200},
		{"no credentials", "-", 401},
		{"wrong password", "Basic " + basic(snowtest.DefaultUser, "x"), 401},
		{"unknown bearer", "Bearer nope", 401},
	}
	for _, tc := range tests {
		a := do(t, in, "GET", "/api/now/connect/support/queues", tc.auth, nil)
		if a.status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, a.status, tc.status)
		}
		if tc.status == 401 && (a.errorMessage() != "User Not Authenticated" || a.body["status"] != "failure") {
			t.Errorf("%s: body %s, want the error envelope", tc.name, a.raw)
		}
	}

	token := func(form url.Values, ct string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", in.URL()+"/oauth_token.do", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	form := url.Values{"grant_type": {"password"}, "client_id": {"cid"}, "client_secret": {"csecret"},
		"username": {snowtest.DefaultUser}, "password": {snowtest.DefaultPassword}}
	if st, _ := token(form, "application/json"); st != 400 {
		t.Errorf("JSON token request: %d, want 400", st)
	}
	st, tok := token(form, "application/x-www-form-urlencoded")
	if st != 200 || tok["token_type"] != "Bearer" || tok["expires_in"] != float64(1799) || tok["refresh_token"] == nil {
		t.Fatalf("password grant: %d %v", st, tok)
	}
	bearer := "Bearer " + tok["access_token"].(string)
	if a := do(t, in, "GET", "/api/now/connect/support/queues", bearer, nil); a.status != 200 {
		t.Errorf("bearer: %d", a.status)
	}
	in.Advance(1799 * time.Second)
	if a := do(t, in, "GET", "/api/now/connect/support/queues", bearer, nil); a.status != 401 {
		t.Errorf("expired bearer: %d, want 401", a.status)
	}
	st, tok2 := token(url.Values{"grant_type": {"refresh_token"}, "client_id": {"cid"}, "client_secret": {"csecret"},
		"refresh_token": {tok["refresh_token"].(string)}}, "application/x-www-form-urlencoded")
	if st != 200 || tok2["access_token"] == tok["access_token"] {
		t.Errorf("refresh grant: %d %v", st, tok2)
	}
	st, cc := token(url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {"csecret"}}, "application/x-www-form-urlencoded")
	if st != 200 || cc["refresh_token"] != nil {
		t.Errorf("client_credentials: %d %v", st, cc)
	}
	for _, bad := range []url.Values{
		{"grant_type": {"password"}, "client_id": {"cid"}, "client_secret": {"wrong"}, "username": {snowtest.DefaultUser}, "password": {snowtest.DefaultPassword}},
		{"grant_type": {"password"}, "client_id": {"cid"}, "client_secret": {"csecret"}, "username": {snowtest.DefaultUser}, "password": {"wrong"}},
	} {
		if st, m := token(bad, "application/x-www-form-urlencoded"); st != 401 || m["error_description"] != "access_denied" {
			t.Errorf("bad credentials: %d %v", st, m)
		}
	}
}

func basic(u, p string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(u, p)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func TestConnectFlow(t *testing.T) {
	in := newInstance(t, snowtest.Options{Now: t0, Users: []snowtest.User{
		{UserName: snowtest.DefaultUser, Password: snowtest.DefaultPassword, Name: snowtest.DefaultUserName},
		{UserName: "other", Password: "pw", Name: "Other"},
	}})
	a := do(t, in, "POST", "/api/now/connect/support/queues/nope/sessions", "", map[string]string{"message": "hi"})
	if s, ok := a.result().(string); a.status != 403 || !ok || s == "" {
		t.Errorf("unknown queue: %d %s, want 403 with a string result", a.status, a.raw)
	}
	if a := do(t, in, "POST", "/api/now/connect/support/queues/"+snowtest.DefaultQueue+"/sessions", "", map[string]string{"message": " "}); a.status != 400 {
		t.Errorf("empty first message: %d, want 400", a.status)
	}
	group := openChat(t, in, "hello, I need help")
	ch, _ := in.Chat(group)
	if ch.State != snowtest.Waiting || ch.Position != 1 || len(in.WaitingChats()) != 1 {
		t.Errorf("chat %+v", ch)
	}
	if err := in.Accept(group, "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	if err := in.Accept(group, "Beth Anglin"); !errors.Is(err, snowtest.ErrNotWaiting) {
		t.Errorf("second accept: %v", err)
	}
	for i := range 64 {
		in.Advance(time.Millisecond)
		if _, err := in.Say(group, "Beth Anglin", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	msgsPath := "/api/now/connect/conversations/" + group + "/messages"
	page := do(t, in, "GET", msgsPath, "", nil).list(t)
	if len(page) != 30 || page[0]["message"] != "63" || page[0]["created_by"] != "beth.anglin" || page[0]["sender_name"] != "Beth Anglin" {
		t.Fatalf("first page: %d messages, newest %v", len(page), page[0])
	}
	if _, ok := page[0]["timestamp"].(float64); !ok || page[0]["created_on"] != "2024-05-02 14:03:11" {
		t.Errorf("message times %v / %v", page[0]["timestamp"], page[0]["created_on"])
	}
	oldest := int64(page[29]["timestamp"].(float64))
	page2 := do(t, in, "GET", msgsPath+"?before="+strconv.FormatInt(oldest, 10), "", nil).list(t)
	page3 := do(t, in, "GET", msgsPath+"?before="+strconv.FormatInt(int64(page2[29]["timestamp"].(float64)), 10), "", nil).list(t)
	if page2[0]["message"] != "33" || len(page3) != 6 || page3[5]["message"] != "hello, I need help" || page3[4]["message"] != snowtest.DefaultGreeting {
		t.Errorf("pages 2 and 3: %v … / %d messages", page2[0]["message"], len(page3))
	}

	if a := do(t, in, "GET", msgsPath, "Basic "+basic("other", "pw"), nil); a.status != 404 {
		t.Errorf("another user's chat: %d, want 404", a.status)
	}
	posted := do(t, in, "POST", msgsPath, "", map[string]string{"message": "thanks"})
	if posted.status != 200 || posted.result().(map[string]any)["created_by"] != snowtest.DefaultUser {
		t.Errorf("post: %d %s", posted.status, posted.raw)
	}
	entries := do(t, in, "GET", "/api/now/connect/support/sessions?group_id="+group, "", nil).list(t)
	if len(entries) != 1 || entries[0]["state"] != float64(2) || entries[0]["assigned_to"].(map[string]any)["name"] != "Beth Anglin" {
		t.Errorf("entries %v", entries)
	}
	conv := do(t, in, "GET", "/api/now/connect/conversations/"+group, "", nil).result().(map[string]any)
	if conv["last_message"].(map[string]any)["message"] != "thanks" || conv["queueEntry"].(map[string]any)["group"] != group {
		t.Errorf("conversation %v", conv)
	}

	if err := in.CloseChat(group); err != nil {
		t.Fatal(err)
	}
	msgs := in.Messages(group)
	if last := msgs[len(msgs)-1]; last.Text != "Beth Anglin has closed the support session" || !last.System() {
		t.Errorf("closing message %+v", last)
	}
	if a := do(t, in, "POST", msgsPath, "", map[string]string{"message": "hello?"}); a.status != 403 || a.errorMessage() != "Conversation is closed" {
		t.Errorf("post to closed chat: %d %s", a.status, a.raw)
	}
	for range 2 {
		if a := do(t, in, "POST", "/api/now/connect/support/sessions/"+group+"/leave", "", map[string]any{}); a.status != 200 || a.result().(map[string]any)["state"] != float64(3) {
			t.Errorf("leave of a closed chat: %d %s", a.status, a.raw)
		}
	}
	if open := do(t, in, "GET", "/api/now/connect/support/sessions?closed=false", "", nil).list(t); len(open) != 0 {
		t.Errorf("open sessions %v", open)
	}
}

func TestAgentScript(t *testing.T) {
	in := newInstance(t, snowtest.Options{Now: t0})
	g := openChat(t, in, "help")
	if _, err := in.Say(g, "Beth Anglin", "hi"); !errors.Is(err, snowtest.ErrNotAccepted) {
		t.Errorf("say before accept: %v", err)
	}
	if err := in.Accept(g, "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	if err := in.Transfer(g, "Fred Luddy"); err != nil {
		t.Fatal(err)
	}
	if err := in.LeaveChat(g); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, m := range in.Messages(g) {
		texts = append(texts, m.CreatedBy+": "+m.Text)
	}
	want := []string{snowtest.DefaultUser + ": help", "beth.anglin: " + snowtest.DefaultGreeting,
		"system: Beth Anglin transferred the chat to Fred Luddy", "system: Fred Luddy has left the support session"}
	if !slices.Equal(texts, want) {
		t.Errorf("messages %q\nwant %q", texts, want)
	}
	if err := in.CloseChat(g); !errors.Is(err, snowtest.ErrChatClosed) {
		t.Errorf("close of a closed chat: %v", err)
	}
	if err := in.Accept("nope", "x"); !errors.Is(err, snowtest.ErrNoChat) {
		t.Errorf("unknown chat: %v", err)
	}
	for _, s := range []snowtest.State{snowtest.ClosedEscalated, snowtest.ClosedByClient, snowtest.ClosedAbandoned} {
		g := openChat(t, in, "x")
		if err := in.SetState(g, s); err != nil {
			t.Fatal(err)
		}
		if ch, _ := in.Chat(g); ch.State != s || ch.WorkEnd.IsZero() {
			t.Errorf("chat %+v, want state %v with work_end", ch, s)
		}
	}
}

func TestTableAPI(t *testing.T) {
	in := newInstance(t, snowtest.Options{Now: t0})
	a, b := openChat(t, in, "first a"), openChat(t, in, "first b")
	if err := in.Accept(a, "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	in.Advance(2 * time.Second)
	for i := range 5 {
		if _, err := in.Say(a, "Beth Anglin", fmt.Sprint("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	in.Advance(time.Second)
	if _, err := in.SystemMessage(b, "queued"); err != nil {
		t.Fatal(err)
	}
	q := func(params string) answer { return do(t, in, "GET", "/api/now/table/live_message?"+params, "", nil) }
	enc := url.QueryEscape
	tests := []struct {
		name   string
		query  string
		params string
		want   []string // messages
	}{
		{name: "IN and >= and order", query: "groupIN" + a + "," + b + "^sys_created_on>=2024-05-02 14:03:13^ORDERBYsys_created_on^ORDERBYmessage",
			want: []string{"a0", "a1", "a2", "a3", "a4", "queued"}},
		{name: "strict >", query: "group=" + a + "^sys_created_on>2024-05-02 14:03:13", want: nil},
		{name: "!= and ORDERBYDESC", query: "group=" + b + "^sys_created_by!=system^ORDERBYDESCsys_created_on", want: []string{"first b"}},
		{name: "unknown field ignored", query: "group=" + b + "^nosuchfield=1^ORDERBYnosuchfield^ORDERBYsys_created_on", want: []string{"first b", "queued"}},
		{name: "unknown operator ignored", query: "group=" + b + "^messageSOUNDSLIKEx^ORDERBYsys_created_on", want: []string{"first b", "queued"}},
		{name: "limit and offset", query: "group=" + a + "^ORDERBYsys_created_on^ORDERBYmessage", params: "&sysparm_limit=2&sysparm_offset=3",
			want: []string{"a1", "a2"}},
		{name: "IN of chats in creation order across chats", query: "groupIN" + b + ",nosuchgroup," + a + "^sys_created_by!=system",
			want: []string{"first a", "first b", "Thank you for contacting support. We are looking into your question now and will be with you shortly.", "a0", "a1", "a2", "a3", "a4"}},
		{name: "IN and = together: both hold", query: "groupIN" + a + "," + b + "^group=" + b + "^ORDERBYsys_created_on", want: []string{"first b", "queued"}},
		{name: "= and IN apart: nothing", query: "group=" + a + "^groupIN" + b, want: nil},
		{name: "NOT IN and STARTSWITH", query: "sys_created_byNOT INsystem," + snowtest.DefaultUser + "^messageSTARTSWITHa^ORDERBYmessage",
			want: []string{"a0", "a1", "a2", "a3", "a4"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ans := q("sysparm_query=" + enc(tc.query) + "&sysparm_fields=message,bogus" + tc.params)
			if ans.status != 200 {
				t.Fatalf("%d %s", ans.status, ans.raw)
			}
			var got []string
			for _, r := range ans.list(t) {
				if len(r) != 1 {
					t.Errorf("row %v: want only the message field", r)
				}
				got = append(got, r["message"].(string))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}

	// Ties (a0…a4 share a second) have no defined order: pages of a query
	// that does not break them are not a partition; with ^ORDERBYsys_id they are.
	pages := func(query string) []string {
		var got []string
		for off := 0; off < 7; off += 2 {
			for _, r := range q("sysparm_query=" + enc(query) + "&sysparm_fields=message&sysparm_limit=2&sysparm_offset=" + fmt.Sprint(off)).list(t) {
				got = append(got, r["message"].(string))
			}
		}
		slices.Sort(got)
		return got
	}
	if got := pages("group=" + a + "^ORDERBYsys_created_on^ORDERBYsys_id"); !slices.Equal(got, []string{snowtest.DefaultGreeting, "a0", "a1", "a2", "a3", "a4", "first a"}) {
		t.Errorf("pages with a tiebreak: %q", got)
	}

	ans := q("sysparm_query=" + enc("group="+a) + "&sysparm_limit=2&sysparm_fields=group,sys_created_on,profile")
	if ans.header.Get("X-Total-Count") != "7" || !strings.Contains(ans.header.Get("Link"), `rel="next"`) {
		t.Errorf("headers %v", ans.header)
	}
	row := ans.list(t)[0]
	if ref, ok := row["group"].(map[string]any); !ok || ref["value"] != a || !strings.HasSuffix(ref["link"].(string), "/api/now/table/live_group_profile/"+a) {
		t.Errorf("reference without sysparm_exclude_reference_link: %v", row["group"])
	}
	row = q("sysparm_query=" + enc("group="+a+"^ORDERBYDESCsys_created_on") + "&sysparm_display_value=all&sysparm_exclude_reference_link=true&sysparm_limit=1").list(t)[0]
	if p := row["profile"].(map[string]any); p["display_value"] != "Beth Anglin" || p["link"] != nil {
		t.Errorf("display_value=all: %v", row["profile"])
	}
	if s := row["sys_created_on"].(map[string]any); s["value"] != "2024-05-02 14:03:13" {
		t.Errorf("sys_created_on %v", s)
	}
	entries := do(t, in, "GET", "/api/now/table/chat_queue_entry?sysparm_display_value=true&sysparm_query="+enc("stateIN1,2^ORDERBYnumber"), "", nil).list(t)
	if len(entries) != 2 || entries[0]["state"] != "Work in Progress" || entries[0]["assigned_to"] != "Beth Anglin" || entries[1]["state"] != "Waiting" {
		t.Errorf("chat_queue_entry %v", entries)
	}
	if bad := do(t, in, "GET", "/api/now/table/nope", "", nil); bad.status != 400 || bad.errorMessage() != "Invalid table nope" {
		t.Errorf("invalid table: %d %s", bad.status, bad.raw)
	}
}

func TestRateLimit(t *testing.T) {
	in := newInstance(t, snowtest.Options{RateLimit: snowtest.RateLimit{Limit: 2, Window: 2 * time.Second}})
	for i := range 2 {
		a := do(t, in, "GET", "/api/now/table/live_message", "", nil)
		if a.status != 200 || a.header.Get("X-RateLimit-Limit") != "2" || a.header.Get("X-RateLimit-Rule") != snowtest.RateLimitRule || a.header.Get("X-RateLimit-Reset") == "" {
			t.Fatalf("request %d: %d %v", i, a.status, a.header)
		}
	}
	a := do(t, in, "GET", "/api/now/table/live_message", "", nil)
	if a.status != 429 || a.header.Get("Retry-After") != "2" && a.header.Get("Retry-After") != "1" {
		t.Fatalf("over the limit: %d Retry-After %q", a.status, a.header.Get("Retry-After"))
	}
	e := a.body["error"].(map[string]any)
	if e["message"] != "Rate limit exceeded" || e["detail"] != "Rate limit of 2 requests per 2s for Table API exceeded" {
		t.Errorf("body %s", a.raw)
	}
	ra, _ := strconv.Atoi(a.header.Get("Retry-After"))
	time.Sleep(time.Duration(ra) * time.Second)
	if a := do(t, in, "GET", "/api/now/table/live_message", "", nil); a.status != 200 {
		t.Errorf("after Retry-After: %d", a.status)
	}
}

func TestFaultsAndCounts(t *testing.T) {
	in := newInstance(t, snowtest.Options{})
	in.InjectFault(snowtest.Fault{Method: "GET", Path: "/api/now/connect/support/queues", Status: 503, Times: 2, Message: "Down for maintenance"})
	for i, want := range []int{503, 503, 200} {
		if a := do(t, in, "GET", "/api/now/connect/support/queues", "", nil); a.status != want {
			t.Errorf("request %d: %d, want %d", i, a.status, want)
		} else if want == 503 && a.errorMessage() != "Down for maintenance" {
			t.Errorf("fault body %s", a.raw)
		}
	}
	in.InjectFault(snowtest.Fault{Path: "/api/now/connect/support/queues/", Method: "POST", Drop: true, AfterHandler: true})
	req, _ := http.NewRequest("POST", in.URL()+"/api/now/connect/support/queues/"+snowtest.DefaultQueue+"/sessions", strings.NewReader(`{"message":"x"}`))
	req.SetBasicAuth(snowtest.DefaultUser, snowtest.DefaultPassword)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Error("dropped connection answered")
	}
	if n := len(in.Chats()); n != 1 {
		t.Errorf("%d chats, want 1: the dropped request took effect", n)
	}
	in.InjectFault(snowtest.Fault{Latency: 200 * time.Millisecond})
	start := time.Now()
	do(t, in, "GET", "/api/now/connect/support/queues", "", nil)
	if time.Since(start) < 200*time.Millisecond {
		t.Error("latency not applied")
	}
	counts := in.Requests()
	if counts["GET /api/now/connect/support/queues"] != 4 || counts["POST /api/now/connect/support/queues/{queue}/sessions"] != 1 || in.TotalRequests() != 5 {
		t.Errorf("counts %v total %d", counts, in.TotalRequests())
	}
	in.ResetRequests()
	if in.TotalRequests() != 0 {
		t.Error("reset")
	}
}

func TestConnectDisabled(t *testing.T) {
	in := newInstance(t, snowtest.Options{ConnectDisabled: true})
	if a := do(t, in, "GET", "/api/now/connect/support/queues", "", nil); a.status != 400 || a.errorMessage() != "Requested URI does not represent any resource" {
		t.Errorf("%d %s", a.status, a.raw)
	}
}

func TestClockAndWaitChange(t *testing.T) {
	in := newInstance(t, snowtest.Options{})
	in.SetNow(t0)
	g := openChat(t, in, "x")
	in.Advance(1500 * time.Millisecond)
	v := in.Version()
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if nv, err := in.WaitChange(ctx, v); err != nil || nv <= v {
			t.Errorf("WaitChange = %d, %v", nv, err)
		}
	})
	if err := in.Accept(g, "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	msgs := in.Messages(g)
	if !msgs[0].At.Equal(t0.Truncate(time.Millisecond)) || !msgs[1].At.Equal(t0.Add(1500*time.Millisecond).Truncate(time.Millisecond)) {
		t.Errorf("message times %v, %v", msgs[0].At, msgs[1].At)
	}
}
