package servicenow

import (
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// TestQueuePositionEvent: a waiting queue entry's position becomes an
// AgentWaiting event whose id changes with the place, for the status card.
func TestQueuePositionEvent(t *testing.T) {
	k := newClassifier("handoff.bridge", nil)
	at := time.Unix(1_700_000_000, 0)
	tests := []struct {
		entry QueueEntry
		want  int // position reported, 0 = no waiting event
	}{
		{QueueEntry{State: StateWaiting, Position: 3}, 3},
		{QueueEntry{State: StateWaiting}, 0},
		{QueueEntry{State: StateWorkInProgress, Position: 1, AssignedTo: "Beth Anglin"}, 0},
	}
	for _, tc := range tests {
		got := 0
		for _, ev := range k.events("chat-1", nil, &tc.entry, at) {
			if ev.Kind == bridge.AgentWaiting {
				got = ev.QueuePosition
				if ev.ExternalID != "position:3" {
					t.Errorf("id %q", ev.ExternalID)
				}
			}
		}
		if got != tc.want {
			t.Errorf("%+v: position %d, want %d", tc.entry, got, tc.want)
		}
	}
}
