package teams

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/handoffhq/handoff/teams/teamstest"
)

// FuzzHandler feeds arbitrary Authorization headers, Content-Types and bodies
// to /api/messages (the JWT path, the media type check, the activity checks):
// it must never panic, answer only the documented statuses, and pass on only
// activities with an id, a conversation and an allowed serviceUrl.
func FuzzHandler(f *testing.F) {
	issuer := teamstest.NewIssuer()
	f.Cleanup(issuer.Close)
	inbox := &recordingInbox{}
	h, err := NewHandler(HandlerConfig{AppID: testAppID, OpenIDMetadataURL: issuer.MetadataURL(),
		KeyRefetchSpacing: time.Hour, MaxBody: 64 << 10}, inbox, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(h.keys.close)
	ch := &teamstest.Channel{Issuer: issuer, AppID: testAppID, ServiceURL: "https://smba.trafficmanager.net/emea/", TenantID: testTenant}
	u := teamstest.NewUser("Fuzz")
	msg, _ := json.Marshal(ch.Message(u, "hello"))
	for _, kind := range []teamstest.TokenKind{teamstest.TokenValid, teamstest.TokenExpired, teamstest.TokenUnknownKey,
		teamstest.TokenAlgNone, teamstest.TokenAlgHS256, teamstest.TokenNoServiceURL, teamstest.TokenWrongAudience} {
		f.Add("Bearer "+ch.Token(kind), "application/json; charset=utf-8", msg)
	}
	f.Add("Bearer a.b.c", "application/json", []byte(`{"type":"message","id":"1","text":5}`))
	f.Add("bearer  ", "text/plain", []byte("hello"))
	f.Add("Basic dXNlcjpwYXNz", "application/vnd.api+json", []byte(`[]`))
	f.Add("Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.e30.", "", []byte(`{}`))

	allowed := map[int]bool{200: true, 400: true, 401: true, 403: true, 413: true, 415: true, 503: true}
	f.Fuzz(func(t *testing.T, auth, contentType string, body []byte) {
		before := len(inbox.all())
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/messages", bytes.NewReader(body))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("status %d", rec.Code)
		}
		got := inbox.all()
		if rec.Code != http.StatusOK && len(got) != before {
			t.Fatalf("status %d, yet the inbox received the activity", rec.Code)
		}
		for _, a := range got[before:] {
			if a.ID == "" || a.Ref.Conversation == "" {
				t.Fatalf("passed on an activity without id or conversation: %+v", a)
			}
			if _, err := h.hosts.check(a.Ref.ServiceURL); err != nil {
				t.Fatalf("passed on an activity for a serviceUrl off the allow-list: %v", err)
			}
		}
	})
}
