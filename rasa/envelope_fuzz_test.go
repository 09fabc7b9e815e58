package rasa

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzErrorEnvelope: Rasa's error envelope ({"version","status","message",
// "reason","details","help","code"}) or anything else never panics, and a
// body that is not an envelope is not claimed to be one.
func FuzzErrorEnvelope(f *testing.F) {
	f.Add([]byte(`{"version":"3.6.20","status":"failure","message":"An unexpected error occurred. Error: injected fault","reason":"ConversationError","details":{},"help":null,"code":500}`))
	f.Add([]byte(`{"status":"failure","reason":"NotAuthenticated","message":"User is not authenticated.","code":401}`))
	f.Add([]byte(`{"description":"Not Found","status":404,"message":"Requested URL /x not found"}`))
	f.Add([]byte(`<html>Bad Gateway</html>`))
	f.Add([]byte(`{"status":5,"reason":[],"message":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, detail, isRasa := errorEnvelope(body)
		for _, s := range []string{msg, detail} {
			// Clipped for logs and errors: bounded, one line, valid UTF-8.
			if len(s) > 300+len("…") || strings.ContainsAny(s, "\r\n\t\x00") || !utf8.ValidString(s) {
				t.Fatalf("%q: unclipped text %q", body, s)
			}
		}
		if isRasa && !json.Valid(body) {
			t.Fatalf("%q: claimed as Rasa's envelope but not JSON", body)
		}
		_ = statusError("send", 500, body)
	})
}

// FuzzAnsweredInTracker: any tracker body never panics; a message is
// reported as answered only when the latest user event carries the key.
func FuzzAnsweredInTracker(f *testing.F) {
	f.Add([]byte(`{"sender_id":"a:1","events":[{"event":"user","text":"hi","metadata":{"activity_id":"k"}},{"event":"bot","text":"hello","data":{"buttons":[{"title":"A","payload":"/a"}],"custom":{"handoff":{"reason":"x"}}}}]}`), "k")
	f.Add([]byte(`{"events":[{"event":"user","metadata":{"activity_id":"k"}},{"event":"user","metadata":{"activity_id":"j"}}]}`), "k")
	f.Add([]byte(`{"events":[{"event":"user","metadata":"k"}]}`), "k")
	f.Add([]byte(`{"events":null}`), "")
	f.Add([]byte(`[]`), "k")
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		replies, done, err := answeredInTracker(body, key, log)
		if err != nil && done {
			t.Fatal("answered with an error")
		}
		if !done && len(replies) != 0 {
			t.Fatal("replies without an answered message")
		}
		if done && key == "" {
			t.Fatal("an empty key matched")
		}
	})
}
