package servicenow

import "sync"

// memo remembers a value per message sys_id that costs a request to learn
// (its files, its ms creation time), so that rows a poll returns again at
// its cursor are not asked about again. It is bounded by maxMemo and cleared
// when full: the cost of forgetting is one more read per chunk of messages.
type memo[V any] struct {
	mu   sync.Mutex
	byID map[string]V
}

// maxMemo bounds each memo.
const maxMemo = 100_000

func (m *memo[V]) get(id string) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.byID[id]
	return v, ok
}

func (m *memo[V]) put(id string, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byID == nil || len(m.byID) >= maxMemo {
		m.byID = make(map[string]V)
	}
	m.byID[id] = v
}
