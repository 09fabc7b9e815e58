package servicenow_test

import (
	"context"
	"errors"
	"net/http"
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
			chat, err := c.Open(ctx, bridge.Handoff{Session: "s-1", UserName: "Abel Tuter"})
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
				if err := c.Send(ctx, chat, bridge.DeskMessage{Text: "hello"}); err != nil {
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
			c := newClient(t, in, func(c *servicenow.Config) {
				c.Now = in.Now
				c.HTTPClient = &http.Client{Transport: &st}
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

			// 1799 s tokens are renewed 60 s early: no 401 is ever seen.
			in.Advance(snowtest.DefaultTokenTTL - 30*time.Second)
			queues()
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
