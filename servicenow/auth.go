package servicenow

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// authorizer produces the Authorization header: Basic, or an OAuth bearer
// token fetched from oauth_token.do, cached, renewed RefreshBefore its expiry,
// and renewed once more when the instance answers 401.
//
// No lock is held across the token request: one fetch runs at a time
// (singleflight) in its own goroutine, callers that have no usable token wait
// for it (each bounded by its own context), and while a token that is merely
// due for renewal is still valid it is served at once and renewed in the
// background. close cancels the fetch in flight and waits for it; no fetch
// starts after.
type authorizer struct {
	t        *transport
	user     string
	password string
	oauth    *OAuth // nil: Basic (or no auth without credentials)

	mu       sync.Mutex
	access   string
	refresh  string
	expiry   time.Time   // zero: no expiry given
	inflight *tokenFetch // the running fetch, nil if none
	gen      uint64      // bumped when the instance rejects the cached token
	closed   bool        // close was called: no fetch starts

	base    context.Context // the fetches' context, cancelled by close
	cancel  context.CancelFunc
	fetches sync.WaitGroup // the fetch goroutines
}

// errStopped is the error of a token wanted after the client stopped.
var errStopped = errors.New("servicenow: the client has stopped; no OAuth token request starts")

// tokenFetch is one token request that any number of callers may wait for.
type tokenFetch struct {
	done chan struct{}
	err  error
}

// tokenFetchTimeout bounds one background token request (with its retries).
const tokenFetchTimeout = 2 * time.Minute

func newAuthorizer(t *transport, user, password string, o *OAuth) *authorizer {
	base, cancel := context.WithCancel(context.Background())
	return &authorizer{t: t, user: user, password: password, oauth: o, base: base, cancel: cancel}
}

// close cancels the token fetch in flight, if any, waits for it to end and
// lets no other start.
func (a *authorizer) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.fetches.Wait()
}

func (a *authorizer) header(ctx context.Context) (string, error) {
	if a.oauth == nil {
		if a.user == "" && a.password == "" {
			return "", nil // no transport auth (allowed for the Virtual Agent API only)
		}
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(a.user+":"+a.password)), nil
	}
	for {
		a.mu.Lock()
		now := a.t.now()
		valid := a.access != "" && (a.expiry.IsZero() || now.Before(a.expiry))
		fresh := valid && (a.expiry.IsZero() || now.Before(a.expiry.Add(-a.oauth.RefreshBefore)))
		if fresh {
			tok := a.access
			a.mu.Unlock()
			return "Bearer " + tok, nil
		}
		f := a.startLocked()
		if valid {
			// Due for renewal but still valid: serve it; the fetch runs on.
			tok := a.access
			a.mu.Unlock()
			return "Bearer " + tok, nil
		}
		a.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return "", fmt.Errorf("servicenow: oauth token: %w", ctx.Err())
		}
		if f.err != nil {
			return "", f.err
		}
		// Loop: the fetched token is read under the lock (it may already
		// have been invalidated by a 401).
		a.mu.Lock()
		tok := a.access
		a.mu.Unlock()
		if tok != "" {
			return "Bearer " + tok, nil
		}
	}
}

// startLocked returns the running fetch or starts one. Callers hold a.mu.
func (a *authorizer) startLocked() *tokenFetch {
	if a.inflight != nil {
		return a.inflight
	}
	f := &tokenFetch{done: make(chan struct{})}
	if a.closed {
		f.err = errStopped
		close(f.done)
		return f
	}
	a.inflight = f
	refresh, gen := a.refresh, a.gen
	a.fetches.Add(1)
	go func() {
		defer a.fetches.Done()
		ctx, cancel := context.WithTimeout(a.base, tokenFetchTimeout)
		defer cancel()
		tr, err := a.fetch(ctx, refresh)
		a.mu.Lock()
		if gen != a.gen {
			// The instance rejected a token while this fetch ran: its answer
			// may predate the revocation, so a newer fetch decides.
			a.mu.Unlock()
			f.err = err
			close(f.done)
			return
		}
		if err == nil {
			a.access, a.expiry = tr.access, tr.expiry
			if tr.refresh != "" {
				a.refresh = tr.refresh
			}
		} else if refresh != "" && a.refresh == refresh {
			a.refresh = "" // fetch already fell back to the grant; forget it
		}
		f.err = err
		a.inflight = nil
		a.mu.Unlock()
		close(f.done)
	}()
	return f
}

// invalidate drops the cached token if it is the one in authz, so the next
// header call fetches a new one. It reports whether a retry can help.
func (a *authorizer) invalidate(authz string) bool {
	if a.oauth == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if "Bearer "+a.access == authz {
		a.access = ""
		a.gen++
		a.inflight = nil // a fetch already running may return a revoked token
	}
	return true
}

// token is one token answer.
type token struct {
	access, refresh string
	expiry          time.Time
}

// fetch gets a token: with the refresh token when there is one, else (or
// when that fails) with the configured grant. It holds no lock.
func (a *authorizer) fetch(ctx context.Context, refresh string) (token, error) {
	if refresh != "" {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}
		tr, err := a.request(ctx, form)
		if err == nil {
			return tr, nil
		}
		if ctx.Err() != nil {
			return token{}, err // stopped or out of time: the grant would fail too
		}
		a.t.log.Info("servicenow token refresh failed; requesting a new token", "err", err)
	}
	form := url.Values{"grant_type": {a.oauth.GrantType}}
	if a.oauth.GrantType == GrantPassword {
		form.Set("username", a.user)
		form.Set("password", a.password)
	}
	return a.request(ctx, form)
}

func (a *authorizer) request(ctx context.Context, form url.Values) (token, error) {
	o := a.oauth
	form.Set("client_id", o.ClientID)
	form.Set("client_secret", o.ClientSecret)
	const op = "oauth token"
	hdr := http.Header{"Accept": {"application/json"}, "Content-Type": {"application/x-www-form-urlencoded"}}
	now := a.t.now()
	// Creating a token twice is harmless, so the request is retried.
	ans, err := a.t.roundTrip(ctx, call{op: op, method: http.MethodPost, retry: true}, o.TokenURL, hdr, []byte(form.Encode()))
	if err != nil {
		return token{}, fmt.Errorf("servicenow: %s: %w", op, err)
	}
	if err := a.t.answerError(op, ans); err != nil {
		return token{}, err
	}
	return parseToken(ans.body, now, form.Get("grant_type"), a.t)
}

// parseToken reads an oauth_token.do answer.
func parseToken(body []byte, now time.Time, grant string, t *transport) (token, error) {
	const op = "oauth token"
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    field  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return token{}, fmt.Errorf("servicenow: %s: decode: %w", op, err)
	}
	if tr.AccessToken == "" {
		return token{}, fmt.Errorf("servicenow: %s: no access_token in the answer", op)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return token{}, fmt.Errorf("servicenow: %s: unsupported token_type %q", op, tr.TokenType)
	}
	out := token{access: tr.AccessToken, refresh: tr.RefreshToken}
	if n, err := strconv.ParseFloat(tr.ExpiresIn.Value, 64); err == nil && n > 0 && n < 1e9 {
		out.expiry = now.Add(time.Duration(n * float64(time.Second)))
	}
	t.log.Debug("servicenow token obtained", "grant_type", grant, "expires", out.expiry)
	return out, nil
}
