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

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/handoffhq/handoff/bridge"
)

// Client talks to a ServiceNow instance's Connect Support REST API (and the
// Table API for batched polling). It is safe for concurrent use.
type Client struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	http  *retryablehttp.Client
	auth  *authorizer
	cls   classifier // echo, system and end-phrase rules
	hints lastSeen   // for LastMessageHint
}

var (
	_ bridge.AgentDesk      = (*Client)(nil)
	_ bridge.AgentFeed      = (*Client)(nil)
	_ bridge.BatchAgentFeed = (*Client)(nil)
)

// New returns a client for cfg. It makes no request; call CheckQueue at
// startup to learn whether the instance can take chats.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		hc = *cleanhttp.DefaultPooledClient()
	}
	if hc.Timeout == 0 {
		hc.Timeout = cfg.Timeout
	}
	c := &Client{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	c.http = &retryablehttp.Client{
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
	c.cls = newClassifier(cfg.BridgeUser, cfg.EndPhrases)
	c.auth = &authorizer{c: c}
	return c, nil
}

// call describes one API request.
type call struct {
	op     string // operation name for errors and logs, e.g. "send message"
	method string
	path   string // under the instance, without query
	query  url.Values
	body   any // JSON-encoded when non-nil
	// raw is sent as the body as is (instead of body), for signed requests.
	raw []byte
	// header holds extra request headers (e.g. the Virtual Agent API's
	// message auth).
	header http.Header
	// retry allows retries on connection errors, 429 and 5xx. Only set it for
	// requests that are idempotent or whose duplicates beforeRetry detects.
	retry bool
	// beforeRetry runs before each retry with the status of the failed attempt
	// (0: no response). Returning errDone stops with success; any other error
	// stops with that error.
	beforeRetry func(ctx context.Context, lastStatus int) error
}

// errDone is returned by a beforeRetry hook that found the earlier attempt
// succeeded after all.
var errDone = errors.New("earlier attempt succeeded")

// do performs cl with auth, retries and error mapping, and returns the
// answer's result (nil for an empty body). Errors are prefixed
// "servicenow: <op>:"; non-2xx answers are *bridge.StatusError (see
// statusError for the sentinels they wrap).
func (c *Client) do(ctx context.Context, cl call) (json.RawMessage, error) {
	status, rb, err := c.exchange(ctx, cl)
	if err != nil {
		return nil, err
	}
	if status < 200 || status > 299 {
		return nil, statusError(cl.op, status, rb)
	}
	if len(bytes.TrimSpace(rb)) == 0 {
		return nil, nil
	}
	var env envelope
	if err := json.Unmarshal(rb, &env); err != nil {
		return nil, fmt.Errorf("servicenow: %s: decode response: %w", cl.op, err)
	}
	return env.Result, nil
}

// exchange performs cl with auth and retries and returns the final answer's
// status and body, whatever the status. A 401 answered to an OAuth token
// renews the token and repeats the request once. errDone from a beforeRetry
// hook is returned unwrapped; other errors are prefixed "servicenow: <op>:".
func (c *Client) exchange(ctx context.Context, cl call) (int, []byte, error) {
	u := c.cfg.InstanceURL + cl.path
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	body := cl.raw
	if body == nil && cl.body != nil {
		var err error
		if body, err = json.Marshal(cl.body); err != nil {
			return 0, nil, fmt.Errorf("servicenow: %s: encode body: %w", cl.op, err)
		}
	}
	for refreshed := false; ; refreshed = true {
		authz, err := c.auth.header(ctx)
		if err != nil {
			return 0, nil, err // prefixed "servicenow: oauth token:"
		}
		hdr := http.Header{"Accept": {"application/json"}}
		if authz != "" {
			hdr.Set("Authorization", authz)
		}
		for k, v := range cl.header {
			hdr[http.CanonicalHeaderKey(k)] = v
		}
		if body != nil {
			hdr.Set("Content-Type", "application/json")
		}
		status, rb, err := c.roundTrip(ctx, cl, u, hdr, body)
		if err != nil {
			if errors.Is(err, errDone) {
				return 0, nil, err
			}
			return 0, nil, fmt.Errorf("servicenow: %s: %w", cl.op, err)
		}
		if status == http.StatusUnauthorized && !refreshed && c.auth.invalidate(authz) {
			c.log.Info("servicenow token rejected; refreshing", "op", cl.op)
			continue
		}
		return status, rb, nil
	}
}

// maxBody bounds what is read of one response.
const maxBody = 32 << 20

// roundTrip sends one request through the retrying client.
func (c *Client) roundTrip(ctx context.Context, cl call, u string, hdr http.Header, body []byte) (int, []byte, error) {
	p := &policy{retry: cl.retry, beforeRetry: cl.beforeRetry, maxRetryAfter: c.cfg.MaxRetryAfter}
	var raw any
	if body != nil {
		raw = body
	}
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, policyKey{}, p), cl.method, u, raw)
	if err != nil {
		return 0, nil, fmt.Errorf("build request: %w", err)
	}
	req.Header = hdr
	resp, err := c.http.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, fmt.Errorf("read response: %w", err)
	}
	return resp.StatusCode, rb, nil
}

// policy is one request's retry policy, carried in its context so that the
// shared retryablehttp client applies it.
type policy struct {
	retry         bool
	beforeRetry   func(ctx context.Context, lastStatus int) error
	maxRetryAfter time.Duration
	lastStatus    int // status of the latest attempt, 0 if it got no response
}

type policyKey struct{}

func policyFrom(ctx context.Context) *policy {
	p, _ := ctx.Value(policyKey{}).(*policy)
	return p
}

// checkRetry retries connection errors, 429 and 5xx (but not 501) for requests
// whose policy allows it, and gives up on a Retry-After longer than allowed.
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
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			if d, ok := retryAfter(resp.Header); ok && d > p.maxRetryAfter {
				return false, nil
			}
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

// backoff waits as Retry-After says on 429 and 503, and otherwise a capped
// exponential delay with jitter: uniformly in [min, min·2^attempt], at most max.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := retryAfter(resp.Header); ok {
			return d
		}
	}
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

// retryAfter reads a Retry-After header in seconds (or as an HTTP date).
func retryAfter(h http.Header) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > 1<<31 {
			return 0, false
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
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
