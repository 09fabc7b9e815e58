package rasa

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzParseReplies(f *testing.F) {
	for _, name := range []string{"webhook_replies.json", "webhook_handoff.json"} {
		f.Add(testdata(f, name))
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `[null]`, `[{"custom":{"handoff":true}}]`,
		`[{"custom":{"handoff":{"reason":["x"],"queue":{}}}}]`,
		`[{"buttons":[{"title":{"a":1},"payload":null,"url":5}],"attachment":[1]}]`,
		`[{"text":"\u0000\ud800","custom":{"handoff":{"reason":"\xff\xfe"}}}]`,
		`[{"quick_replies":[{"title":"t","payload":1e309}]}]`,
	} {
		f.Add([]byte(s))
	}
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, data []byte) {
		replies, err := parseReplies(data, log)
		if err != nil {
			return
		}
		for _, r := range replies {
			if r.Text == "" && r.ImageURL == "" && len(r.Buttons) == 0 && r.Custom == nil {
				t.Fatalf("empty reply kept: %+v", r)
			}
			if h := r.Handoff; h != nil {
				if h.Reason == "" || len(h.Reason) > maxSignalField || len(h.Queue) > maxSignalField {
					t.Fatalf("bad signal %+v", h)
				}
				if !utf8.ValidString(h.Reason) || !utf8.ValidString(h.Queue) || strings.TrimSpace(h.Reason) != h.Reason {
					t.Fatalf("unclean signal %q %q", h.Reason, h.Queue)
				}
				if r.Custom == nil {
					t.Fatal("handoff without custom payload")
				}
			}
			for _, b := range r.Buttons {
				if b.Title == "" || b.Payload == "" {
					t.Fatalf("empty button %+v", b)
				}
			}
			if _, err := json.Marshal(r.Custom); err != nil {
				t.Fatalf("custom payload does not re-encode: %v", err)
			}
		}
	})
}

func FuzzParseTracker(f *testing.F) {
	for _, name := range []string{"tracker_handoff.json", "tracker_fallback.json", "tracker_new.json"} {
		f.Add(testdata(f, name))
	}
	for _, s := range []string{
		`{}`, `[]`, `null`, `{"events":[{"event":"session_started"}]}`,
		`{"events":[{"event":"user","timestamp":1e300},{"event":"action","name":"x"}],"latest_message":null}`,
		`{"latest_message":{"intent_ranking":[{"name":"a"},{"name":"b","confidence":-1}]},"active_loop":{"name":{}}}`,
		`{"events":[{"event":"bot","data":{"buttons":[{"title":1},{"title":"x"}]}}],"active_form":{"name":"f"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		bc, err := parseTracker(data)
		if err != nil {
			return
		}
		for _, tu := range bc.Turns {
			if tu.Role != "user" && tu.Role != "bot" {
				t.Fatalf("turn role %q", tu.Role)
			}
			if tu.Role == "bot" && tu.Text == "" {
				t.Fatal("empty bot turn")
			}
			if !tu.At.IsZero() && (tu.At.Year() < 1970 || tu.At.Year() > 5000) {
				t.Fatalf("turn time %v", tu.At)
			}
		}
		if bc.LatestAction == actionListen {
			t.Fatal("latest action is action_listen")
		}
		// The result must be storable as JSON (review records, transcripts).
		if _, err := json.Marshal(bc); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzThrottledUntil: any Retry-After yields a wait within a day, and a 429
// is always a throttle.
func FuzzThrottledUntil(f *testing.F) {
	for _, s := range []string{"", "0", "30", "-1", "1.5", "86401", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"} {
		f.Add(429, s)
		f.Add(503, s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, h string) {
		until, ok := throttledUntil(status, h, now)
		if !ok {
			if status == 429 {
				t.Fatalf("429 %q not throttled", h)
			}
			return
		}
		if until.Before(now) || until.After(now.Add(24*time.Hour+time.Second)) {
			t.Fatalf("throttledUntil(%d, %q) = %v: outside [now, now+24h]", status, h, until)
		}
	})
}
