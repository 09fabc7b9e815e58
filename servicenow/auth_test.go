package servicenow_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

const tokenRoute = "POST /oauth_token.do"

func oauthFake(t *testing.T) *snowtest.Instance {
	return newFake(t, snowtest.Options{
		Now: t0,
		Users: []snowtest.User{
			{UserName: snowtest.DefaultUser, Password: snowtest.DefaultPassword, Name: snowtest.DefaultUserName},
		},
		OAuthClients: []snowtest.OAuthClient{{ID: "bridge-client", Secret: "client-secret", User: "handoff.oauth"}},
	})
}

func TestAuthModes(t *testing.T) {
	tests := []struct {
		name       string
		mod        func(*servicenow.Config)
		bridgeUser string
		tokens     int // token requests expected
		err        error
	}{
		{name: "basic", bridgeUser: snowtest.DefaultUser},
		{name: "basic wrong password", mod: func(c *servicenow.Config) { c.Password = "nope" }, err: bridge.ErrUnauthorized},
		{name: "oauth password", bridgeUser: snowtest.DefaultUser, tokens: 1, mod: func(c *servicenow.Config) {
			c.OAuth = &servicenow.OAuth{GrantType: servicenow.GrantPassword, ClientID: "bridge-client", ClientSecret: "client-secret"}
		}},
		{name: "oauth password wrong user password", tokens: 1, err: bridge.ErrUnauthorized, mod: func(c *servicenow.Config) {
			c.Password = "nope"
			c.OAuth = &servicenow.OAuth{GrantType: servicenow.GrantPassword, ClientID: "bridge-client", ClientSecret: "client-secret"}
		}},
		{name: "oauth client credentials", bridgeUser: "handoff.oauth", tokens: 1, mod: func(c *servicenow.Config) {
			c.Username, c.Password, c.BridgeUser = "", "", "handoff.oauth"
			c.OAuth = &servicenow.OAuth{GrantType: servicenow.GrantClientCredentials, ClientID: "bridge-client", ClientSecret: "client-secret"}
		}},
		{name: "oauth wrong client secret", tokens: 1, err: bridge.ErrUnauthorized, mod: func(c *servicenow.Config) {
			c.Username, c.Password, c.BridgeUser = "", "", "handoff.oauth"
			c.OAuth = &servicenow.OAuth{GrantType: servicenow.GrantClientCredentials, ClientID: "bridge-client", ClientSecret: "wrong"}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := oauthFake(t)
			c := newClient(t, in, tc.mod)
			ctx := context.Background()
			oc, err := c.Open(ctx, bridge.Handoff{Session: "s-1", UserName: "Abel Tuter"})
			chat := oc.ID
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !bridge.IsPermanent(err) {
					t.Fatalf("Open: %v, want %v", err, tc.err)
				}
				var se *bridge.StatusError
				if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || se.Message == "" {
					t.Errorf("Open: %v, want a 401 StatusError with the instance's message", err)
				}
			} else {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if err := c.Send(ctx, dc(chat), bridge.DeskMessage{Text: "hello"}); err != nil {
					t.Fatalf("Send: %v", err)
				}
				msgs := in.Messages(string(chat))
				if by := msgs[len(msgs)-1].CreatedBy; by != tc.bridgeUser {
					t.Errorf("created_by %q, want %q", by, tc.bridgeUser)
				}
				evs := must[[]bridge.AgentEvent](t)(c.Poll(ctx, chat, time.Time{}))
				for _, e := range evs {
					if e.Kind == bridge.AgentMessage && !e.Echo {
						t.Errorf("own message %+v not recognised as an echo", e)
					}
				}
			}
			if got := in.Requests()[tokenRoute]; got != tc.tokens {
				t.Errorf("%d token requests, want %d (the token is cached)", got, tc.tokens)
			}
		})
	}
}

// TestOAuthRefresh: a token is renewed before it expires without a 401, and
// once more when the instance rejects it.
func TestOAuthRefresh(t *testing.T) {
	for _, grant := range []string{servicenow.GrantPassword, servicenow.GrantClientCredentials} {
		t.Run(grant, func(t *testing.T) {
			in := oauthFake(t)
			var st statusCounter
			rec := &authRecorder{next: &st}
			c := newClient(t, in, func(c *servicenow.Config) {
				c.Now = in.Now
				c.HTTPClient = &http.Client{Transport: rec}
				c.OAuth = &servicenow.OAuth{GrantType: grant, ClientID: "bridge-client", ClientSecret: "client-secret"}
				if grant == servicenow.GrantClientCredentials {
					c.Username, c.Password, c.BridgeUser = "", "", "handoff.oauth"
				}
			})
			ctx := context.Background()
			queues := func() {
				t.Helper()
				if _, err := c.Queues(ctx); err != nil {
					t.Fatalf("Queues: %v", err)
				}
			}
			queues()
			queues()
			if n := in.Requests()[tokenRoute]; n != 1 {
				t.Fatalf("%d token requests, want 1", n)
			}

			// 1799 s tokens are renewed 60 s early (in the background, while
			// the valid token is still served): no 401 is ever seen.
			in.Advance(snowtest.DefaultTokenTTL - 30*time.Second)
			first := rec.last()
			queues()
			eventually(t, func() bool { queues(); return rec.last() != first }, "the renewed token in use")
			if n := in.Requests()[tokenRoute]; n != 2 {
				t.Errorf("%d token requests after nearing expiry, want 2", n)
			}
			if n := st.count(http.StatusUnauthorized); n != 0 {
				t.Errorf("%d 401 answers before the forced refresh, want 0", n)
			}

			// A revoked token: one 401, one refresh, success.
			in.RevokeTokens()
			queues()
			if n := in.Requests()[tokenRoute]; n != 3 {
				t.Errorf("%d token requests after revocation, want 3", n)
			}
			if n := st.count(http.StatusUnauthorized); n != 1 {
				t.Errorf("%d 401 answers, want 1", n)
			}

			// A token past its expiry (the clock jumped) is refused by the
			// instance only if the client did not renew it first.
			in.Advance(2 * snowtest.DefaultTokenTTL)
			queues()
			if n := st.count(http.StatusUnauthorized); n != 1 {
				t.Errorf("%d 401 answers after expiry, want still 1", n)
			}
		})
	}
}

// TestOAuthExpiryEnforced: the fake refuses an expired token; the client
// recovers with one refresh on the 401.
func TestOAuthExpiryEnforced(t *testing.T) {
	in := oauthFake(t)
	var st statusCounter
	clientNow := t0
	c := newClient(t, in, func(c *servicenow.Config) {
		c.Now = func() time.Time { return clientNow } // a client clock that lags the instance
		c.HTTPClient = &http.Client{Transport: &st}
		c.OAuth = &servicenow.OAuth{GrantType: servicenow.GrantPassword, ClientID: "bridge-client", ClientSecret: "client-secret"}
	})
	if _, err := c.Queues(context.Background()); err != nil {
		t.Fatal(err)
	}
	in.Advance(snowtest.DefaultTokenTTL + time.Second)
	if _, err := c.Queues(context.Background()); err != nil {
		t.Fatalf("Queues with an expired token: %v", err)
	}
	if n := st.count(http.StatusUnauthorized); n != 1 {
		t.Errorf("%d 401 answers, want 1", n)
	}
	if n := in.Requests()[tokenRoute]; n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}
}

// authRecorder remembers the Authorization header of the latest API request
// (token requests aside).
type authRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	auth string
}

func (a *authRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path != "/oauth_token.do" {
		a.mu.Lock()
		a.auth = r.Header.Get("Authorization")
		a.mu.Unlock()
	}
	return a.next.RoundTrip(r)
}

func (a *authRecorder) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.auth
}

// eventually polls cond every 10 ms for up to 20 s.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gate blocks the token endpoint until released.
type gate struct {
	in      *snowtest.Instance
	release chan struct{}
	waiting atomic.Int32 // token requests that came to the gate
	held    atomic.Int32 // token requests at the gate now
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/oauth_token.do" {
		// Read the body first: only then does the server notice a client
		// that hangs up (r.Context ends).
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		g.waiting.Add(1)
		g.held.Add(1)
		select {
		case <-g.release:
			g.held.Add(-1)
		case <-r.Context().Done():
			g.held.Add(-1)
			return
		}
	}
	g.in.Handler().ServeHTTP(w, r)
}

// TestOAuthRefreshDoesNotBlock: no lock is held across the token request.
// While a token due for renewal is renewed against a token endpoint that
// hangs, requests go on with the still-valid token; without any token,
// concurrent callers share one token request, and a caller whose context
// ends returns at once while the request runs on.
func TestOAuthRefreshDoesNotBlock(t *testing.T) {
	in := oauthFake(t)
	g := &gate{in: in, release: make(chan struct{})}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	c := newClient(t, in, func(c *servicenow.Config) {
		c.InstanceURL = srv.URL
		c.Now = in.Now
		c.OAuth = &servicenow.OAuth{GrantType: servicenow.GrantPassword, ClientID: "bridge-client", ClientSecret: "client-secret"}
	})
	ctx := context.Background()

	// No token yet: three callers, one token request; a cancelled caller
	// leaves at once.
	errs := make(chan error, 3)
	for range 3 {
		go func() { _, err := c.Queues(ctx); errs <- err }()
	}
	eventually(t, func() bool { return g.waiting.Load() == 1 }, "the token request")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Queues(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	close(g.release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("Queues: %v", err)
		}
	}
	if n := in.Requests()[tokenRoute]; n != 1 {
		t.Errorf("%d token requests for three waiting callers, want 1", n)
	}

	// Due for renewal: the token endpoint hangs, requests do not.
	g.release = make(chan struct{})
	g.waiting.Store(0)
	in.Advance(snowtest.DefaultTokenTTL - 30*time.Second)
	done := make(chan error, 1)
	go func() {
		for range 5 {
			if _, err := c.Queues(ctx); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Queues while the token is renewed: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("requests blocked while the token endpoint hangs: a lock is held across the token request")
	}
	eventually(t, func() bool { return g.waiting.Load() >= 1 }, "the background renewal")
	if g.waiting.Load() != 1 {
		t.Errorf("%d token requests started during renewal, want 1", g.waiting.Load())
	}
	close(g.release)
}

// When Run's context ends, a token renewal still running is cancelled and
// over before Run returns, and none starts after: a request that then needs
// a token fails and says why.
func TestRunStopsTokenFetch(t *testing.T) {
	in := oauthFake(t)
	g := &gate{in: in, release: make(chan struct{})}
	close(g.release)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	c, err := servicenow.New(servicenow.Config{InstanceURL: srv.URL, Username: snowtest.DefaultUser, Password: snowtest.DefaultPassword,
		// A request timeout beyond eventually's 20 s: only a cancel ends the held request in time.
		Queue: snowtest.DefaultQueue, Timeout: time.Minute, Now: in.Now, Logger: testLogger(t),
		OAuth: &servicenow.OAuth{GrantType: servicenow.GrantPassword, ClientID: "bridge-client", ClientSecret: "client-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	if _, err := c.Queues(context.Background()); err != nil {
		t.Fatalf("Queues: %v", err)
	}

	g.release = make(chan struct{})
	t.Cleanup(func() { close(g.release) })
	in.Advance(snowtest.DefaultTokenTTL - 30*time.Second) // due for renewal, still valid
	if _, err := c.Queues(context.Background()); err != nil {
		t.Fatalf("Queues with a token due for renewal: %v", err)
	}
	eventually(t, func() bool { return g.held.Load() == 1 }, "the background renewal")
	stop()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return while a token renewal hung")
	}
	eventually(t, func() bool { return g.held.Load() == 0 }, "the renewal's request cancelled")

	in.Advance(time.Minute) // the token has expired
	tokens := g.waiting.Load()
	if _, err := c.Queues(context.Background()); err == nil || !strings.Contains(err.Error(), "client has stopped") {
		t.Errorf("Queues after Run: %v, want the client's stop named", err)
	}
	if n := g.waiting.Load(); n != tokens {
		t.Errorf("%d token requests after Run returned, want none", n-tokens)
	}
}
