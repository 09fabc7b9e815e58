package slacktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// doc reads a documented example from ../testdata.
func doc(t *testing.T, name string) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// sameShape reports the first field of want (a documented example) that got
// lacks or holds with another JSON type. Arrays compare their first element;
// a null in the example accepts anything. Blocks are what the app posted,
// echoed back, so they are not compared.
func sameShape(path string, want, got any) error {
	if want == nil {
		return nil
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %T, want an object", path, got)
		}
		for k, wv := range w {
			if k == "blocks" {
				continue // blocks are the app's own, echoed back as posted
			}
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s: missing", path, k)
			}
			if err := sameShape(path+"."+k, wv, gv); err != nil {
				return err
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Errorf("%s: got %T, want an array", path, got)
		}
		if len(w) > 0 && len(g) > 0 {
			return sameShape(path+"[0]", w[0], g[0])
		}
	default:
		if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
			return fmt.Errorf("%s: got %T, want %T", path, got, want)
		}
	}
	return nil
}

// receiver records what the fake sends to the bridge's URLs.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
	hdrs   []http.Header
	status int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.bodies = append(rc.bodies, b)
	rc.hdrs = append(rc.hdrs, r.Header.Clone())
	st := rc.status
	rc.mu.Unlock()
	if st == 0 {
		st = 200
	}
	w.WriteHeader(st)
}

func (rc *receiver) last(t *testing.T) (any, http.Header) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bodies) == 0 {
		t.Fatal("nothing was sent")
	}
	b := rc.bodies[len(rc.bodies)-1]
	if form, err := url.ParseQuery(string(b)); err == nil && form.Get("payload") != "" {
		b = []byte(form.Get("payload"))
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("sent %q: %v", b, err)
	}
	return v, rc.hdrs[len(rc.hdrs)-1]
}

func (rc *receiver) count() int { rc.mu.Lock(); defer rc.mu.Unlock(); return len(rc.bodies) }

func call(t *testing.T, s *Server, method, token string, args map[string]any) (int, http.Header, any) {
	t.Helper()
	b, _ := json.Marshal(args)
	req, _ := http.NewRequest(http.MethodPost, s.URL()+method, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, resp.Header, v
}

func newFake(t *testing.T) (*Server, *receiver, *receiver) {
	t.Helper()
	s := New(Options{RetryDelays: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}})
	t.Cleanup(s.Close)
	ev, ia := &receiver{}, &receiver{}
	evSrv, iaSrv := httptest.NewServer(ev), httptest.NewServer(ia)
	t.Cleanup(evSrv.Close)
	t.Cleanup(iaSrv.Close)
	s.SetTargets(evSrv.URL, iaSrv.URL)
	s.AddUser("U0AGENT001", "Beth Anglin")
	return s, ev, ia
}

func parent(t *testing.T, s *Server) string {
	t.Helper()
	_, _, v := call(t, s, "chat.postMessage", s.Token(), map[string]any{"channel": s.Channel(), "text": "Handoff: Megan Bowen",
		"metadata": map[string]any{"event_type": "handoff_opened", "event_payload": map[string]any{"session": "s1"}},
		"blocks": []any{map[string]any{"type": "actions", "block_id": "handoff_actions", "elements": []any{
			map[string]any{"type": "button", "action_id": "handoff_take", "text": map[string]any{"type": "plain_text", "text": "Take", "emoji": true}, "value": "s1", "style": "primary"}}}}})
	return v.(map[string]any)["ts"].(string)
}

// What the fake answers and sends has every field Slack documents, with the
// documented types.
func TestConformsToDocumentedExamples(t *testing.T) {
	s, ev, ia := newFake(t)
	ts := parent(t, s)

	check := func(name string, got any) {
		t.Helper()
		if err := sameShape(name, doc(t, name), got); err != nil {
			t.Error(err)
		}
	}
	_, _, v := call(t, s, "chat.postMessage", s.Token(), map[string]any{"channel": s.Channel(), "text": "x", "thread_ts": ts,
		"metadata": map[string]any{"event_type": "handoff_message", "event_payload": map[string]any{"key": "s1/7"}}})
	check("api_chat_postMessage.json", v)
	_, _, v = call(t, s, "conversations.replies", s.Token(), map[string]any{"channel": s.Channel(), "ts": ts, "include_all_metadata": true})
	check("api_conversations_replies.json", v)
	_, _, v = call(t, s, "users.info", s.Token(), map[string]any{"user": "U0AGENT001"})
	check("api_users_info.json", v)

	// The bot's own post comes back as a message event with bot_id (the
	// parent's event and the reply's travel in parallel: pick the reply's).
	deadline := time.Now().Add(10 * time.Second)
	for ev.count() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var got any
	ev.mu.Lock()
	for _, b := range ev.bodies {
		var env map[string]any
		_ = json.Unmarshal(b, &env)
		if inner, _ := env["event"].(map[string]any); inner != nil && inner["thread_ts"] != nil {
			got = env
		}
	}
	ev.mu.Unlock()
	check("event_message_bot.json", got)

	if p, err := s.Reply("U0AGENT001", ts, "Try the reset page"); err != nil || p.Status != 200 {
		t.Fatal(p, err)
	}
	got, hdr := ev.last(t)
	check("event_message_reply.json", got)
	sec, _ := strconv.ParseInt(hdr.Get("X-Slack-Request-Timestamp"), 10, 64)
	if len(ev.bodies) == 0 || hdr.Get("X-Slack-Signature") != Sign(s.SigningSecret(), sec, ev.bodies[len(ev.bodies)-1]) {
		t.Error("event not signed with the signing secret")
	}
	reply := got.(map[string]any)["event"].(map[string]any)["ts"].(string)
	if _, err := s.Edit("U0AGENT001", reply, "Try the reset page at https://aka.ms/sspr"); err != nil {
		t.Fatal(err)
	}
	got, _ = ev.last(t)
	check("event_message_changed.json", got)
	if _, err := s.ReplyFile("U0AGENT001", ts, "Here is the guide", "vpn-guide.pdf", "https://files.example/vpn-guide.pdf"); err != nil {
		t.Fatal(err)
	}
	got, _ = ev.last(t)
	check("event_file_share.json", got)
	if _, err := s.Delete(reply); err != nil {
		t.Fatal(err)
	}
	got, _ = ev.last(t)
	check("event_message_deleted.json", got)

	if code, err := s.Click("U0AGENT001", ts, "handoff_take"); err != nil || code != 200 {
		t.Fatal(code, err)
	}
	got, hdr = ia.last(t)
	check("interactive_block_actions.json", got)
	if hdr.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("interactivity sent as %s", hdr.Get("Content-Type"))
	}

	_, _, v = call(t, s, "chat.update", s.Token(), map[string]any{"channel": s.Channel(), "ts": ts, "text": "Handoff ended", "blocks": []any{}})
	check("api_chat_update.json", v)
}

func TestDocumentedErrors(t *testing.T) {
	s, _, _ := newFake(t)
	ts := parent(t, s)
	for _, tt := range []struct {
		name   string
		setup  func()
		token  string
		args   map[string]any
		status int
		file   string
	}{
		{"channel_not_found", nil, s.Token(), map[string]any{"channel": "C0NOWHERE", "text": "x"}, 200, "api_error_channel_not_found.json"},
		{"not_in_channel", func() { s.SetMember(false) }, s.Token(), map[string]any{"channel": s.Channel(), "text": "x"}, 200, "api_error_not_in_channel.json"},
		{"invalid_auth", func() { s.SetMember(true) }, "xoxb-wrong", map[string]any{"channel": s.Channel(), "text": "x"}, 200, "api_error_invalid_auth.json"},
		{"ratelimited", func() { s.Fail("chat.postMessage", "ratelimited", 1) }, s.Token(), map[string]any{"channel": s.Channel(), "text": "x", "thread_ts": ts}, 429, "api_error_ratelimited.json"},
	} {
		if tt.setup != nil {
			tt.setup()
		}
		status, hdr, v := call(t, s, "chat.postMessage", tt.token, tt.args)
		if status != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, status, tt.status)
		}
		if tt.status == 429 && hdr.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", tt.name)
		}
		want := doc(t, tt.file)
		if fmt.Sprint(v) != fmt.Sprint(want) {
			t.Errorf("%s: answer %v, want %v", tt.name, v, want)
		}
	}
}

// A failed delivery is retried like Slack: X-Slack-Retry-Num counts up,
// X-Slack-Retry-Reason says why, the event_id stays the same.
func TestEventRetries(t *testing.T) {
	s, ev, _ := newFake(t)
	ts := parent(t, s)
	for ev.count() < 1 { // the parent's own event
		time.Sleep(5 * time.Millisecond)
	}
	ev.mu.Lock()
	ev.status, ev.bodies, ev.hdrs = 500, nil, nil
	ev.mu.Unlock()
	p, err := s.Reply("U0AGENT001", ts, "hello")
	if err != nil || p.Status != 500 {
		t.Fatal(p, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for ev.count() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.bodies) != 4 {
		t.Fatalf("%d attempts, want 1 + 3 retries", len(ev.bodies))
	}
	for i, h := range ev.hdrs {
		var env map[string]any
		_ = json.Unmarshal(ev.bodies[i], &env)
		if env["event_id"] != p.EventID {
			t.Errorf("attempt %d: event_id %v, want %s", i, env["event_id"], p.EventID)
		}
		want := ""
		if i > 0 {
			want = strconv.Itoa(i)
			if h.Get("X-Slack-Retry-Reason") != "http_error" {
				t.Errorf("attempt %d: reason %q", i, h.Get("X-Slack-Retry-Reason"))
			}
		}
		if h.Get("X-Slack-Retry-Num") != want {
			t.Errorf("attempt %d: X-Slack-Retry-Num %q, want %q", i, h.Get("X-Slack-Retry-Num"), want)
		}
	}
}

func TestSignDocumentedExample(t *testing.T) {
	ex := doc(t, "signature.json").(map[string]any)
	if got := Sign(ex["signing_secret"].(string), int64(ex["timestamp"].(float64)), []byte(ex["body"].(string))); got != ex["signature"] {
		t.Errorf("Sign = %s, want %s", got, ex["signature"])
	}
}

func TestMrkdwnEscapes(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"*Megan &lt;b&gt;:* hi", "<b>Megan &lt;b&gt;:</b> hi"},
		{"see <https://x.example/a?b=1&amp;c=2|the page>", `see <a href="https://x.example/a?b=1&amp;c=2">the page</a>`},
		{"<javascript:alert(1)|click>", "click"},
		{"<script>", "script"}, // Slack escapes a literal <; a bare <token> is a reference, shown as text
		{"_note_ and `#handback`", "<i>note</i> and <code>#handback</code>"},
	} {
		if got := string(mrkdwn(tt.in)); got != tt.want {
			t.Errorf("mrkdwn(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Socket Mode as documented: apps.connections.open takes only the app-level
// token and answers a single-use URL; the connection starts with hello;
// replies and button presses come as envelopes of the documented shape and
// count as delivered once acknowledged; disconnect asks for a new
// connection.
func TestSocketModeConformsToDocumentedExamples(t *testing.T) {
	s, ev, _ := newFake(t)
	ts := parent(t, s)
	s.EnableSocketMode(true)
	if _, _, v := call(t, s, "apps.connections.open", s.Token(), nil); v.(map[string]any)["error"] != "not_allowed_token_type" {
		t.Errorf("apps.connections.open with the bot token answered %v", v)
	}
	if _, _, v := call(t, s, "chat.postMessage", s.AppToken(), map[string]any{"channel": s.Channel(), "text": "x"}); v.(map[string]any)["error"] != "not_allowed_token_type" {
		t.Errorf("chat.postMessage with the app token answered %v", v)
	}
	_, _, v := call(t, s, "apps.connections.open", s.AppToken(), nil)
	if err := sameShape("api_apps_connections_open.json", doc(t, "api_apps_connections_open.json"), v); err != nil {
		t.Error(err)
	}
	wsURL := v.(map[string]any)["url"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	if _, _, err := websocket.Dial(ctx, wsURL, nil); err == nil {
		t.Error("a used URL connected again")
	}
	read := func(name string) map[string]any {
		t.Helper()
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if p, _ := m["payload"].(map[string]any); name == "socket_events_api.json" && p != nil {
				if inner, _ := p["event"].(map[string]any); inner != nil && inner["bot_id"] != nil {
					ack(t, ctx, conn, m) // the bridge's own posts come too
					continue
				}
			}
			if err := sameShape(name, doc(t, name), m); err != nil {
				t.Error(err)
			}
			return m
		}
	}
	read("socket_hello.json")
	posted := make(chan Posted, 1)
	go func() {
		p, _ := s.Reply("U0AGENT001", ts, "Try the reset page")
		posted <- p
	}()
	ack(t, ctx, conn, read("socket_events_api.json"))
	if p := <-posted; p.Status != http.StatusOK {
		t.Errorf("an acknowledged envelope counted as %+v", p)
	}
	ev.mu.Lock()
	for _, b := range ev.bodies {
		if bytes.Contains(b, []byte("Try the reset page")) {
			t.Errorf("the reply went to the Request URL in Socket Mode: %s", b)
		}
	}
	ev.mu.Unlock()
	clicked := make(chan int, 1)
	go func() {
		code, _ := s.Click("U0AGENT001", ts, "handoff_take")
		clicked <- code
	}()
	ack(t, ctx, conn, read("socket_interactive.json"))
	if code := <-clicked; code != http.StatusOK {
		t.Errorf("an acknowledged button press counted as %d", code)
	}
	// An envelope left unacknowledged is given up on after 3 s and its
	// event comes again in a new envelope, marked as a retry.
	go func() {
		p, _ := s.Reply("U0AGENT001", ts, "Did the reset page work?")
		posted <- p
	}()
	first := read("socket_events_api.json")
	if p := <-posted; p.Status != 0 {
		t.Errorf("an unacknowledged envelope counted as %+v", p)
	}
	again := read("socket_events_api.json")
	if again["envelope_id"] == first["envelope_id"] || again["retry_attempt"] != float64(1) || again["retry_reason"] != "timeout" {
		t.Errorf("the retry of %v came as %v", first["envelope_id"], again)
	}
	ack(t, ctx, conn, again)
	s.Disconnect("refresh_requested")
	read("socket_disconnect.json")
	for i := 0; i < 100 && s.SocketStats().Acked != 3; i++ { // the last ack travels on its own
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.SocketStats(); st.UnknownAcks != 0 || st.Unacked != 1 || st.Acked != 3 || st.Sent != 4 {
		t.Errorf("socket stats %+v, want one envelope given up on and the rest acknowledged", st)
	}
}

func ack(t *testing.T, ctx context.Context, conn *websocket.Conn, m map[string]any) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"envelope_id": m["envelope_id"]})
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}
