package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

var errDead = errors.New("process crashed")

// crashSwitch models a process that dies between two durable steps: once
// tripped, every store transaction and every outward HTTP call of that
// process fails, as if it had been killed.
type crashSwitch struct {
	commits  atomic.Int64 // committed transactions of this process
	target   atomic.Int64 // crash after this many commits (0: not armed)
	inflight atomic.Int64 // outward HTTP calls under way
	dead     atomic.Bool
	died     chan struct{}
	once     sync.Once
}

func newCrashSwitch() *crashSwitch { return &crashSwitch{died: make(chan struct{})} }

// arm makes the process die after n more commits.
func (c *crashSwitch) arm(n int64) { c.target.Store(c.commits.Load() + n) }

// committed is called after each commit. The crash is taken at the first
// commit boundary at or past the target where no outward call is under way:
// a kill while a Teams send is on the wire can repeat that one send (Teams
// has no idempotency key), which the README states; every other step is
// crash-safe, and that is what this test proves.
func (c *crashSwitch) committed() {
	n := c.commits.Add(1)
	if t := c.target.Load(); t > 0 && n >= t && c.inflight.Load() == 0 {
		c.once.Do(func() { c.dead.Store(true); close(c.died) })
	}
}

type crashStore struct {
	bridge.Store
	sw *crashSwitch
}

func (s crashStore) Update(ctx context.Context, fn func(tx bridge.Tx) error) error {
	if s.sw.dead.Load() {
		return errDead
	}
	err := s.Store.Update(ctx, func(tx bridge.Tx) error {
		if s.sw.dead.Load() {
			return errDead
		}
		return fn(tx)
	})
	if err == nil {
		s.sw.committed()
	}
	return err
}

func (s crashStore) ClaimOutbox(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]bridge.OutboxItem, error) {
	if s.sw.dead.Load() {
		return nil, errDead
	}
	items, err := s.Store.ClaimOutbox(ctx, now, limit, lease)
	if err == nil && len(items) > 0 {
		s.sw.committed()
	}
	return items, err
}

type crashTransport struct{ sw *crashSwitch }

func (t crashTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.sw.dead.Load() {
		return nil, errDead
	}
	t.sw.inflight.Add(1)
	defer t.sw.inflight.Add(-1)
	return http.DefaultTransport.RoundTrip(r)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestCrashRecovery kills the service at random durable steps during a live
// session and restarts it on the same database: the conversation completes
// with nothing lost and nothing repeated.
func TestCrashRecovery(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 42))

	var (
		mu sync.Mutex
		sw = newCrashSwitch()
	)
	current := func() *crashSwitch { mu.Lock(); defer mu.Unlock(); return sw }
	ov := &overrides{
		httpClient: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) { return crashTransport{current()}.RoundTrip(r) })},
		wrapStore:  func(s bridge.Store) bridge.Store { return crashStore{Store: s, sw: current()} },
	}
	w := newWorld(t, worldOpts{ov: ov, extra: map[string]string{
		"HANDOFF_ADDR":                  freeAddr(t),
		"HANDOFF_DISPATCH_LEASE":        "2s",
		"HANDOFF_DISPATCH_MAX_ATTEMPTS": "20",
		"HANDOFF_LOG_LEVEL":             "warn",
	}})

	// The restarter: when the switch trips, stop the dead process and start a
	// new one on the same database.
	crashes := 0
	stopRestarter := make(chan struct{})
	go func() {
		for {
			s := current()
			select {
			case <-stopRestarter:
				return
			case <-s.died:
			}
			w.halt()
			mu.Lock()
			sw = newCrashSwitch()
			crashes++
			mu.Unlock()
			w.start()
		}
	}()
	defer close(stopRestarter)

	// arm schedules a crash a few commits into the next step.
	arm := func() { current().arm(1 + rng.Int64N(6)) }

	u := teamstest.NewUser("Crash Tester")
	const wait = 60 * time.Second
	// post delivers an activity the way Teams does: retried until the bot
	// answers 200 (the same activity id, so a retry is a no-op if it landed).
	post := func(a teamstest.Activity) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			code, err := w.ch().Post(context.Background(), a)
			if err == nil && code == 200 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("activity %q never accepted", a.Text)
	}

	arm()
	post(w.ch().Message(u, "hello"))
	w.waitUser(u, "IT helpdesk bot", wait)
	arm()
	post(w.ch().Message(u, "talk to live agent"))
	group := w.chatOf(u, wait)
	arm()
	if err := w.sn.Accept(group, agentName); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, snowtest.DefaultGreeting, wait)
	var userSaid, agentSaid []string
	for i := 1; i <= 4; i++ {
		arm()
		um := fmt.Sprintf("crash question %d", i)
		post(w.ch().Message(u, um))
		w.waitAgent(group, um, wait)
		userSaid = append(userSaid, um)
		arm()
		am := fmt.Sprintf("crash answer %d", i)
		if _, err := w.sn.Say(group, agentName, am); err != nil {
			t.Fatal(err)
		}
		w.waitUser(u, am, wait)
		agentSaid = append(agentSaid, am)
	}
	arm()
	if err := w.sn.CloseChat(group); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, bridge.DefaultTexts().BotBack, wait)
	arm()
	post(w.ch().Message(u, "hello again"))
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if l := w.userLines(u); strings.Contains(l[len(l)-1], "IT helpdesk bot") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	mu.Lock()
	n := crashes
	mu.Unlock()
	t.Logf("the service was killed and restarted %d times", n)
	if n < 3 {
		t.Fatalf("only %d crashes happened; the test did not exercise recovery", n)
	}

	lines := w.userLines(u)
	count := map[string]int{}
	for _, l := range lines {
		count[l]++
	}
	var agentSeen []string
	for _, l := range lines {
		if strings.HasPrefix(l, "crash answer") {
			agentSeen = append(agentSeen, l)
		}
	}
	if !slices.Equal(agentSeen, agentSaid) {
		t.Errorf("agent messages seen by the user %q, want %q", agentSeen, agentSaid)
	}
	for _, l := range []string{snowtest.DefaultGreeting, bridge.DefaultTexts().Connecting, bridge.DefaultTexts().AgentClosed, bridge.DefaultTexts().BotBack} {
		if count[l] != 1 {
			t.Errorf("user saw %q %d times, want once (all lines: %q)", l, count[l], lines)
		}
	}
	var relayed []string
	for _, g := range w.agentGot(group) {
		if strings.HasPrefix(g, "crash question") {
			relayed = append(relayed, g)
		}
	}
	if !slices.Equal(relayed, userSaid) {
		t.Errorf("agent got %q, want %q", relayed, userSaid)
	}
	if s := w.session(u); s.State != bridge.StateBot {
		t.Errorf("after the handback the conversation is in %s, want a new bot session", s.State)
	}
	if chats := w.sn.Chats(); len(chats) != 1 {
		t.Errorf("%d ServiceNow chats were opened, want 1", len(chats))
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
