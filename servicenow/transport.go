package servicenow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/handoffhq/handoff/bridge"
)

// transport is the HTTP side shared by both desks: authentication (Basic or
// OAuth), retries with backoff, throttling and the mapping of ServiceNow's
// answers to errors. It knows nothing about chats.
type transport struct {
	instance string // base URL without a trailing slash
	log      *slog.Logger
	now      func() time.Time
	http     *retryablehttp.Client
	auth     *authorizer
	// throttleFallback is how long a 429 that names no time is waited out.
	throttleFallback time.Duration
}

// transportConfig is what a transport needs from a desk's configuration.
type transportConfig struct {
	InstanceURL  string
	Username     string
	Password     string
	OAuth        *OAuth // nil: Basic auth (or none without credentials)
	Timeout      time.Duration
	MaxRetries   int
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration
	Logger       *slog.Logger
	HTTPClient   *http.Client
	Now          func() time.Time
}

func newTransport(cfg transportConfig) *transport {
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		hc = *cleanhttp.DefaultPooledClient()
	}
	if hc.Timeout == 0 {
		hc.Timeout = cfg.Timeout
	}
	t := &transport{instance: cfg.InstanceURL, log: cfg.Logger, now: cfg.Now, throttleFallback: defaultThrottle}
	t.http = &retryablehttp.Client{
		HTTPClient:   &hc,
		Logger:       retryLogger{cfg.Logger},
		RetryWaitMin: cfg.RetryWaitMin,
		RetryWaitMax: cfg.RetryWaitMax,
		RetryMax:     cfg.MaxRetries,
		CheckRetry:   checkRetry,
		Backoff:      backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		PrepareRetry: prepareRetry,
	}
	t.auth = newAuthorizer(t, cfg.Username, cfg.Password, cfg.OAuth)
	return t
}

// run holds the transport's background work, the OAuth token fetches that
// requests start, to a lifecycle: it blocks until ctx ends, then cancels the
// fetch in flight and waits for it; afterwards no fetch starts, and a
// request that needs a new token fails.
func (t *transport) run(ctx context.Context) error {
	<-ctx.Done()
	t.auth.close()
	return nil
}

// defaultThrottle is how long a 429 without Retry-After or X-RateLimit-Reset
// is waited out.
const defaultThrottle = 60 * time.Second

// call describes one API request.
type call struct {
	op     string // operation name for errors and logs, e.g. "send message"
	method string
	path   string // under the instance, without query
	query  url.Values
	body   any // JSON-encoded (without HTML escaping) when non-nil
	// raw is sent as the body as is (instead of body), for signed requests.
	raw []byte
	// header holds extra request headers (e.g. the Virtual Agent API's
	// message auth).
	header http.Header
	// retry allows retries on connection errors and 5xx (never on a throttle
	// answer). Only set it for requests that are idempotent or whose
	// duplicates beforeRetry detects.
	retry bool
	// beforeRetry runs before each retry with the status of the failed attempt
	// (0: no response). Returning errDone stops with success; any other error
	// stops with that error.
	beforeRetry func(ctx context.Context, lastStatus int) error
}

// errDone is returned by a beforeRetry hook that found the earlier attempt
// succeeded after all.
var errDone = errors.New("earlier attempt succeeded")

// answer is one final HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// do performs cl with auth, retries and error mapping, and returns the
// answer's result (nil for an empty body). Errors are prefixed
// "servicenow: <op>:"; non-2xx answers are *bridge.StatusError (see
// answerError for the sentinels they wrap), throttle answers
// *bridge.ThrottledError.
func (t *transport) do(ctx context.Context, cl call) (json.RawMessage, error) {
	r, _, err := t.doHeader(ctx, cl)
	return r, err
}

// doHeader is do that also returns the answer's headers (the Table API's
// X-Total-Count and Link).
func (t *transport) doHeader(ctx context.Context, cl call) (json.RawMessage, http.Header, error) {
	a, err := t.exchange(ctx, cl)
	if err != nil {
		return nil, nil, err
	}
	if err := t.answerError(cl.op, a); err != nil {
		return nil, nil, err
	}
	if len(bytes.TrimSpace(a.body)) == 0 {
		return nil, a.header, nil
	}
	var env envelope
	if err := json.Unmarshal(a.body, &env); err != nil {
		return nil, nil, fmt.Errorf("servicenow: %s: decode response: %w", cl.op, err)
	}
	return env.Result, a.header, nil
}

// encodeJSON encodes v compactly the way JavaScript's JSON.stringify writes
// it: without HTML escaping, so "<", ">" and "&" travel as themselves, and
// with U+2028, U+2029 and the U+FFFD that stands for invalid UTF-8 raw (Go
// escapes all three even then). Signed bodies are hashed by ServiceNow over
// JSON.stringify(JSON.parse(body)), so these bytes must already be in that
// form. (JavaScript would also move integer-like object keys first; no map
// the desks send has such keys.)
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return rawEscapes(bytes.TrimSuffix(b.Bytes(), []byte("\n"))), nil
}

// rawEscapes replaces the escapes \u2028, \u2029 and \ufffd in JSON text by
// the characters themselves, leaving an escaped backslash followed by
// "u2028" alone.
func rawEscapes(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u202`)) && !bytes.Contains(b, []byte(`\ufffd`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		if b[i+1] == 'u' && i+5 < len(b) {
			switch string(b[i+2 : i+6]) {
			case "2028", "2029", "fffd":
				r, _ := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
				out = utf8.AppendRune(out, rune(r))
				i += 5
				continue
			}
		}
		out = append(out, b[i], b[i+1]) // any other escape, kept whole
		i++
	}
	return out
}

// exchange performs cl with auth and retries and returns the final answer,
// whatever its status. A 401 answered to an OAuth token renews the token and
// repeats the request once. errDone from a beforeRetry hook is returned
// unwrapped; other errors are prefixed "servicenow: <op>:".
func (t *transport) exchange(ctx context.Context, cl call) (answer, error) {
	u := t.instance + cl.path
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	body := cl.raw
	if body == nil && cl.body != nil {
		var err error
		if body, err = encodeJSON(cl.body); err != nil {
			return answer{}, fmt.Errorf("servicenow: %s: encode body: %w", cl.op, err)
		}
	}
	for refreshed := false; ; refreshed = true {
		authz, err := t.auth.header(ctx)
		if err != nil {
			return answer{}, err // prefixed "servicenow: oauth token:"
		}
		hdr := http.Header{"Accept": {"application/json"}}
		if authz != "" {
			hdr.Set("Authorization", authz)
		}
		for k, v := range cl.header {
			hdr[http.CanonicalHeaderKey(k)] = v
		}
		if body != nil {
			hdr.Set("Content-Type", "application/json; charset=utf-8")
		}
		a, err := t.roundTrip(ctx, cl, u, hdr, body)
		if err != nil {
			if errors.Is(err, errDone) {
				return answer{}, err
			}
			return answer{}, fmt.Errorf("servicenow: %s: %w", cl.op, err)
		}
		if a.status == http.StatusUnauthorized && !refreshed && t.auth.invalidate(authz) {
			t.log.Info("servicenow token rejected; refreshing", "op", cl.op)
			continue
		}
		return a, nil
	}
}

// maxBody bounds what is read of one response.
const maxBody = 32 << 20

// roundTrip sends one request through the retrying client.
func (t *transport) roundTrip(ctx context.Context, cl call, u string, hdr http.Header, body []byte) (answer, error) {
	p := &policy{retry: cl.retry, beforeRetry: cl.beforeRetry}
	var raw any
	if body != nil {
		raw = body
	}
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, policyKey{}, p), cl.method, u, raw)
	if err != nil {
		return answer{}, fmt.Errorf("build request: %w", err)
	}
	req.Header = hdr
	resp, err := t.http.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return answer{}, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return answer{}, fmt.Errorf("read response: %w", err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: rb}, nil
}

// policy is one request's retry policy, carried in its context so that the
// shared retryablehttp client applies it.
type policy struct {
	retry       bool
	beforeRetry func(ctx context.Context, lastStatus int) error
	lastStatus  int // status of the latest attempt, 0 if it got no response
}

type policyKey struct{}

func policyFrom(ctx context.Context) *policy {
	p, _ := ctx.Value(policyKey{}).(*policy)
	return p
}

// checkRetry retries connection errors and 5xx (but not 501) for requests
// whose policy allows it. A throttle answer is never retried inside the call:
// it ends the call with a *bridge.ThrottledError so the caller's schedule
// waits without spending an attempt.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	p := policyFrom(ctx)
	if p == nil || !p.retry {
		return false, nil
	}
	p.lastStatus = 0
	if resp != nil {
		p.lastStatus = resp.StatusCode
		if isThrottle(resp.StatusCode, resp.Header) {
			return false, nil
		}
	}
	return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
}

// prepareRetry runs the request's duplicate check before a retry.
func prepareRetry(req *http.Request) error {
	p := policyFrom(req.Context())
	if p == nil || p.beforeRetry == nil {
		return nil
	}
	return p.beforeRetry(req.Context(), p.lastStatus)
}

// backoff waits a capped exponential delay with jitter: uniformly in
// [min, min·2^attempt], at most max.
func backoff(minWait, maxWait time.Duration, attempt int, _ *http.Response) time.Duration {
	ceil := maxWait
	if attempt < 30 {
		if d := minWait << attempt; d > 0 && d < maxWait {
			ceil = d
		}
	}
	if ceil <= minWait {
		return minWait
	}
	return minWait + rand.N(ceil-minWait+1)
}

// isThrottle reports whether an answer asks the bridge to wait: any 429; a
// 503 with Retry-After; any other failure carrying both Retry-After and
// ServiceNow's rate-limit headers (X-RateLimit-Limit or X-RateLimit-Rule).
func isThrottle(status int, h http.Header) bool {
	switch {
	case status == http.StatusTooManyRequests:
		return true
	case status < 400:
		return false
	case h.Get("Retry-After") == "":
		return false
	case status == http.StatusServiceUnavailable:
		return true
	default:
		return h.Get("X-RateLimit-Limit") != "" || h.Get("X-RateLimit-Rule") != ""
	}
}

// throttleUntil is when a throttled call may be tried again: Retry-After
// (seconds or an HTTP date), else X-RateLimit-Reset (Unix seconds) when in
// the future, else now + fallback.
func throttleUntil(h http.Header, now time.Time, fallback time.Duration) time.Time {
	if d, ok := retryAfter(h, now); ok {
		return now.Add(d)
	}
	if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 && n < 1<<40 {
			if t := time.Unix(n, 0); t.After(now) {
				return t
			}
		}
	}
	return now.Add(fallback)
}

// maxRetryAfter caps a Retry-After so a broken header cannot park a chat for
// days.
const maxRetryAfter = 24 * time.Hour

// retryAfter reads a Retry-After header in seconds (or as an HTTP date).
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > int64(maxRetryAfter/time.Second) { // also before n seconds overflow a Duration
			return maxRetryAfter, false
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}

// answerError maps a final answer to an error: nil for 2xx, a
// *bridge.ThrottledError wrapping the status error for a throttle answer,
// else statusError.
func (t *transport) answerError(op string, a answer) error {
	if a.status >= 200 && a.status <= 299 {
		return nil
	}
	if isThrottle(a.status, a.header) {
		msg, detail := errorText(a.body)
		// Not permanent and not unauthorized, whatever the status: waiting helps.
		err := &deskError{status: &bridge.StatusError{System: "servicenow", Op: op, Status: a.status, Message: msg, Detail: detail}}
		until := throttleUntil(a.header, t.now(), t.throttleFallback)
		t.log.Warn("servicenow throttled the bridge", "op", op, "status", a.status, "until", until,
			"rate_limit", a.header.Get("X-RateLimit-Limit"), "rate_limit_rule", a.header.Get("X-RateLimit-Rule"))
		return &bridge.ThrottledError{Destination: "servicenow", Until: until, Err: err}
	}
	return statusError(op, a.status, a.body)
}

// deskError is a failed answer: its text is the StatusError's, and it also
// unwraps to the bridge sentinels that classify it.
type deskError struct {
	status *bridge.StatusError
	kinds  []error
}

func (e *deskError) Error() string   { return e.status.Error() }
func (e *deskError) Unwrap() []error { return append([]error{e.status}, e.kinds...) }

// statusError maps a non-2xx answer to an error carrying ServiceNow's own
// message: 401 wraps bridge.ErrUnauthorized; 400, 403, 404 and other 4xx
// (except 408 and 429) are permanent; 408, 429 and 5xx are plain (retryable).
func statusError(op string, status int, body []byte) error {
	msg, detail := errorText(body)
	se := &bridge.StatusError{System: "servicenow", Op: op, Status: status, Message: msg, Detail: detail}
	e := &deskError{status: se}
	switch {
	case status == http.StatusUnauthorized:
		e.kinds = append(e.kinds, bridge.ErrUnauthorized)
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
	case status >= 400 && status < 500:
		e.kinds = append(e.kinds, &bridge.PermanentError{Err: se})
	}
	return e
}

// withChatClosed adds bridge.ErrChatClosed to a desk error.
func withChatClosed(err error) error {
	var de *deskError
	if errors.As(err, &de) {
		return &deskError{status: de.status, kinds: append(de.kinds[:len(de.kinds):len(de.kinds)], bridge.ErrChatClosed)}
	}
	return fmt.Errorf("%w (%w)", err, bridge.ErrChatClosed)
}

// httpStatus returns the HTTP status of a desk error, 0 for other errors.
func httpStatus(err error) int {
	var se *bridge.StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// retryLogger adapts slog to retryablehttp's LeveledLogger. retryablehttp logs
// each failed attempt at error level; they are warnings until retries run out.
type retryLogger struct{ l *slog.Logger }

func (r retryLogger) Error(msg string, kv ...any) { r.l.Warn("servicenow http: "+msg, kv...) }
func (r retryLogger) Info(msg string, kv ...any)  { r.l.Info("servicenow http: "+msg, kv...) }
func (r retryLogger) Debug(msg string, kv ...any) { r.l.Debug("servicenow http: "+msg, kv...) }
func (r retryLogger) Warn(msg string, kv ...any)  { r.l.Warn("servicenow http: "+msg, kv...) }
