package servicenow

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Fuzz tests of what ServiceNow (or anyone posing as it) sends the bridge:
// webhook signatures, timestamps and Basic auth, the VA callback header and
// nonce, OAuth token answers, error bodies, Retry-After and date-times.

const (
	fuzzSecret = "fuzz-webhook-secret"
	fuzzUser   = "br-user"
	fuzzPass   = "br-pass"
)

var fuzzNow = time.Unix(1_764_680_000, 0)

// FuzzVerifySignature: a signature is accepted only when it is the HMAC of
// "<timestamp>.<body>" and the timestamp is within the window.
func FuzzVerifySignature(f *testing.F) {
	body := []byte(`{"sys_id":"a1","group":"g1","message":"hi"}`)
	ts := strconv.FormatInt(fuzzNow.Unix(), 10)
	mac := SignatureMAC(fuzzSecret, ts, body)
	f.Add(ts, "sha256="+hex.EncodeToString(mac), body)
	f.Add(ts, base64.StdEncoding.EncodeToString(mac), body)
	f.Add(ts, base64.RawURLEncoding.EncodeToString(mac), body)
	f.Add(strconv.FormatInt(fuzzNow.Unix()-301, 10), "sha256="+hex.EncodeToString(mac), body)
	f.Add("-1", "sha256=", body)
	f.Add("99999999999999999999", "zz", []byte{})
	f.Add(" "+ts+" ", "SHA256="+hex.EncodeToString(mac), body)
	f.Fuzz(func(t *testing.T, tsHeader, sigHeader string, body []byte) {
		got, at, reason := verifySignature(fuzzSecret, tsHeader, sigHeader, body, fuzzNow, 5*time.Minute)
		if reason != "" {
			return
		}
		if d := fuzzNow.Sub(at); d > 5*time.Minute || d < -5*time.Minute {
			t.Fatalf("timestamp %q accepted %v away", tsHeader, d)
		}
		if !hmac.Equal(got, SignatureMAC(fuzzSecret, strconv.FormatInt(at.Unix(), 10), body)) &&
			!hmac.Equal(got, SignatureMAC(fuzzSecret, tsHeader, body)) {
			t.Fatalf("signature %q accepted for timestamp %q", sigHeader, tsHeader)
		}
	})
}

type nopSink struct{}

func (nopSink) AgentEvents(context.Context, bridge.AgentChatID, []bridge.AgentEvent, bool) error {
	return nil
}

// FuzzWebhookAuth: with arbitrary Authorization, timestamp and signature
// headers, the handler answers a documented status, and 200 only for a
// valid signature or the right Basic credentials.
func FuzzWebhookAuth(f *testing.F) {
	h, err := NewWebhookHandler(WebhookConfig{Secret: fuzzSecret, Username: fuzzUser, Password: fuzzPass,
		OrderWindow: -1, Now: func() time.Time { return fuzzNow }, Logger: slog.New(slog.DiscardHandler)}, nopSink{})
	if err != nil {
		f.Fatal(err)
	}
	body := []byte(`{"sys_id":"a1","group":"g1","message":"hi","created_by":"agent","sys_created_on":"2026-12-02 12:00:00"}`)
	ts := strconv.FormatInt(fuzzNow.Unix(), 10)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(fuzzUser+":"+fuzzPass))
	f.Add("", ts, "sha256="+hex.EncodeToString(SignatureMAC(fuzzSecret, ts, body)), body)
	f.Add(basic, "", "", body)
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte(fuzzUser+":wrong")), "", "", body)
	f.Add("Basic !!!", "", "", body)
	f.Add("Bearer x", ts, "sha256=00", []byte(`[`))
	f.Fuzz(func(t *testing.T, auth, tsHeader, sigHeader string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/servicenow", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range map[string]string{"Authorization": auth, HeaderTimestamp: tsHeader, HeaderSignature: sigHeader} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			user, pass, ok := req.BasicAuth()
			signed := sigHeader != "" || tsHeader != ""
			if _, _, reason := verifySignature(fuzzSecret, tsHeader, sigHeader, body, fuzzNow, 5*time.Minute); signed && reason != "" {
				t.Fatalf("200 for a bad signature (%s)", reason)
			}
			if !signed && (!ok || user != fuzzUser || pass != fuzzPass) {
				t.Fatal("200 without a signature or the right Basic credentials")
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge, http.StatusInternalServerError:
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}

// vaSessions knows one chat and its nonce.
type vaSessions struct{ data string }

func (s vaSessions) DeskData(_ context.Context, chat bridge.AgentChatID) (string, error) {
	if chat != "c1" {
		return "", bridge.ErrNotFound
	}
	return s.data, nil
}

// FuzzVACallbackAuth: a callback is taken (200 and stored) only with the
// secret header and, for a known chat, the session's nonce.
func FuzzVACallbackAuth(f *testing.F) {
	const secret, nonce = "va-callback-secret", "n0nce-1234"
	sink := &countingSink{}
	h, err := NewVAWebhookHandler(VAWebhookConfig{Header: "X-Handoff-Secret", Secret: secret, OpenWait: time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}, sink, vaSessions{data: `{"nonce":"` + nonce + `"}`})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(secret, []byte(`{"requestId":"r1","clientSessionId":"c1","clientVariables":{"nonce":"`+nonce+`"},"body":[{"uiType":"OutputText","value":"hi","messageId":"m1","agentInfo":{"sentFromAgent":true,"agentName":"Beth"}}]}`))
	f.Add(secret, []byte(`{"requestId":"r1","clientSessionId":"c1","clientVariables":{"nonce":"wrong"},"body":[]}`))
	f.Add(secret, []byte(`{"requestId":"r1","clientSessionId":"c1","body":{"uiType":"OutputText","value":"hi"}}`))
	f.Add("", []byte(`{"clientSessionId":"c1"}`))
	f.Add(secret+" ", []byte(`{"clientSessionId":"other","clientVariables":{"nonce":7}}`))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		before := sink.n()
		req := httptest.NewRequest(http.MethodPost, "/webhooks/servicenow/va", bytes.NewReader(body))
		req.Header.Set("X-Handoff-Secret", header)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		stored := sink.n() > before
		switch rec.Code {
		case http.StatusOK:
			if header != secret {
				t.Fatalf("200 with header %q", header)
			}
			if stored {
				cb, err := ParseVACallback(body)
				if err != nil || cb.ClientSessionID != "c1" || cb.Nonce != nonce {
					t.Fatalf("stored a callback without the nonce: %+v %v", cb, err)
				}
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge, http.StatusInternalServerError:
			if stored {
				t.Fatalf("status %d, yet events were stored", rec.Code)
			}
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}

type countingSink struct {
	calls chan struct{}
}

func (s *countingSink) AgentEvents(context.Context, bridge.AgentChatID, []bridge.AgentEvent, bool) error {
	if s.calls == nil {
		return nil
	}
	s.calls <- struct{}{}
	return nil
}

func (s *countingSink) n() int {
	if s.calls == nil {
		s.calls = make(chan struct{}, 1<<20)
	}
	return len(s.calls)
}

// FuzzParseToken: an accepted OAuth answer has an access token and an
// expiry that is unset or in the future (at most ~31 years away).
func FuzzParseToken(f *testing.F) {
	f.Add([]byte(`{"access_token":"abc","refresh_token":"r","scope":"useraccount","token_type":"Bearer","expires_in":1799}`))
	f.Add([]byte(`{"access_token":"abc","token_type":"mac","expires_in":"1799"}`))
	f.Add([]byte(`{"access_token":"abc","expires_in":-5}`))
	f.Add([]byte(`{"access_token":"abc","expires_in":1e308}`))
	f.Add([]byte(`{"error":"access_denied","error_description":"Access denied"}`))
	f.Add([]byte(`{"access_token":"abc","expires_in":"NaN"}`))
	tr := &transport{log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseToken(body, fuzzNow, GrantClientCredentials, tr)
		if err != nil {
			return
		}
		if tok.access == "" {
			t.Fatal("token without access_token accepted")
		}
		if !tok.expiry.IsZero() && (!tok.expiry.After(fuzzNow) || tok.expiry.Sub(fuzzNow) > 1e9*time.Second) {
			t.Fatalf("expiry %v", tok.expiry)
		}
	})
}

// FuzzErrorText: any failed-response body never panics.
func FuzzErrorText(f *testing.F) {
	f.Add([]byte(`{"error":{"message":"No Record found","detail":"Record doesn't exist or ACL restricts the record retrieval"},"status":"failure"}`))
	f.Add([]byte(`{"error":"invalid_client","error_description":"Client authentication failed"}`))
	f.Add([]byte(`{"result":"Chat is closed"}`))
	f.Add([]byte(`<html>Instance hibernating</html>`))
	f.Add([]byte(`{"error":{"message":{"a":1},"detail":[1]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = errorText(body)
		_ = statusError("post message", 500, body)
	})
}

// FuzzRetryAfterHeader: ServiceNow's Retry-After yields 0 to 24 h, or nothing.
func FuzzRetryAfterHeader(f *testing.F) {
	for _, s := range []string{"30", "0", "-1", "86401", "9223372036854775807", "NaN", "1.5",
		fuzzNow.Add(time.Minute).UTC().Format(http.TimeFormat), "Mon, 02 Jan 2006 15:04:05 GMT", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Set("Retry-After", v)
		d, ok := retryAfter(h, fuzzNow)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("%q: delay %v (ok %v)", v, d, ok)
		}
		until := throttleUntil(h, fuzzNow, time.Minute)
		if until.Before(fuzzNow) || until.After(fuzzNow.Add(maxRetryAfter+time.Minute)) {
			t.Fatalf("%q: throttled until %v", v, until)
		}
	})
}

// FuzzParseTime: an accepted ServiceNow date-time formats back to itself.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-12-02 15:04:05", " 2026-12-02 15:04:05 ", "2026-02-30 10:00:00", "2026-12-02T15:04:05Z", "", "0000-01-01 00:00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := parseTime(s)
		if err != nil || tm.IsZero() {
			return
		}
		back, err := parseTime(formatTime(tm))
		if err != nil || !back.Equal(tm) {
			t.Fatalf("%q → %v → %q → %v, %v", s, tm, formatTime(tm), back, err)
		}
	})
}

// FuzzParseWaitTime: a VA wait time is never negative.
func FuzzParseWaitTime(f *testing.F) {
	for _, s := range []string{"120", "2 minutes", "00:05:00", "-3", "", "1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, ok := parseWaitTime(s); ok && d < 0 {
			t.Fatalf("%q: %v", s, d)
		}
	})
}
