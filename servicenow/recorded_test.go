package servicenow

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/recorded"
)

// TestRecordedPayloads parses the payloads written from ServiceNow's
// documented examples (servicenow/recorded, which the fake answers in too).
func TestRecordedPayloads(t *testing.T) {
	now := time.Unix(1714659791, 0)
	tr := &transport{now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler), throttleFallback: defaultThrottle}
	header := func(x recorded.Exchange) http.Header {
		h := http.Header{}
		for k, v := range x.Header {
			h.Set(k, v)
		}
		return h
	}
	t.Run("rate limit 429", func(t *testing.T) {
		x := recorded.Load("ratelimit_429.json")
		err := tr.answerError("poll chats", answer{status: x.Status, header: header(x), body: x.Body})
		te, ok := bridge.Throttled(err)
		var se *bridge.StatusError
		if !ok || !te.Until.Equal(now.Add(2400*time.Second)) || !errors.As(err, &se) || se.Message != "Rate limit exceeded" ||
			se.Detail != "Rate limit of 100 requests per hour for Table API exceeded" {
			t.Errorf("got %v", err)
		}
		// Without Retry-After the reset time decides.
		h := header(x)
		h.Del("Retry-After")
		err = tr.answerError("poll chats", answer{status: x.Status, header: h, body: x.Body})
		if te, ok := bridge.Throttled(err); !ok || !te.Until.Equal(time.Unix(1714662191, 0)) {
			t.Errorf("without Retry-After: %v", err)
		}
	})
	t.Run("error envelope", func(t *testing.T) {
		x := recorded.Load("error_400.json")
		err := tr.answerError("list queues", answer{status: x.Status, body: x.Body})
		var se *bridge.StatusError
		if !errors.As(err, &se) || se.Message != "Requested URI does not represent any resource" || se.Detail != "" || !bridge.IsPermanent(err) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("oauth token", func(t *testing.T) {
		x := recorded.Load("oauth_token.json")
		tok, err := parseToken(x.Body, now, "password", tr)
		if err != nil || tok.access == "" || tok.refresh == "" || !tok.expiry.Equal(now.Add(1799*time.Second)) {
			t.Errorf("got %+v, %v", tok, err)
		}
	})
	t.Run("table page", func(t *testing.T) {
		x := recorded.Load("table_live_message_page.json")
		var env envelope
		if err := json.Unmarshal(x.Body, &env); err != nil {
			t.Fatal(err)
		}
		var rows []json.RawMessage
		if err := json.Unmarshal(env.Result, &rows); err != nil {
			t.Fatal(err)
		}
		for i, row := range rows {
			m, err := parseTableMessage(row)
			if err != nil || m.Group != "5c2d4f60db5a1010a4c1f2b3c4d5e6f7" || m.CreatedBy != "beth.anglin" || m.SenderName != "Beth Anglin" ||
				m.At.Format(TimeLayout) == "" || m.At.UTC().Hour() != 14 {
				t.Errorf("row %d: %+v, %v (want the UTC value, not the display value)", i, m, err)
			}
		}
		if x.Header["X-Total-Count"] != "3" || len(rows) != 2 {
			t.Errorf("a short page of a longer result: %d rows of %s", len(rows), x.Header["X-Total-Count"])
		}
	})
	t.Run("queue entry page", func(t *testing.T) {
		x := recorded.Load("table_chat_queue_entry_page.json")
		var env envelope
		if err := json.Unmarshal(x.Body, &env); err != nil {
			t.Fatal(err)
		}
		got, skipped, err := parseQueueEntries(env.Result)
		if err != nil || skipped != 0 || len(got) != 3 {
			t.Fatalf("%+v, %d skipped, %v", got, skipped, err)
		}
		want := []struct {
			state    QueueState
			position int
			agent    string
		}{{StateWaiting, 2, ""}, {StateWorkInProgress, 0, "Beth Anglin"}, {StateClosedComplete, 0, "Beth Anglin"}}
		for i, w := range want {
			if e := got[i]; e.State != w.state || e.Position != w.position || e.AssignedTo != w.agent || e.UpdatedOn.UTC().Hour() != 14 {
				t.Errorf("entry %d: %+v, want state %v, position %d, assigned to %q (the display value), UTC times", i, e, w.state, w.position, w.agent)
			}
		}
	})
	t.Run("va callback", func(t *testing.T) {
		x := recorded.Load("va_agent_callback.json")
		cb, err := ParseVACallback(x.Request)
		if err != nil || cb.Nonce != "0123456789abcdef0123456789abcdef" || len(cb.Items) != 1 || !cb.Items[0].FromAgent ||
			cb.Items[0].Text != "Hi, I'm Beth" || cb.Items[0].MessageID == "" {
			t.Errorf("got %+v, %v", cb, err)
		}
	})
	t.Run("va wait-time spinner", func(t *testing.T) {
		x := recorded.Load("va_spinner_callback.json")
		cb, err := ParseVACallback(x.Request)
		if err != nil {
			t.Fatal(err)
		}
		k := newVAClassifier(VAWebhookConfig{EndPhrases: append(slices.Clone(DefaultEndPhrases), VAClosePhrases...), IdlePhrases: DefaultVAIdlePhrases, JoinPhrases: DefaultVAJoinPhrases})
		evs := k.events("chat-1", cb, now)
		if len(evs) != 2 || evs[0].Kind != bridge.AgentWaiting || evs[0].Text != "Please stand by while I connect you to a live agent." ||
			evs[1].Kind != bridge.AgentWaiting || evs[1].EstimatedWait != 8*time.Second || evs[1].Text != "" || evs[1].QueuePosition != 0 {
			t.Errorf("events %+v", evs)
		}
	})
	t.Run("va error", func(t *testing.T) {
		x := recorded.Load("va_error.json")
		if msg, _ := errorText(x.Body); msg != "message.text is mandatory" {
			t.Errorf("message %q", msg)
		}
	})
}
