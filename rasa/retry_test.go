package rasa

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/rasa/rasatest"
)

// userEventsWith counts the tracker's user events whose metadata carries key.
func userEventsWith(fake *rasatest.Server, conv, key string) int {
	n := 0
	for _, e := range fake.Events(conv) {
		if meta, _ := e["metadata"].(map[string]any); e.Name() == "user" && meta[MetadataKey] == key {
			n++
		}
	}
	return n
}

// Rasa that answers after our timeout processes the message anyway; the
// retry finds it in the tracker by its key and does not send it again.
func TestSendRetryAfterSlowAnswerDeliversOnce(t *testing.T) {
	tests := []struct {
		name         string
		key          string // "" = the old behaviour: no key, blind retry
		wantMessages int    // utterances Rasa processed
	}{
		{"keyed retry reads the tracker", "activity-1", 1},
		{"baseline without a key", "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := rasatest.New(rasatest.Options{})
			defer fake.Close()
			c := newClient(t, Config{URL: fake.URL(), Timeout: 200 * time.Millisecond})
			ctx := context.Background()
			conv := "a:slow-" + tt.key
			// A fast first turn, to compare the retry's answer with.
			want, err := c.Send(ctx, bridge.BotInput{Conversation: bridge.ConversationID(conv), Text: "I need a password reset", Key: "warm-up"})
			if err != nil {
				t.Fatal(err)
			}

			fake.SetProcessingDelay(time.Second)
			in := bridge.BotInput{Conversation: bridge.ConversationID(conv), Text: "I need a password reset", Key: tt.key}
			if _, err := c.Send(ctx, in); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("first attempt: err = %v, want a timeout", err)
			}
			// Rasa finishes the message after we gave up (an explicit signal,
			// not a sleep: the processed counter).
			deadline := time.Now().Add(30 * time.Second)
			for fake.Stats().Messages < 2 {
				if time.Now().After(deadline) {
					t.Fatal("the fake never processed the first attempt")
				}
				time.Sleep(10 * time.Millisecond)
			}
			fake.SetProcessingDelay(0)
			in.Retry = true
			got, err := c.Send(ctx, in)
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("retry replies = %+v, want the bot's answer %+v", got, want)
			}
			if n := fake.Stats().Messages - 1; n != tt.wantMessages {
				t.Fatalf("Rasa processed the utterance %d times, want %d", n, tt.wantMessages)
			}
			if tt.key != "" && userEventsWith(fake, conv, tt.key) != 1 {
				t.Fatalf("tracker holds %d user events with the key, want 1", userEventsWith(fake, conv, tt.key))
			}
		})
	}
}

// The key travels as metadata next to the bridge's own; a retry whose key is
// not the latest user event's is sent; a first attempt never reads the tracker.
func TestSendKeyInMetadata(t *testing.T) {
	fake := rasatest.New(rasatest.Options{})
	defer fake.Close()
	c := newClient(t, Config{URL: fake.URL()})
	ctx := context.Background()
	meta := map[string]any{"teams": map[string]any{"user_name": "Jane"}}
	steps := []struct {
		name      string
		in        bridge.BotInput
		wantSent  bool
		wantReads int
	}{
		{"first attempt", bridge.BotInput{Conversation: "a:k", Text: "hello", Metadata: meta, Key: "k1"}, true, 0},
		{"retry of a processed message", bridge.BotInput{Conversation: "a:k", Text: "hello", Metadata: meta, Key: "k1", Retry: true}, false, 1},
		{"retry of a message Rasa never got", bridge.BotInput{Conversation: "a:k", Text: "hello", Metadata: meta, Key: "k2", Retry: true}, true, 1},
		{"retry after a later message", bridge.BotInput{Conversation: "a:k", Text: "hello", Metadata: meta, Key: "k1", Retry: true}, true, 1},
		{"retry of a new conversation", bridge.BotInput{Conversation: "a:new", Text: "hello", Key: "k9", Retry: true}, true, 1},
	}
	for _, st := range steps {
		before := fake.Stats()
		if _, err := c.Send(ctx, st.in); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		after := fake.Stats()
		if sent := after.Messages > before.Messages; sent != st.wantSent {
			t.Fatalf("%s: sent = %v, want %v", st.name, sent, st.wantSent)
		}
		if reads := after.TrackerReads - before.TrackerReads; reads != st.wantReads {
			t.Fatalf("%s: %d tracker reads, want %d", st.name, reads, st.wantReads)
		}
	}
	calls := fake.Calls()
	var body struct {
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal(calls[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Metadata[MetadataKey] != "k1" || body.Metadata["teams"] == nil {
		t.Fatalf("metadata sent = %v, want activity_id k1 next to teams", body.Metadata)
	}
	if _, ok := meta[MetadataKey]; ok {
		t.Fatal("Send wrote into the caller's metadata map")
	}
}
