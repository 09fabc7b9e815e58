package teams

import (
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// partialLog remembers messages whose Send failed after some of their
// activities went out, so that the dispatcher's retry of the same message
// resumes instead of repeating them. It lives in memory: a restart forgets
// it, and then a retry repeats the parts already sent.
type partialLog struct {
	mu      sync.Mutex
	entries map[[32]byte]partialEntry
	order   [][32]byte // insertion order, for eviction
}

type partialEntry struct {
	sent    int    // activities already delivered
	firstID string // id of the first one
	at      time.Time
}

const (
	partialMaxEntries = 1000
	partialTTL        = time.Hour
)

func newPartialLog() *partialLog {
	return &partialLog{entries: map[[32]byte]partialEntry{}}
}

func partialKeyOf(ref bridge.ConversationRef, m bridge.UserMessage) [32]byte {
	b, _ := json.Marshal(struct {
		C bridge.ConversationID
		M bridge.UserMessage
	}{ref.Conversation, m})
	return sha256.Sum256(b)
}

// resume returns how many activities of the message were already sent and
// the id of the first, or 0, "" when none were.
func (p *partialLog) resume(k [32]byte) (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[k]
	if !ok || time.Since(e.at) > partialTTL {
		return 0, ""
	}
	return e.sent, e.firstID
}

func (p *partialLog) record(k [32]byte, sent int, firstID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.entries[k]; !ok {
		p.order = append(p.order, k)
	}
	p.entries[k] = partialEntry{sent: sent, firstID: firstID, at: time.Now()}
	for len(p.entries) > partialMaxEntries && len(p.order) > 0 {
		delete(p.entries, p.order[0])
		p.order = p.order[1:]
	}
}

func (p *partialLog) forget(k [32]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.entries, k)
	if len(p.order) > 2*partialMaxEntries {
		kept := p.order[:0]
		for _, o := range p.order {
			if _, ok := p.entries[o]; ok {
				kept = append(kept, o)
			}
		}
		p.order = kept
	}
}
