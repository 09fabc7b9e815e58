package teams

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/teams/teamstest"
)

// A request whose token names an unknown kid but would fail anyway, or that
// is forged with plausible claims, must not keep a genuine rotation out: the
// genuine token is accepted, not refused for the rest of a rate-limit window.
func TestJunkUnknownKidDoesNotDelayRotation(t *testing.T) {
	f := newHandlerFixture(t, func(c *HandlerConfig) { c.KeyRefetchSpacing = 200 * time.Millisecond })
	ctx := context.Background()
	if status, err := f.channel.Post(ctx, f.channel.Message(f.user, "warm the cache")); err != nil || status != http.StatusOK {
		t.Fatalf("first request: %d %v", status, err)
	}
	junk := []struct {
		name string
		tok  string
	}{
		{"garbage claims", f.issuer.Sign(teamstest.Claims{Audience: "other-bot", Key: f.issuer.UnpublishedKey()})},
		{"plausible claims, forged key", f.issuer.Sign(teamstest.Claims{Audience: testAppID, ServiceURL: f.channel.ServiceURL, Key: f.issuer.UnpublishedKey()})},
	}
	for _, j := range junk {
		t.Run(j.name, func(t *testing.T) {
			status, err := f.channel.PostWithAuth(ctx, f.channel.Message(f.user, "junk"), teamstest.Bearer(j.tok))
			if err != nil || status != http.StatusUnauthorized {
				t.Fatalf("junk: %d %v, want 401", status, err)
			}
			// Microsoft publishes a new key and signs with it right away.
			newKey, _ := f.issuer.Rotate()
			genuine := f.issuer.Sign(teamstest.Claims{Audience: testAppID, ServiceURL: f.channel.ServiceURL, Key: newKey})
			status, err = f.channel.PostWithAuth(ctx, f.channel.Message(f.user, "genuine"), teamstest.Bearer(genuine))
			if err != nil || status != http.StatusOK {
				t.Fatalf("genuine token of the new key right after junk: %d %v, want 200", status, err)
			}
		})
	}
	if got := len(f.inbox.all()); got != 3 {
		t.Fatalf("inbox holds %d activities, want 3", got)
	}
}

// gatedTransport holds requests for the JWKS while the gate is closed.
type gatedTransport struct {
	jwksURL string
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	entered chan struct{} // receives when a request is held
}

func (g *gatedTransport) close() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedTransport) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gatedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil && strings.HasPrefix(r.URL.String(), g.jwksURL) {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// While a fetch of the key set hangs, requests with cached keys are answered:
// the key set's lock is never held across the network.
func TestSlowKeyFetchDoesNotBlockRequests(t *testing.T) {
	f := newHandlerFixture(t, func(c *HandlerConfig) { c.KeyRefetchSpacing = time.Millisecond })
	gt := &gatedTransport{jwksURL: f.issuer.JWKSURL(), entered: make(chan struct{}, 1)}
	f.handler.keys.client = &http.Client{Transport: gt}
	ctx := context.Background()
	post := func(ctx context.Context, tok string) (int, error) {
		return f.channel.PostWithAuth(ctx, f.channel.Message(f.user, "hi"), teamstest.Bearer(tok))
	}
	if status, err := post(ctx, f.channel.Token(teamstest.TokenValid)); err != nil || status != http.StatusOK {
		t.Fatalf("first request: %d %v", status, err)
	}
	t.Cleanup(gt.open)

	tests := []struct {
		name    string
		trigger func(ctx context.Context) // starts a fetch that hangs
	}{
		{"refetch for an unknown kid", func(ctx context.Context) {
			_, _ = post(ctx, f.channel.Token(teamstest.TokenUnknownKey))
		}},
		{"daily refresh", func(ctx context.Context) {
			f.clock.Advance(25 * time.Hour)
			_, _ = post(ctx, f.channel.Token(teamstest.TokenValid))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gt.close()
			triggered := make(chan struct{})
			defer func() { gt.open(); <-triggered }() // the hung fetch finishes before the next case
			go func() { defer close(triggered); tt.trigger(ctx) }()
			select {
			case <-gt.entered:
			case <-time.After(30 * time.Second):
				t.Fatal("no fetch of the key set started")
			}
			rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
			defer rcancel()
			status, err := post(rctx, f.channel.Token(teamstest.TokenValid))
			if err != nil || status != http.StatusOK {
				t.Fatalf("request with a cached key while a fetch hangs: %d %v, want 200", status, err)
			}
		})
	}
}

// Run fetches the key set at once and again every KeyRefresh, and returns nil
// when its context ends.
func TestHandlerRunRefreshesKeys(t *testing.T) {
	f := newHandlerFixture(t, func(c *HandlerConfig) {
		c.KeyRefresh = 10 * time.Millisecond
		c.KeyRefetchSpacing = time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.handler.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for f.issuer.Counts().JWKS < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("JWKS fetched %d times in 30 s, want 3 or more", f.issuer.Counts().JWKS)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A key published meanwhile is known without any request having asked.
	newKey, _ := f.issuer.Rotate()
	for {
		f.handler.keys.mu.Lock()
		_, ok := f.handler.keys.keys[newKey.ID]
		f.handler.keys.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background refresh never picked up the new key")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopRun(t, cancel, done)
}

// stopRun cancels a running Handler.Run and wants it to return nil within
// 30 s.
func stopRun(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop within 30 s")
	}
}

// When Run returns nothing of the key set runs any more: the fetch a
// request started is cancelled and over (its request refused: 503), and a
// later request starts none.
func TestHandlerRunStopsKeyFetches(t *testing.T) {
	f := newHandlerFixture(t, func(c *HandlerConfig) { c.KeyRefetchSpacing = time.Millisecond })
	gt := &gatedTransport{jwksURL: f.issuer.JWKSURL(), entered: make(chan struct{}, 1)}
	f.handler.keys.client = &http.Client{Transport: gt}
	gt.close()
	t.Cleanup(gt.open)
	answered := make(chan int, 1)
	go func() {
		status, _ := f.channel.Post(context.Background(), f.channel.Message(f.user, "hi"))
		answered <- status
	}()
	select {
	case <-gt.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first request started no fetch of the key set")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.handler.Run(ctx) }()
	stopRun(t, cancel, done) // while the fetch hangs
	f.handler.keys.mu.Lock()
	inflight := f.handler.keys.inflight
	f.handler.keys.mu.Unlock()
	if inflight != nil {
		t.Fatal("a fetch of the key set still runs after Run returned")
	}
	if status := <-answered; status != http.StatusServiceUnavailable {
		t.Errorf("the request whose fetch was cancelled: %d, want 503", status)
	}
	jwks := f.issuer.Counts().JWKS
	if status, err := f.channel.Post(context.Background(), f.channel.Message(f.user, "again")); err != nil || status != http.StatusServiceUnavailable {
		t.Errorf("a request after Run: %d %v, want 503", status, err)
	}
	select {
	case <-gt.entered:
		t.Error("a request after Run started a fetch")
	default:
	}
	if n := f.issuer.Counts().JWKS; n != jwks {
		t.Errorf("JWKS fetched %d times after Run returned", n-jwks)
	}
}
