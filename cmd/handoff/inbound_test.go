package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/teams/teamstest"
)

// /api/messages takes bodies up to HANDOFF_MAX_BODY, not a fixed 256 KiB.
func TestAPIMessagesHonoursMaxBody(t *testing.T) {
	text := strings.Repeat("a", 300<<10) // a 300 KB message
	tests := []struct {
		maxBody string
		want    int
	}{
		{"1048576", http.StatusOK},
		{"262144", http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.maxBody, func(t *testing.T) {
			w := newWorld(t, worldOpts{extra: map[string]string{"HANDOFF_MAX_BODY": tt.maxBody}})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			u := teamstest.NewUser("Max Body " + tt.maxBody)
			status, err := w.ch().Post(ctx, w.ch().Message(u, text))
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.want {
				t.Fatalf("300 KB activity under HANDOFF_MAX_BODY=%s: status %d, want %d", tt.maxBody, status, tt.want)
			}
		})
	}
}
