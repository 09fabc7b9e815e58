package snowtest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/servicenow/recorded"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// shape returns the key structure of a JSON value: objects as their sorted
// keys with the shape of each value, arrays as the shape of their first
// element, scalars as "".
func shape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([]any, 0, 2*len(keys))
		for _, k := range keys {
			out = append(out, k, shape(x[k]))
		}
		return out
	case []any:
		if len(x) == 0 {
			return []any{}
		}
		return []any{shape(x[0])}
	}
	return ""
}

func jsonShape(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	b, _ := json.Marshal(shape(v))
	return string(b)
}

// TestAnswersMatchRecorded: the fake answers in the shape of the payloads
// written from ServiceNow's documentation (servicenow/recorded), which the
// client's tests parse too.
func TestAnswersMatchRecorded(t *testing.T) {
	t.Run("rate limit 429", func(t *testing.T) {
		x := recorded.Load("ratelimit_429.json")
		in := newInstance(t, snowtest.Options{RateLimit: snowtest.RateLimit{Limit: 1}})
		do(t, in, "GET", "/api/now/table/live_message", "", nil)
		a := do(t, in, "GET", "/api/now/table/live_message", "", nil)
		if a.status != x.Status || jsonShape(t, []byte(a.raw)) != jsonShape(t, x.Body) {
			t.Errorf("fake %d %s, recorded %d %s", a.status, a.raw, x.Status, x.Body)
		}
		for k := range x.Header {
			if a.header.Get(k) == "" {
				t.Errorf("fake 429 lacks %s", k)
			}
		}
		if a.errorMessage() != "Rate limit exceeded" || !strings.Contains(a.raw, "requests per hour for Table API exceeded") {
			t.Errorf("fake 429 body %s", a.raw)
		}
	})
	t.Run("error envelope", func(t *testing.T) {
		x := recorded.Load("error_400.json")
		in := newInstance(t, snowtest.Options{ConnectDisabled: true})
		a := do(t, in, x.Method, x.Path, "", nil)
		if a.status != x.Status || jsonShape(t, []byte(a.raw)) != jsonShape(t, x.Body) {
			t.Errorf("fake %d %s, recorded %d %s", a.status, a.raw, x.Status, x.Body)
		}
	})
	t.Run("oauth token", func(t *testing.T) {
		x := recorded.Load("oauth_token.json")
		in := newInstance(t, snowtest.Options{OAuthClients: []snowtest.OAuthClient{{ID: "c", Secret: "s"}}})
		form := url.Values{"grant_type": {"password"}, "client_id": {"c"}, "client_secret": {"s"},
			"username": {snowtest.DefaultUser}, "password": {snowtest.DefaultPassword}}
		resp, err := http.Post(in.URL()+x.Path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != x.Status || jsonShape(t, b) != jsonShape(t, x.Body) {
			t.Errorf("fake %d %s, recorded %s", resp.StatusCode, b, x.Body)
		}
	})
	t.Run("table page", func(t *testing.T) {
		x := recorded.Load("table_live_message_page.json")
		in := newInstance(t, snowtest.Options{})
		g := openChat(t, in, "first")
		if err := in.Accept(g, "Beth Anglin"); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Say(g, "Beth Anglin", "second"); err != nil {
			t.Fatal(err)
		}
		a := do(t, in, "GET", "/api/now/table/live_message?sysparm_query=group%3D"+g+
			"&sysparm_fields=sys_id,group,message,sys_created_on,sys_created_by,profile&sysparm_display_value=all&sysparm_exclude_reference_link=true&sysparm_limit=2", "", nil)
		if a.status != x.Status || jsonShape(t, []byte(a.raw)) != jsonShape(t, x.Body) {
			t.Errorf("fake %d %s\nrecorded %d %s", a.status, a.raw, x.Status, x.Body)
		}
		for k := range x.Header {
			if a.header.Get(k) == "" {
				t.Errorf("fake page lacks %s", k)
			}
		}
	})
	t.Run("queue entry page", func(t *testing.T) {
		x := recorded.Load("table_chat_queue_entry_page.json")
		in := newInstance(t, snowtest.Options{})
		g1, g2 := openChat(t, in, "first"), openChat(t, in, "second")
		if err := in.Accept(g1, "Beth Anglin"); err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(x.Path)
		q := u.Query()
		q.Set("sysparm_query", "groupIN"+g1+","+g2+"^ORDERBYsys_updated_on")
		a := do(t, in, "GET", "/api/now/table/chat_queue_entry?"+q.Encode(), "", nil)
		if a.status != x.Status || jsonShape(t, []byte(a.raw)) != jsonShape(t, x.Body) {
			t.Errorf("fake %d %s\nrecorded %d %s", a.status, a.raw, x.Status, x.Body)
		}
		if a.header.Get("X-Total-Count") != "2" {
			t.Errorf("X-Total-Count %q", a.header.Get("X-Total-Count"))
		}
		var page struct {
			Result []map[string]struct {
				Display string `json:"display_value"`
				Value   string `json:"value"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(a.raw), &page); err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Result {
			switch r["group"].Value {
			case g1:
				if r["state"].Value != "2" || r["assigned_to"].Display != "Beth Anglin" || r["position"].Value != "0" {
					t.Errorf("accepted entry %v", r)
				}
			case g2:
				if r["state"].Value != "1" || r["state"].Display != "Waiting" || r["assigned_to"].Value != "" || r["position"].Value != "1" {
					t.Errorf("waiting entry %v", r)
				}
			}
		}
	})
	t.Run("connect support", func(t *testing.T) {
		// Connect Support's REST API is undocumented; the recorded exchanges
		// hold the fields ServiceNow's own Connect web client reads. The
		// fake answers each in that shape, with the recorded status.
		in := newInstance(t, snowtest.Options{})
		const recGroup = "5c2d4f60db5a1010a4c1f2b3c4d5e6f7"
		var group string
		check := func(name string, path func(string) string, body func() any) {
			t.Helper()
			x := recorded.Load(name)
			var b any
			if body != nil {
				b = body()
			} else if x.Request != nil {
				_ = json.Unmarshal(x.Request, &b)
			}
			a := do(t, in, x.Method, path(x.Path), "", b)
			if a.status != x.Status || jsonShape(t, []byte(a.raw)) != jsonShape(t, x.Body) {
				t.Errorf("%s: fake %d %s\nrecorded %d %s", name, a.status, a.raw, x.Status, x.Body)
			}
			if name == "connect_open.json" {
				group, _ = a.result().(map[string]any)["group"].(string)
			}
		}
		same := func(p string) string { return p }
		inChat := func(p string) string { return strings.Replace(p, recGroup, group, 1) }
		check("connect_queues.json", same, nil)
		check("connect_open.json", same, nil)
		if group == "" {
			t.Fatal("the fake's open answer has no group")
		}
		check("connect_post.json", inChat, nil)
		if err := in.Accept(group, "Beth Anglin"); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Say(group, "Beth Anglin", "Hi Abel, which VPN client version do you have?"); err != nil {
			t.Fatal(err)
		}
		if err := in.CloseChat(group); err != nil {
			t.Fatal(err)
		}
		check("connect_sessions.json", inChat, nil)
		check("connect_messages.json", inChat, nil)
		check("connect_queue_unavailable.json", func(p string) string {
			return strings.Replace(p, snowtest.DefaultQueue, "0000000000000000000000000000dead", 1)
		}, nil)
	})
	t.Run("va request, callback and error", func(t *testing.T) {
		req, cb, bad := recorded.Load("va_agent_request.json"), recorded.Load("va_agent_callback.json"), recorded.Load("va_error.json")
		var (
			mu   sync.Mutex
			got  [][]byte
			hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got = append(got, b)
				mu.Unlock()
				w.WriteHeader(200)
			}))
		)
		t.Cleanup(hook.Close)
		in := newInstance(t, snowtest.Options{})
		in.EnableVA(snowtest.VAOptions{Token: "t", CallbackURL: hook.URL})
		post := func(body []byte) answer {
			r, _ := http.NewRequest("POST", in.URL()+req.Path, bytes.NewReader(body))
			r.SetBasicAuth(snowtest.DefaultUser, snowtest.DefaultPassword)
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("token", "t")
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			a := answer{status: resp.StatusCode, raw: string(b)}
			_ = json.Unmarshal(b, &a.body)
			return a
		}
		if a := post(req.Request); a.status != req.Status || jsonShape(t, []byte(a.raw)) != jsonShape(t, req.Body) {
			t.Errorf("AGENT: fake %d %s, recorded %s", a.status, a.raw, req.Body)
		}
		if a := post(bad.Request); a.status != bad.Status || a.errorMessage() != "message.text is mandatory" {
			t.Errorf("TYPING without text: fake %d %s, recorded %d %s", a.status, a.raw, bad.Status, bad.Body)
		}
		var group string
		for _, c := range in.Chats() {
			group = c.Group
		}
		// The AGENT callback: "Please stand by" and the wait-time spinner, in
		// the shape of the recorded one.
		spin := recorded.Load("va_spinner_callback.json")
		itemOf := func(b []byte, action string) string {
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			l, _ := m["body"].([]any)
			for _, it := range l {
				if o, _ := it.(map[string]any); o["actionType"] == action {
					delete(o, "messageId") // the recorded example has none; the synchronous example has one
					bb, _ := json.Marshal(o)
					return jsonShape(t, bb)
				}
			}
			return ""
		}
		for deadline := time.Now().Add(20 * time.Second); ; {
			mu.Lock()
			i := slices.IndexFunc(got, func(b []byte) bool { return bytes.Contains(b, []byte(`"StartSpinner"`)) })
			var b []byte
			if i >= 0 {
				b = got[i]
			}
			mu.Unlock()
			if b != nil {
				if f, r := itemOf(b, "StartSpinner"), itemOf(spin.Request, "StartSpinner"); f != r {
					t.Errorf("spinner item: fake %s, recorded %s", f, r)
				}
				if !bytes.Contains(b, []byte(` Seconds"`)) || !bytes.Contains(b, []byte(`"spinnerType":"wait_time"`)) {
					t.Errorf("spinner not in the documented form (\"<n> Seconds\", wait_time): %s", b)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no callback with the wait-time spinner")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := in.Accept(group, "Beth Anglin"); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Say(group, "Beth Anglin", "Hi, I'm Beth"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			i := slices.IndexFunc(got, func(b []byte) bool { return bytes.Contains(b, []byte(`"Hi, I'm Beth"`)) })
			var b []byte
			if i >= 0 {
				b = got[i]
			}
			mu.Unlock()
			if b != nil {
				var fake, rec map[string]any
				_ = json.Unmarshal(b, &fake)
				_ = json.Unmarshal(cb.Request, &rec)
				for k := range rec {
					if _, ok := fake[k]; !ok && k != "interactionId" && k != "score" {
						t.Errorf("fake callback lacks %q: %s", k, b)
					}
				}
				item := func(m map[string]any) string {
					l, _ := m["body"].([]any)
					for _, it := range l {
						if o, _ := it.(map[string]any); o["uiType"] == "OutputText" {
							bb, _ := json.Marshal(o)
							return jsonShape(t, bb)
						}
					}
					return ""
				}
				if item(fake) != item(rec) {
					t.Errorf("agent text item: fake %s, recorded %s", item(fake), item(rec))
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no callback with the agent's text")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
