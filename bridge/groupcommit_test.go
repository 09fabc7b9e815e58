package bridge

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// memStore is a Store whose transactions write to a log that is kept only
// when the transaction's function succeeds. The first Update waits on hold
// (when set) after telling entered, so a test can queue outcomes behind it.
type memStore struct {
	Store     // nil: only Update is used
	mu        sync.Mutex
	committed []string
	updates   int
	entered   chan struct{}
	hold      chan struct{}
}

type memTx struct {
	Tx  // nil: the test's functions only write the log
	log *[]string
}

func (s *memStore) SerialWrites() bool { return true }

func (s *memStore) Update(ctx context.Context, fn func(tx Tx) error) error {
	s.mu.Lock()
	s.updates++
	first := s.updates == 1
	s.mu.Unlock()
	if first && s.hold != nil {
		close(s.entered)
		<-s.hold
	}
	var log []string
	if err := fn(memTx{log: &log}); err != nil {
		return err
	}
	s.mu.Lock()
	s.committed = append(s.committed, log...)
	s.mu.Unlock()
	return nil
}

func write(name string, err error) commitFunc {
	return func(_ context.Context, tx Tx, _ time.Time) error {
		*tx.(memTx).log = append(*tx.(memTx).log, name)
		return err
	}
}

// TestCommitGroup: outcomes recorded while another commit runs share the
// next transaction; when one of them fails, only that one fails and the
// others are committed on their own, each exactly once.
func TestCommitGroup(t *testing.T) {
	errLost := errors.New("lease lost")
	for _, tt := range []struct {
		name        string
		queued      map[string]error // the outcomes queued behind the first
		wantUpdates int
	}{
		{"all succeed", map[string]error{"b": nil, "c": nil, "d": nil}, 2},       // a; b+c+d
		{"one fails", map[string]error{"b": nil, "c": errLost, "d": nil}, 2 + 3}, // a; b+c+d rolled back; b, c, d alone
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := &memStore{entered: make(chan struct{}), hold: make(chan struct{})}
			d := NewDispatcher(NewRelay(st, nil, nil, nil, nil, RelayConfig{}), DispatchConfig{})
			ctx := context.Background()
			results := map[string]error{}
			var (
				mu sync.Mutex
				wg sync.WaitGroup
			)
			commit := func(name string, err error) {
				wg.Go(func() {
					got := d.commitGroup(ctx, write(name, err))
					mu.Lock()
					results[name] = got
					mu.Unlock()
				})
			}
			commit("a", nil)
			<-st.entered // a leads and holds the store
			for name, err := range tt.queued {
				commit(name, err)
			}
			for {
				d.gmu.Lock()
				n := len(d.gqueue)
				d.gmu.Unlock()
				if n == len(tt.queued) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			close(st.hold)
			wg.Wait()

			want := []string{"a"}
			for name, err := range tt.queued {
				if !errors.Is(results[name], err) {
					t.Errorf("%s: got %v, want %v", name, results[name], err)
				}
				if err == nil {
					want = append(want, name)
				}
			}
			if results["a"] != nil {
				t.Errorf("a: %v", results["a"])
			}
			slices.Sort(want)
			got := slices.Clone(st.committed)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("committed %q, want %q (each success once, no failure)", got, want)
			}
			if st.updates != tt.wantUpdates {
				t.Errorf("%d transactions, want %d", st.updates, tt.wantUpdates)
			}
			if d.gbusy || len(d.gqueue) != 0 {
				t.Errorf("group commit left busy=%v queue=%d", d.gbusy, len(d.gqueue))
			}
		})
	}
}
