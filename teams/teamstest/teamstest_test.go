package teamstest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTokenEndpoint(t *testing.T) {
	iss := NewIssuer()
	defer iss.Close()
	iss.AddClient("app", "secret")
	tests := []struct {
		name   string
		form   url.Values
		basic  [2]string
		status int
	}{
		{"ok", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"secret"}, "scope": {DefaultScope}}, [2]string{}, 200},
		{"ok basic auth", url.Values{"grant_type": {"client_credentials"}, "scope": {DefaultScope}}, [2]string{"app", "secret"}, 200},
		{"wrong secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"nope"}, "scope": {DefaultScope}}, [2]string{}, 401},
		{"unknown client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"other"}, "client_secret": {"secret"}, "scope": {DefaultScope}}, [2]string{}, 401},
		{"wrong grant", url.Values{"grant_type": {"password"}, "client_id": {"app"}, "client_secret": {"secret"}, "scope": {DefaultScope}}, [2]string{}, 400},
		{"wrong scope", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"secret"}, "scope": {"https://graph.microsoft.com/.default"}}, [2]string{}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, iss.TokenURL("tenant-1"), strings.NewReader(tt.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.basic[0] != "" {
				req.SetBasicAuth(tt.basic[0], tt.basic[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			var body struct {
				AccessToken string `json:"access_token"`
				ExpiresIn   int    `json:"expires_in"`
				Error       string `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if tt.status == 200 {
				if id, ok := iss.ValidAccessToken(body.AccessToken); !ok || id != "app" || body.ExpiresIn <= 0 {
					t.Fatalf("token %+v not valid (%q, %v)", body, id, ok)
				}
			} else if body.Error == "" {
				t.Fatal("no OAuth error code")
			}
		})
	}
	if _, ok := iss.ValidAccessToken("fake-at.made-up"); ok {
		t.Fatal("a made-up token is valid")
	}
}

func TestIssuerPublishesEndorsedKeys(t *testing.T) {
	iss := NewIssuer()
	defer iss.Close()
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, iss.MetadataURL(), &meta)
	if meta.Issuer != BotFrameworkIssuer || meta.JWKSURI != iss.JWKSURL() {
		t.Fatalf("metadata = %+v", meta)
	}
	newKey, old := iss.Rotate()
	iss.Retire(old)
	var jwks struct {
		Keys []struct {
			Kid          string   `json:"kid"`
			Kty          string   `json:"kty"`
			Endorsements []string `json:"endorsements"`
		} `json:"keys"`
	}
	getJSON(t, meta.JWKSURI, &jwks)
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kid != newKey.ID || jwks.Keys[0].Kty != "RSA" || jwks.Keys[0].Endorsements[0] != "msteams" {
		t.Fatalf("jwks = %+v", jwks)
	}
	if c := iss.Counts(); c.Metadata != 1 || c.JWKS != 1 {
		t.Fatalf("counts = %+v", c)
	}
	for _, k := range TokenKinds {
		if tok := iss.Mint(k, "app", "https://x/"); strings.Count(tok, ".") != 2 {
			t.Fatalf("%s: %q is not a JWT", k, tok)
		}
	}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func post(t *testing.T, u, token, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestConnectorBehaviour(t *testing.T) {
	iss := NewIssuer()
	defer iss.Close()
	conn := NewConnector(ConnectorConfig{Issuer: iss, Limits: []Window{{3, time.Second}}, MaxMessageBytes: 200})
	defer conn.Close()
	iss.AddClient("app", "secret")
	tok := fetchToken(t, iss)
	ep := conn.ServiceURL() + "v3/conversations/a%3A1/activities"
	msg := `{"type":"message","text":"hi"}`

	if st, _, _ := post(t, ep, "", msg); st != 401 {
		t.Fatalf("no token: %d", st)
	}
	if st, _, _ := post(t, ep, "made-up", msg); st != 401 {
		t.Fatalf("made-up token: %d", st)
	}
	if st, _, _ := post(t, ep, tok, `{"text":`); st != 400 {
		t.Fatalf("bad JSON: %d", st)
	}
	if st, _, body := post(t, ep, tok, `{"type":"message","text":"  "}`); st != 400 || !strings.Contains(body, "BadArgument") {
		t.Errorf("empty message activity: %d %s, want 400 BadArgument as the real connector answers", st, body)
	}
	if st, _, body := post(t, ep, tok, `{"type":"message","text":"`+strings.Repeat("x", 200)+`"}`); st != 413 || !strings.Contains(body, "MessageSizeTooBig") {
		t.Fatalf("too big: %d %s", st, body)
	}
	for i := range 3 {
		if st, _, body := post(t, ep, tok, msg); st != 201 || !strings.Contains(body, `"id"`) {
			t.Fatalf("send %d: %d %s", i, st, body)
		}
	}
	st, hdr, body := post(t, ep, tok, msg)
	if st != 429 || hdr.Get("Retry-After") != "1" || !strings.Contains(body, `"error"`) {
		t.Fatalf("4th in a second: %d %q %s", st, hdr.Get("Retry-After"), body)
	}
	if got := conn.Sent("a:1"); len(got) != 3 || got[0].Text != "hi" || got[0].Conversation != "a:1" {
		t.Fatalf("sent = %+v", got)
	}
	if n := conn.CountStatus("a:1", 429); n != 1 {
		t.Fatalf("429 count = %d", n)
	}

	ep2 := conn.ServiceURL() + "v3/conversations/a%3A2/activities"
	conn.Block("a:2")
	if st, _, body := post(t, ep2, tok, msg); st != 403 || !strings.Contains(body, "MessageWritesBlocked") {
		t.Fatalf("blocked: %d %s", st, body)
	}
	conn.Unblock("a:2")
	conn.Fail("a:2", Fault{Status: 503, Code: "ServiceUnavailable", Times: 1})
	conn.Fail("", Fault{Status: 429, RetryAfter: "7", Skip: 1, Times: 1})
	if st, _, _ := post(t, ep2, tok, msg); st != 503 {
		t.Fatalf("fault: %d", st)
	}
	if st, _, _ := post(t, ep2, tok, msg); st != 201 {
		t.Fatalf("after fault: %d", st)
	}
	if st, hdr, _ := post(t, ep2, tok, msg); st != 429 || hdr.Get("Retry-After") != "7" {
		t.Fatalf("global fault: %d %q", st, hdr.Get("Retry-After"))
	}
	conn.SetNoContent(true)
	if st, _, body := post(t, ep2, tok, msg); st != 202 || body != "" {
		t.Fatalf("no content: %d %q", st, body)
	}
	if st, _, _ := post(t, ep2, tok, `{"type":"typing"}`); st != 202 {
		t.Fatalf("typing: %d", st)
	}
	if _, err := conn.WaitFor("a:2", 2, time.Second); err != nil {
		t.Fatal(err)
	}
	if got, err := conn.WaitFor("a:2", 3, 50*time.Millisecond); err == nil || len(got) != 2 {
		t.Fatalf("WaitFor beyond what was sent: %d, %v", len(got), err)
	}
}

func TestConnectorWaitForConcurrent(t *testing.T) {
	conn := NewConnector(ConnectorConfig{Limits: []Window{}})
	defer conn.Close()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost,
				fmt.Sprintf("%s/v3/conversations/c%d/activities", conn.URL, i%2), strings.NewReader(`{"type":"message","text":"x"}`))
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	got, err := conn.WaitFor("c1", 10, 5*time.Second)
	wg.Wait()
	if err != nil || len(got) != 10 {
		t.Fatalf("WaitFor: %d, %v", len(got), err)
	}
	if n := len(conn.Messages("")); n != 20 {
		t.Fatalf("%d messages", n)
	}
}

func fetchToken(t *testing.T, iss *Issuer) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"secret"}, "scope": {DefaultScope}}
	resp, err := http.PostForm(iss.TokenURL("botframework.com"), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.AccessToken
}
