package teams

import (
	"container/list"
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/handoffhq/handoff/bridge"
)

// Limit is a rate limit: at most N requests in any window of length Per.
type Limit struct {
	N   int
	Per time.Duration
}

// Teams' documented limits for sending to a conversation, per bot and thread
// (learn.microsoft.com/microsoftteams/platform/bots/how-to/rate-limit), and
// its global limit per app and tenant.
var (
	TeamsConversationLimits = []Limit{{7, time.Second}, {8, 2 * time.Second}, {60, 30 * time.Second}, {1800, time.Hour}}
	TeamsAppLimits          = []Limit{{50, time.Second}}
)

// Pacing configures how Client spaces out its requests so that Teams does not
// throttle it. Each Limit becomes a token bucket holding up to N/4 tokens
// (at least 1) and refilling at 80% of the rate that would still respect the
// window, which leaves head-room for network jitter: the bucket guarantees
// at most burst + rate×Per requests in any window, comfortably below N.
type Pacing struct {
	// Conversation limits apply per conversation. Default
	// TeamsConversationLimits.
	Conversation []Limit
	// App limits apply to all requests of the client. Default TeamsAppLimits.
	App []Limit
	// MaxConversations bounds the per-conversation state kept; the least
	// recently used idle conversation is forgotten first. Default 10000.
	MaxConversations int
}

// pacingMargin is the share of the window's rate the buckets refill at.
const pacingMargin = 0.8

func (l Limit) bucket() *rate.Limiter {
	burst := max(1, l.N/4)
	refill := l.N - burst
	if refill <= 0 {
		refill = l.N
	}
	per := l.Per
	if per <= 0 {
		per = time.Second
	}
	r := rate.Limit(float64(refill) / per.Seconds() * pacingMargin)
	lim := rate.NewLimiter(r, burst)
	return lim
}

// pacer holds the token buckets and a send lock per conversation, so that
// one conversation's activities leave in order and within its limits.
type pacer struct {
	limits []Limit
	max    int

	mu    sync.Mutex // guards everything below and every bucket's tokens
	app   []*rate.Limiter
	convs map[bridge.ConversationID]*list.Element // of *convPace
	lru   *list.List                              // front: most recently used
}

type convPace struct {
	id      bridge.ConversationID
	buckets []*rate.Limiter
	lock    chan struct{} // send lock: holds a token while a Send runs
	users   int           // acquirers holding or waiting; 0 = evictable
}

func newPacer(p Pacing) *pacer {
	if p.Conversation == nil {
		p.Conversation = TeamsConversationLimits
	}
	if p.App == nil {
		p.App = TeamsAppLimits
	}
	if p.MaxConversations <= 0 {
		p.MaxConversations = 10000
	}
	pc := &pacer{limits: p.Conversation, max: p.MaxConversations, convs: map[bridge.ConversationID]*list.Element{}, lru: list.New()}
	for _, l := range p.App {
		pc.app = append(pc.app, l.bucket())
	}
	return pc
}

// entry returns the conversation's state, creating it (and evicting the least
// recently used idle one when full), and counts the caller as a user.
func (p *pacer) entry(id bridge.ConversationID) *convPace {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.convs[id]; ok {
		p.lru.MoveToFront(el)
		cp := el.Value.(*convPace)
		cp.users++
		return cp
	}
	for el := p.lru.Back(); el != nil && len(p.convs) >= p.max; {
		prev := el.Prev()
		if cp := el.Value.(*convPace); cp.users == 0 {
			p.lru.Remove(el)
			delete(p.convs, cp.id)
		}
		el = prev
	}
	cp := &convPace{id: id, lock: make(chan struct{}, 1), users: 1}
	for _, l := range p.limits {
		cp.buckets = append(cp.buckets, l.bucket())
	}
	p.convs[id] = p.lru.PushFront(cp)
	return cp
}

func (p *pacer) done(cp *convPace) {
	p.mu.Lock()
	cp.users--
	p.mu.Unlock()
}

// acquire takes the conversation's send lock, waiting until it is free or ctx
// ends. The returned function releases it.
func (p *pacer) acquire(ctx context.Context, id bridge.ConversationID) (*convPace, func(), error) {
	cp := p.entry(id)
	select {
	case cp.lock <- struct{}{}:
		return cp, func() { <-cp.lock; p.done(cp) }, nil
	case <-ctx.Done():
		p.done(cp)
		return nil, nil, ctx.Err()
	}
}

// tryAcquire takes the send lock only if it is free.
func (p *pacer) tryAcquire(id bridge.ConversationID) (*convPace, func(), bool) {
	cp := p.entry(id)
	select {
	case cp.lock <- struct{}{}:
		return cp, func() { <-cp.lock; p.done(cp) }, true
	default:
		p.done(cp)
		return nil, nil, false
	}
}

// take consumes one token from every bucket of cp and of the app if all have
// one now; otherwise it consumes nothing and returns how long to wait.
func (p *pacer) take(cp *convPace) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var wait time.Duration
	for _, b := range append(cp.buckets[:len(cp.buckets):len(cp.buckets)], p.app...) {
		if t := b.TokensAt(now); t < 1 {
			d := time.Duration((1 - t) / float64(b.Limit()) * float64(time.Second))
			wait = max(wait, d+time.Millisecond)
		}
	}
	if wait > 0 {
		return wait
	}
	for _, b := range cp.buckets {
		b.AllowN(now, 1)
	}
	for _, b := range p.app {
		b.AllowN(now, 1)
	}
	return 0
}

// wait blocks until a request to cp's conversation may leave, and consumes the
// tokens for it.
func (p *pacer) wait(ctx context.Context, cp *convPace) error {
	for {
		d := p.take(cp)
		if d == 0 {
			return nil
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
