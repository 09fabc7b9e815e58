package teams

import (
	"net/http"
	"testing"
	"time"
)

// FuzzParseErrorBody: Teams error bodies of any shape never panic, and a
// code is only reported if it was found.
func FuzzParseErrorBody(f *testing.F) {
	f.Add([]byte(`{"error":{"code":"ConversationBlockedByUser","message":"User blocked the conversation with the bot."}}`))
	f.Add([]byte(`{"errorCode":209,"message":"{\"subCode\":\"MessageWritesBlocked\",\"details\":\"Thread is blocked from message writes.\"}"}`))
	f.Add([]byte(`{"error":{"code":"BadArgument","innerHttpError":{"statusCode":413,"body":{"code":"MessageSizeTooBig"}}}}`))
	f.Add([]byte(`"{\"code\":\"x\"}"`))
	f.Add([]byte(`[[[[[[[[[[[{"code":"deep"}]]]]]]]]]]]`))
	f.Add([]byte(`<html>502 Bad Gateway</html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e := parseErrorBody(body)
		if e.code == "" && len(e.codes) > 0 {
			t.Fatalf("codes %q found but no code reported", e.codes)
		}
		_ = e.unreachable()
	})
}

// FuzzRetryAfter: a Retry-After header yields a delay between 0 and a day,
// or nothing.
func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"5", "0.5", "  120 ", "-1", "86401", "NaN", "Inf", "1e308", "0x10",
		now.Add(time.Minute).Format(http.TimeFormat), "Wed, 21 Oct 2015 07:28:00 GMT", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		d, ok := retryAfter(h, now)
		if !ok {
			if d != 0 {
				t.Fatalf("%q: delay %v without ok", h, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("%q: negative delay %v", h, d)
		}
		if _, err := http.ParseTime(h); err != nil && d > 24*time.Hour {
			t.Fatalf("%q: delay %v over a day", h, d)
		}
	})
}
