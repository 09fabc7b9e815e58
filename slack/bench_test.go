package slack

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// BenchmarkEventAck measures how long Slack waits for the bridge's answer to
// one message event (verify, parse, hand to the store, answer), with no
// ordering window (the baseline) and with the default 300 ms window, in the
// same run. The sink records in memory, so this is the receiver's own cost
// plus the window; the store's commit comes on top.
func BenchmarkEventAck(b *testing.B) {
	now := time.Unix(1712345690, 0)
	for _, window := range []time.Duration{-1, 300 * time.Millisecond} {
		name := "window=none"
		if window > 0 {
			name = "window=" + window.String()
		}
		b.Run(name, func(b *testing.B) {
			h, _ := testHandler(b, now, window)
			b.ResetTimer()
			for i := range b.N {
				ts := "1712345690." + strconv.Itoa(100000+i)
				r := signed(b, "/webhooks/slack", replyEvent(b, "Ev"+ts, ts, "hello"), now.Unix(), testSecret)
				if w := serve(h.ServeEvents, r); w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
