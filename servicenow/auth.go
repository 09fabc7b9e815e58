package servicenow

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// authorizer produces the Authorization header: Basic, or an OAuth bearer token
// fetched from oauth_token.do, cached, renewed RefreshBefore its expiry, and
// renewed once more when the instance answers 401.
type authorizer struct {
	c *Client

	mu      sync.Mutex
	access  string
	refresh string
	expiry  time.Time // zero: no expiry given
}

func (a *authorizer) header(ctx context.Context) (string, error) {
	cfg := a.c.cfg
	if cfg.OAuth == nil {
		if cfg.Username == "" && cfg.Password == "" {
			return "", nil // no transport auth (allowed for the Virtual Agent API only)
		}
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+cfg.Password)), nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.c.now()
	if a.access != "" && (a.expiry.IsZero() || now.Before(a.expiry.Add(-cfg.OAuth.RefreshBefore))) {
		return "Bearer " + a.access, nil
	}
	if err := a.fetch(ctx, now); err != nil {
		return "", err
	}
	return "Bearer " + a.access, nil
}

// invalidate drops the cached token if it is the one in authz, so the next
// header call fetches a new one. It reports whether a retry can help.
func (a *authorizer) invalidate(authz string) bool {
	if a.c.cfg.OAuth == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if "Bearer "+a.access == authz {
		a.access = ""
	}
	return true
}

// fetch gets a token: with the refresh token when there is one, else (or when
// that fails) with the configured grant. Callers hold a.mu.
func (a *authorizer) fetch(ctx context.Context, now time.Time) error {
	o := a.c.cfg.OAuth
	if a.refresh != "" {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.refresh}}
		err := a.token(ctx, now, form)
		if err == nil {
			return nil
		}
		a.c.log.Info("servicenow token refresh failed; requesting a new token", "error", err)
		a.refresh = ""
	}
	form := url.Values{"grant_type": {o.GrantType}}
	if o.GrantType == GrantPassword {
		form.Set("username", a.c.cfg.Username)
		form.Set("password", a.c.cfg.Password)
	}
	return a.token(ctx, now, form)
}

func (a *authorizer) token(ctx context.Context, now time.Time, form url.Values) error {
	o := a.c.cfg.OAuth
	form.Set("client_id", o.ClientID)
	form.Set("client_secret", o.ClientSecret)
	const op = "oauth token"
	hdr := http.Header{"Accept": {"application/json"}, "Content-Type": {"application/x-www-form-urlencoded"}}
	// Creating a token twice is harmless, so the request is retried.
	status, body, err := a.c.roundTrip(ctx, call{op: op, method: http.MethodPost, retry: true}, o.TokenURL, hdr, []byte(form.Encode()))
	if err != nil {
		return fmt.Errorf("servicenow: %s: %w", op, err)
	}
	if status < 200 || status > 299 {
		return statusError(op, status, body)
	}
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    field  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return fmt.Errorf("servicenow: %s: decode: %w", op, err)
	}
	if tr.AccessToken == "" {
		return fmt.Errorf("servicenow: %s: no access_token in the answer", op)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return fmt.Errorf("servicenow: %s: unsupported token_type %q", op, tr.TokenType)
	}
	a.access, a.expiry = tr.AccessToken, time.Time{}
	if tr.RefreshToken != "" {
		a.refresh = tr.RefreshToken
	}
	if n, err := strconv.ParseFloat(tr.ExpiresIn.Value, 64); err == nil && n > 0 && n < 1e9 {
		a.expiry = now.Add(time.Duration(n * float64(time.Second)))
	}
	a.c.log.Debug("servicenow token obtained", "grant_type", form.Get("grant_type"), "expires", a.expiry)
	return nil
}
