package servicenow_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// throttleFront answers the next matching request itself with status and
// header, then passes everything to the fake instance.
type throttleFront struct {
	in     *snowtest.Instance
	path   string
	status int
	header http.Header
	armed  atomic.Bool
	hits   atomic.Int32
}

func (f *throttleFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == f.path && f.armed.CompareAndSwap(true, false) {
		f.hits.Add(1)
		for k, v := range f.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(`{"error":{"message":"Rate limit exceeded","detail":"Rate limit of 100 requests per hour for REST API exceeded"},"status":"failure"}`))
		return
	}
	f.in.Handler().ServeHTTP(w, r)
}

// TestThrottleAnswers: a 429 (whatever it carries), a 503 with Retry-After
// and a failure carrying ServiceNow's rate-limit headers end the call at once
// with a bridge.ThrottledError naming when to try again, spending no retry;
// a 503 without Retry-After stays an ordinary, retried failure.
func TestThrottleAnswers(t *testing.T) {
	now := time.Date(2026, 5, 2, 14, 0, 0, 0, time.UTC)
	reset := now.Add(17 * time.Minute)
	tests := []struct {
		name      string
		status    int
		header    http.Header
		throttled bool
		until     time.Time
		requests  int32 // requests the front answered
	}{
		{"429 with Retry-After", 429, http.Header{"Retry-After": {"120"}, "X-Ratelimit-Reset": {strconv.FormatInt(reset.Unix(), 10)}}, true, now.Add(120 * time.Second), 1},
		{"429 with X-RateLimit-Reset only", 429, http.Header{"X-Ratelimit-Limit": {"100"}, "X-Ratelimit-Reset": {strconv.FormatInt(reset.Unix(), 10)}}, true, reset, 1},
		{"429 bare", 429, nil, true, now.Add(60 * time.Second), 1},
		{"429 with an HTTP-date Retry-After", 429, http.Header{"Retry-After": {now.Add(5 * time.Minute).Format(http.TimeFormat)}}, true, now.Add(5 * time.Minute), 1},
		{"503 with Retry-After", 503, http.Header{"Retry-After": {"30"}}, true, now.Add(30 * time.Second), 1},
		{"403 with rate-limit headers", 403, http.Header{"Retry-After": {"45"}, "X-Ratelimit-Rule": {snowtest.RateLimitRule}}, true, now.Add(45 * time.Second), 1},
		{"503 without Retry-After", 503, nil, false, time.Time{}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := newFake(t, snowtest.Options{})
			front := &throttleFront{in: in, path: "/api/now/connect/support/queues", status: tc.status, header: tc.header}
			srv := httptest.NewServer(front)
			t.Cleanup(srv.Close)
			front.armed.Store(true)
			c := newClient(t, in, func(cfg *servicenow.Config) {
				cfg.InstanceURL = srv.URL
				cfg.Now = func() time.Time { return now }
			})
			_, err := c.Queues(context.Background())
			te, ok := bridge.Throttled(err)
			if ok != tc.throttled {
				t.Fatalf("Queues: %v; throttled = %v, want %v", err, ok, tc.throttled)
			}
			if got := front.hits.Load(); got != tc.requests {
				t.Errorf("front answered %d requests, want %d", got, tc.requests)
			}
			if !tc.throttled {
				if err != nil {
					t.Errorf("a 503 without Retry-After was not retried: %v", err)
				}
				return
			}
			if !te.Until.Equal(tc.until) || te.Destination != "servicenow" {
				t.Errorf("throttled until %v by %q, want %v by servicenow", te.Until, te.Destination, tc.until)
			}
			var se *bridge.StatusError
			if !errors.As(err, &se) || se.Status != tc.status || se.Message != "Rate limit exceeded" {
				t.Errorf("the throttle does not carry ServiceNow's answer: %v", err)
			}
			if bridge.IsPermanent(err) {
				t.Error("a throttle is permanent")
			}
		})
	}
}

// TestThrottledSend: a post answered 429 by the instance's rate limit is not
// retried and no echo check runs; the retry after the limit lifts posts the
// message exactly once.
func TestThrottledSend(t *testing.T) {
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, func(cfg *servicenow.Config) { cfg.Now = in.Now })
	chat := openChat(t, c, "s-1")
	ctx := context.Background()
	in.SetRateLimit(snowtest.RateLimit{Limit: 1, Window: time.Hour})
	if _, err := c.Queues(ctx); err != nil { // uses up the limit
		t.Fatal(err)
	}
	in.ResetRequests()
	m := bridge.DeskMessage{Key: "k1", Text: "please reset my password", FirstTry: in.Now()}
	err := c.Send(ctx, dc(chat), m)
	te, ok := bridge.Throttled(err)
	if !ok {
		t.Fatalf("Send: %v, want a ThrottledError", err)
	}
	if d := te.Until.Sub(in.Now()); d < 59*time.Minute {
		t.Errorf("throttled for %v, want until the window ends", d)
	}
	if got := in.TotalRequests(); got != 1 {
		t.Errorf("%d requests while throttled, want 1 (%v)", got, in.Requests())
	}
	in.SetRateLimit(snowtest.RateLimit{})
	m.Retry = true
	if err := c.Send(ctx, dc(chat), m); err != nil {
		t.Fatalf("Send after the limit lifted: %v", err)
	}
	n := 0
	for _, msg := range in.Messages(string(chat)) {
		if msg.Text == m.Text {
			n++
		}
	}
	if n != 1 {
		t.Errorf("message stored %d times, want once", n)
	}
}

// TestThrottledToken: the OAuth token endpoint's 429 is a throttle too.
func TestThrottledToken(t *testing.T) {
	in := newFake(t, snowtest.Options{OAuthClients: []snowtest.OAuthClient{{ID: "cid", Secret: "csecret"}}})
	in.InjectFault(snowtest.Fault{Path: "/oauth_token.do", Status: 429, RetryAfter: 90})
	c := newClient(t, in, func(cfg *servicenow.Config) {
		cfg.OAuth = &servicenow.OAuth{GrantType: servicenow.GrantPassword, ClientID: "cid", ClientSecret: "csecret"}
	})
	_, err := c.Queues(context.Background())
	if te, ok := bridge.Throttled(err); !ok || time.Until(te.Until) < 80*time.Second {
		t.Fatalf("Queues with a throttled token endpoint: %v, want throttled for 90 s", err)
	}
	if got := in.Requests()["POST /oauth_token.do"]; got != 1 {
		t.Errorf("%d token requests, want 1", got)
	}
}

// TestThrottledVA: the Virtual Agent API's 429 is a throttle.
func TestThrottledVA(t *testing.T) {
	in := newFake(t, snowtest.Options{})
	in.InjectFault(snowtest.Fault{Path: servicenow.PathVA, Status: 429, RetryAfter: 10})
	v, err := servicenow.NewVA(servicenow.VAConfig{InstanceURL: in.URL(), Username: snowtest.DefaultUser,
		Password: snowtest.DefaultPassword, Token: "t", RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = v.Leave(context.Background(), bridge.DeskChat{ID: "handoff-s1"})
	if _, ok := bridge.Throttled(err); !ok {
		t.Fatalf("Leave: %v, want a ThrottledError", err)
	}
	if got := in.TotalRequests(); got != 1 {
		t.Errorf("%d requests, want 1", got)
	}
}
