package bridge

import (
	"errors"
	"fmt"
	"testing"
)

func TestTransitionTable(t *testing.T) {
	// legal lists every legal (from, event, reason) → to. Every other
	// combination of state × event × reason must be illegal.
	type key struct {
		from   State
		ev     Event
		reason CloseReason
	}
	legal := map[key]State{
		{StateBot, EventHandoff, ""}:        StateQueued,
		{StateQueued, EventAgentJoined, ""}: StateLive,
		{StateClosing, EventFinished, ""}:   StateClosed,
	}
	for _, r := range CloseReasons {
		if r != ReasonIdleTimeout {
			legal[key{StateQueued, EventEnd, r}] = StateClosing
		}
		if r != ReasonQueueTimeout {
			legal[key{StateLive, EventEnd, r}] = StateClosing
		}
	}
	events := []Event{EventHandoff, EventAgentJoined, EventEnd, EventFinished, "bogus"}
	reasons := append([]CloseReason{"", "bogus"}, CloseReasons...)
	states := append([]State{"bogus"}, States...)

	checked := 0
	for _, from := range states {
		for _, ev := range events {
			for _, reason := range reasons {
				name := fmt.Sprintf("%s/%s/%s", from, ev, reason)
				t.Run(name, func(t *testing.T) {
					got, err := Transition(from, ev, reason)
					want, ok := legal[key{from, ev, reason}]
					if ok {
						if err != nil || got != want {
							t.Fatalf("Transition = %q, %v; want %q, nil", got, err, want)
						}
						return
					}
					if !errors.Is(err, ErrIllegalTransition) {
						t.Fatalf("Transition = %q, %v; want ErrIllegalTransition", got, err)
					}
					if got != from {
						t.Fatalf("illegal transition changed state to %q", got)
					}
				})
				checked++
			}
		}
	}
	if checked != len(states)*len(events)*len(reasons) {
		t.Fatalf("checked %d combinations", checked)
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		in   string
		want Command
	}{
		{"/end_chat", CommandEndChat},
		{"  /END_CHAT \n", CommandEndChat},
		{"/Restart", CommandRestart},
		{"/restart please", CommandNone},
		{"end chat", CommandNone},
		{"", CommandNone},
	}
	for _, tt := range tests {
		if got := ParseCommand(tt.in); got != tt.want {
			t.Errorf("ParseCommand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestIsPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{errors.New("boom"), false},
		{Permanent(errors.New("bad request")), true},
		{fmt.Errorf("send: %w", ErrUserUnreachable), true},
		{fmt.Errorf("post: %w", ErrChatClosed), true},
		{fmt.Errorf("wrapped: %w", Permanent(errors.New("x"))), true},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}
