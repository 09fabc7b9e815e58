package slack

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func seedExamples(f *testing.F, prefix string) {
	files, _ := filepath.Glob(filepath.Join("testdata", prefix+"*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzEvents feeds signed bodies to the Events API receiver: it never panics,
// answers 200, 400 or 500, and never stores an event without a key.
func FuzzEvents(f *testing.F) {
	seedExamples(f, "event_")
	f.Add([]byte(`{"type":"event_callback","event":{"type":"message","channel":"C0HANDOFF1","user":"U1","ts":"1.1","thread_ts":"1.0","subtype":"message_changed","message":{"user":"U1","ts":"1.1","thread_ts":"1.0","edited":{"ts":"x"}}}}`))
	now := time.Unix(1712345690, 0)
	f.Fuzz(func(t *testing.T, body []byte) {
		h, sink := testHandler(t, now, -1)
		w := serve(h.ServeEvents, signed(t, "/webhooks/slack", body, now.Unix(), testSecret))
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest:
		default:
			t.Fatalf("status %d", w.Code)
		}
		_, evs := sink.snapshot()
		for _, ev := range evs {
			if ev.Chat == "" || (ev.Kind == "message" && ev.ExternalID == "") {
				t.Fatalf("event without chat or key: %+v", ev)
			}
		}
	})
}

// FuzzInteractive feeds signed interactivity payloads.
func FuzzInteractive(f *testing.F) {
	seedExamples(f, "interactive_")
	now := time.Unix(1712345690, 0)
	f.Fuzz(func(t *testing.T, payload []byte) {
		h, _ := testHandler(t, now, -1)
		form := []byte(url.Values{"payload": {string(payload)}}.Encode())
		w := serve(h.ServeInteractive, signed(t, "/webhooks/slack/interactive", form, now.Unix(), testSecret))
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("status %d", w.Code)
		}
	})
}

// FuzzVerify: only the exact signature over the exact body within the window
// passes.
func FuzzVerify(f *testing.F) {
	f.Add("1712345690", "v0=abc", []byte("body"))
	f.Add("", "", []byte{})
	f.Add("-99999999999999999999", "v0=", []byte("x"))
	now := time.Unix(1712345690, 0)
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		if verify(testSecret, DefaultMaxSkew, now, h, body) == nil {
			n, _ := parseUnix(ts)
			if strings.TrimSpace(sig) != Sign(testSecret, n, body) {
				t.Fatalf("accepted a signature that is not ours: %q %q", ts, sig)
			}
		}
	})
}

func FuzzParseTS(f *testing.F) {
	for _, s := range []string{"1712345678.000100", "", "1.", ".1", "99999999999999999999.1", "1.000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if tm, err := parseTS(s); err == nil && tm.Before(time.Unix(0, 0)) {
			t.Fatalf("%q parsed to %v", s, tm)
		}
	})
}

func FuzzTextConversion(f *testing.F) {
	for _, s := range []string{"<https://a|b>", "<@U1>", "&amp;&lt;", "<<>|>", "name: https://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = fromSlack(s)
		_ = toSlack(s)
		_ = isHandback(s)
	})
}

// FuzzSocketMessage feeds Socket Mode messages to the loop's receive path:
// it never panics, acknowledges whatever was stored or is meaningless, and
// never stores an event without a chat or key.
func FuzzSocketMessage(f *testing.F) {
	seedExamples(f, "socket_")
	f.Add([]byte(`{"type":"events_api","envelope_id":"e1","payload":"not an object"}`))
	f.Add([]byte(`{"type":"interactive","envelope_id":"e2","payload":{"type":"block_actions","container":{"channel_id":"C0HANDOFF1","message_ts":"1.0"},"actions":[{"action_id":"handoff_close","action_ts":"x"}]}}`))
	now := time.Unix(1712345690, 0)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m socketMessage
		if json.Unmarshal(raw, &m) != nil {
			return
		}
		h, sink := testHandler(t, now, -1)
		s, err := NewSocket(SocketConfig{AppToken: "xapp-test"}, h)
		if err != nil {
			t.Fatal(err)
		}
		if _, ack := s.receive(context.Background(), m); !ack {
			t.Fatalf("not acknowledged although the sink stores everything: %s", raw)
		}
		_, evs := sink.snapshot()
		for _, ev := range evs {
			if ev.Chat == "" || (ev.Kind == "message" && ev.ExternalID == "") {
				t.Fatalf("event without chat or key: %+v", ev)
			}
		}
	})
}
