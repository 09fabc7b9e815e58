package bridge_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/bridgetest"
)

// memLeases is an in-memory LeaseStore without expiry: tests hand leases
// over explicitly with take.
type memLeases struct {
	mu      sync.Mutex
	holders map[string]string
	fail    bool
}

func (m *memLeases) take(name, holder string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holders == nil {
		m.holders = map[string]string{}
	}
	m.holders[name] = holder
}

func (m *memLeases) failing(f bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = f
}

func (m *memLeases) AcquireLease(_ context.Context, name, holder string, _ time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return false, errors.New("database unreachable")
	}
	if m.holders == nil {
		m.holders = map[string]string{}
	}
	if h := m.holders[name]; h != "" && h != holder {
		return false, nil
	}
	m.holders[name] = holder
	return true, nil
}

func (m *memLeases) ReleaseLease(_ context.Context, name, holder string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holders[name] == holder {
		m.holders[name] = ""
	}
	return nil
}

func (m *memLeases) holder(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.holders[name]
}

// TestLeader: takes free leases at once, keeps them through a failed
// renewal, gives them up locally before the database would, and releases
// them on shutdown.
func TestLeader(t *testing.T) {
	clock := bridgetest.NewClock(time.Unix(1000, 0))
	leases := &memLeases{}
	l, err := bridge.NewLeader(leases, bridge.LeaderConfig{Holder: "me", TTL: 15 * time.Second, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	poller := l.Job("poller")
	acquired := poller.Acquired()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	select {
	case <-acquired:
	case <-time.After(10 * time.Second):
		t.Fatal("a free lease was not taken")
	}
	if !poller.Held() || !l.Leads("poller") {
		t.Fatal("Held/Leads false after taking the lease")
	}
	if err := clock.WaitFor(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if w := clock.Waits(); w[0] != 5*time.Second {
		t.Fatalf("renews every %v, want TTL/3 = 5 s", w[0])
	}

	// One failed renewal: still the leader (local expiry 12 s after the last
	// good renewal); a second failure runs past it.
	leases.failing(true)
	clock.Advance(5 * time.Second)
	if err := clock.WaitFor(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !poller.Held() {
		t.Fatal("one failed renewal lost the lease")
	}
	clock.Advance(5 * time.Second)
	if err := clock.WaitFor(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second) // 12 s after the last good renewal
	if poller.Held() {
		t.Fatal("still leading past the local expiry (TTL - TTL/5) without a renewal")
	}
	acquired = poller.Acquired()
	leases.failing(false)
	clock.Advance(3 * time.Second)
	select {
	case <-acquired:
	case <-time.After(10 * time.Second):
		t.Fatal("the lease was not taken back after the database recovered")
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if h := leases.holder("poller"); h != "" {
		t.Fatalf("lease still held by %q after shutdown, want released", h)
	}
	if poller.Held() {
		t.Fatal("Held after shutdown")
	}
}
