package teams

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/handoffhq/handoff/teams/teamstest"
)

// Activities Teams never sends are refused with a clear 4xx and reach nothing.
func TestHandlerRefusesInvalidActivities(t *testing.T) {
	f := newHandlerFixture(t, func(c *HandlerConfig) { c.ExtraServiceURLHosts = []string{"127.0.0.1", "*.bots.example.org"} })
	ctx := context.Background()
	valid := f.channel.Message(f.user, "hello")

	// without removes a field from the activity's JSON, set replaces one.
	edit := func(fn func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(mustJSON(t, valid), &m); err != nil {
			t.Fatal(err)
		}
		fn(m)
		return mustJSON(t, m)
	}
	signedFor := func(serviceURL string) string {
		return teamstest.Bearer(f.issuer.Sign(teamstest.Claims{Audience: testAppID, ServiceURL: serviceURL}))
	}
	withService := func(u string) []byte { return edit(func(m map[string]any) { m["serviceUrl"] = u }) }

	tests := []struct {
		name        string
		contentType string
		auth        string // "" = a valid token for valid.ServiceURL
		body        []byte
		want        int
	}{
		{"text/plain", "text/plain", "", mustJSON(t, valid), http.StatusUnsupportedMediaType},
		{"form", "application/x-www-form-urlencoded", "", mustJSON(t, valid), http.StatusUnsupportedMediaType},
		{"no Content-Type", "-", "", mustJSON(t, valid), http.StatusUnsupportedMediaType},
		{"unparsable Content-Type", "application/json; charset", "", mustJSON(t, valid), http.StatusUnsupportedMediaType},
		{"no id", "", "", edit(func(m map[string]any) { delete(m, "id") }), http.StatusBadRequest},
		{"blank id", "", "", edit(func(m map[string]any) { m["id"] = "  " }), http.StatusBadRequest},
		{"no from", "", "", edit(func(m map[string]any) { delete(m, "from") }), http.StatusBadRequest},
		{"from without id", "", "", edit(func(m map[string]any) { m["from"] = map[string]any{"name": "Ada"} }), http.StatusBadRequest},
		{"from a string", "", "", edit(func(m map[string]any) { m["from"] = "29:abc" }), http.StatusBadRequest},
		{"no recipient", "", "", edit(func(m map[string]any) { delete(m, "recipient") }), http.StatusBadRequest},
		{"recipient null", "", "", edit(func(m map[string]any) { m["recipient"] = nil }), http.StatusBadRequest},
		{"text a number", "", "", edit(func(m map[string]any) { m["text"] = 42 }), http.StatusBadRequest},
		{"text an object", "", "", edit(func(m map[string]any) { m["text"] = map[string]any{"a": 1} }), http.StatusBadRequest},
		{"text an array", "", "", edit(func(m map[string]any) { m["text"] = []string{"hi"} }), http.StatusBadRequest},
		{"text a boolean", "", "", edit(func(m map[string]any) { m["text"] = true }), http.StatusBadRequest},
		{"serviceUrl host not allowed", "", signedFor("https://evil.example.com/"), withService("https://evil.example.com/"), http.StatusForbidden},
		{"serviceUrl allowed host over http", "", signedFor("http://smba.trafficmanager.net/emea/"), withService("http://smba.trafficmanager.net/emea/"), http.StatusForbidden},
		{"serviceUrl with credentials", "", signedFor("https://u:p@smba.trafficmanager.net/"), withService("https://u:p@smba.trafficmanager.net/"), http.StatusForbidden},
		{"serviceUrl not a URL", "", signedFor("::"), withService("::"), http.StatusForbidden},
		{"serviceUrl only suffix-alike", "", signedFor("https://evilbots.example.org/"), withService("https://evilbots.example.org/"), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth := tt.auth
			if auth == "" {
				auth = teamstest.Bearer(f.channel.Token(teamstest.TokenValid))
			}
			status, msg := post(ctx, t, f.channel.BotURL, tt.contentType, auth, tt.body)
			if status != tt.want {
				t.Fatalf("status = %d (%s), want %d", status, msg, tt.want)
			}
			if status != http.StatusUnauthorized && len(strings.TrimSpace(msg)) < len(http.StatusText(status))+10 {
				t.Errorf("answer %q does not say what is wrong", msg)
			}
			if got := f.inbox.all(); len(got) != 0 {
				t.Fatalf("the inbox received %d activities", len(got))
			}
		})
	}

	// The same activity passes once it is well-formed; allowed variants too.
	accepted := []struct {
		name        string
		contentType string
		auth        string
		body        []byte
	}{
		{"valid", "", "", mustJSON(t, valid)},
		{"plain application/json", "application/json", "", edit(func(m map[string]any) { m["id"] = "ok-2" })},
		{"text null", "", "", edit(func(m map[string]any) { m["id"], m["text"], m["value"] = "ok-3", nil, "yes" })},
		{"extra host over http on loopback", "", signedFor("http://127.0.0.1:9/"), edit(func(m map[string]any) { m["id"], m["serviceUrl"] = "ok-4", "http://127.0.0.1:9/" })},
		{"wildcard host", "", signedFor("https://eu.bots.example.org/"), edit(func(m map[string]any) { m["id"], m["serviceUrl"] = "ok-5", "https://eu.bots.example.org/" })},
	}
	for i, tt := range accepted {
		auth := tt.auth
		if auth == "" {
			auth = teamstest.Bearer(f.channel.Token(teamstest.TokenValid))
		}
		if status, msg := post(ctx, t, f.channel.BotURL, tt.contentType, auth, tt.body); status != http.StatusOK {
			t.Fatalf("%s: status = %d (%s), want 200", tt.name, status, msg)
		}
		if got := len(f.inbox.all()); got != i+1 {
			t.Fatalf("%s: inbox holds %d activities, want %d", tt.name, got, i+1)
		}
	}
}

// MaxBody is the limit, not a fixed 256 KiB.
func TestHandlerHonoursMaxBody(t *testing.T) {
	text := strings.Repeat("x", 300<<10)
	tests := []struct {
		name    string
		maxBody int64
		want    int
	}{
		{"default 256 KiB", 0, http.StatusRequestEntityTooLarge},
		{"1 MiB", 1 << 20, http.StatusOK},
		{"290 KiB", 290 << 10, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newHandlerFixture(t, func(c *HandlerConfig) { c.MaxBody = tt.maxBody })
			status, err := f.channel.Post(context.Background(), f.channel.Message(f.user, text))
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.want {
				t.Fatalf("status = %d, want %d", status, tt.want)
			}
			if got := len(f.inbox.all()); (got == 1) != (tt.want == http.StatusOK) {
				t.Fatalf("inbox holds %d activities", got)
			}
		})
	}
}

// post sends body with a Content-Type ("" = Teams' own, "-" = none) and
// returns the status and the answer's text.
func post(ctx context.Context, t *testing.T, url, contentType, auth string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	switch contentType {
	case "":
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	case "-":
	default:
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
