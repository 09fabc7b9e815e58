package teams

import (
	"container/list"
	"context"
	"sync"
	"time"

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
// throttle it.
//
// Each Limit is kept exactly, as a log of the requests sent inside its
// window: a request may leave when fewer than N left in the last Per/Share.
// Stretching the window instead of shrinking N keeps the sustained rate at
// Share of the documented limit for small N too (7 per second at 0.95 is
// 6.65/s, where a count of floor(0.95×7) = 6 would be 86%), and the stretch
// (at least Guard) is the room left for network jitter between our clock and
// the connector's.
//
// The pacing learns from throttling: a 429 halves the share of the
// conversation and of its tenant (down to a quarter), and every request sent
// without one grows it back by 2% of the limit, so a connector that is
// stricter than documented is met within a few requests and a transient storm
// is forgotten within a few seconds.
type Pacing struct {
	// Conversation limits apply per conversation. Default
	// TeamsConversationLimits.
	Conversation []Limit
	// App limits apply per app and tenant (Teams counts them per tenant, so
	// one busy tenant does not slow another down). Default TeamsAppLimits.
	App []Limit
	// Share is the fraction of each limit used when nothing is throttled.
	// Default 0.95; values above 1 are treated as 1.
	Share float64
	// Guard is the least time added to each window for jitter. Default 50ms.
	Guard time.Duration
	// MaxConversations bounds the per-conversation state kept; the least
	// recently used idle conversation is forgotten first. Default 10000.
	MaxConversations int
	// Off disables pacing entirely (benchmarks that measure the engine, not
	// Teams' limits). Never set it against the real Teams.
	Off bool
}

const (
	defaultShare = 0.95
	defaultGuard = 50 * time.Millisecond
	// minScale is the least share of a limit the pacing falls to after 429s.
	minScale = 0.25
	// recoverStep is how much of a limit every clean request wins back.
	recoverStep = 0.02
)

// window is one Limit kept as a log of the requests inside it.
type window struct {
	n    int
	per  time.Duration // the stretched window
	sent []time.Time   // oldest first, only those within per of the last look
}

func newWindow(l Limit, share float64, guard time.Duration) *window {
	per := l.Per
	if per <= 0 {
		per = time.Second
	}
	per = max(time.Duration(float64(per)/share), per+guard)
	return &window{n: max(1, l.N), per: per}
}

// wait returns how long until one more request fits at the given scale.
func (w *window) wait(now time.Time, scale float64) time.Duration {
	cut := 0
	for cut < len(w.sent) && now.Sub(w.sent[cut]) >= w.per {
		cut++
	}
	if cut > 0 {
		w.sent = append(w.sent[:0], w.sent[cut:]...)
	}
	k := max(1, int(float64(w.n)*scale))
	if len(w.sent) < k {
		return 0
	}
	// The k-th most recent request must leave the window first.
	return w.sent[len(w.sent)-k].Add(w.per).Sub(now)
}

func (w *window) take(now time.Time) { w.sent = append(w.sent, now) }

// limiter is a set of windows with one adaptive scale.
type limiter struct {
	windows []*window
	scale   float64 // 1 = Share of every limit; lower after 429s
}

func newLimiter(ls []Limit, share float64, guard time.Duration) *limiter {
	lm := &limiter{scale: 1}
	for _, l := range ls {
		lm.windows = append(lm.windows, newWindow(l, share, guard))
	}
	return lm
}

func (lm *limiter) wait(now time.Time) time.Duration {
	var d time.Duration
	for _, w := range lm.windows {
		d = max(d, w.wait(now, lm.scale))
	}
	return d
}

func (lm *limiter) take(now time.Time) {
	for _, w := range lm.windows {
		w.take(now)
	}
}

func (lm *limiter) throttled() { lm.scale = max(minScale, lm.scale/2) }
func (lm *limiter) succeeded() { lm.scale = min(1, lm.scale+recoverStep) }

// idle reports whether the limiter remembers no request (it can be dropped).
func (lm *limiter) idle(now time.Time) bool {
	if lm.scale < 1 {
		return false
	}
	for _, w := range lm.windows {
		if w.wait(now, 1); len(w.sent) > 0 {
			return false
		}
	}
	return true
}

// pacer holds the windows and a send lock per conversation, so that one
// conversation's activities leave in order and within its limits, and the
// windows per tenant.
type pacer struct {
	cfg Pacing

	mu sync.Mutex // guards everything below and every limiter
	// admitted, when set (tests), is called with p.mu held for every
	// request the pacer lets go.
	admitted func(conv bridge.ConversationID, tenant string, at time.Time)
	tenants  map[string]*limiter
	convs    map[bridge.ConversationID]*list.Element // of *convPace
	lru      *list.List                              // front: most recently used
}

type convPace struct {
	id      bridge.ConversationID
	tenant  string
	lim     *limiter
	lock    chan struct{} // send lock: holds a token while a Send runs
	users   int           // acquirers holding or waiting; 0 = evictable
	pending bool          // a request was admitted and its answer is not known
}

func newPacer(p Pacing) *pacer {
	if p.Conversation == nil {
		p.Conversation = TeamsConversationLimits
	}
	if p.App == nil {
		p.App = TeamsAppLimits
	}
	if p.Share <= 0 {
		p.Share = defaultShare
	}
	p.Share = min(p.Share, 1)
	if p.Guard <= 0 {
		p.Guard = defaultGuard
	}
	if p.MaxConversations <= 0 {
		p.MaxConversations = 10000
	}
	return &pacer{cfg: p, tenants: map[string]*limiter{}, convs: map[bridge.ConversationID]*list.Element{}, lru: list.New()}
}

// entry returns the conversation's state, creating it (and evicting the least
// recently used idle one when full), and counts the caller as a user.
func (p *pacer) entry(ref bridge.ConversationRef) *convPace {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.convs[ref.Conversation]; ok {
		p.lru.MoveToFront(el)
		cp := el.Value.(*convPace)
		cp.users++
		cp.tenant = ref.TenantID
		return cp
	}
	for el := p.lru.Back(); el != nil && len(p.convs) >= p.cfg.MaxConversations; {
		prev := el.Prev()
		if cp := el.Value.(*convPace); cp.users == 0 {
			p.lru.Remove(el)
			delete(p.convs, cp.id)
		}
		el = prev
	}
	cp := &convPace{
		id: ref.Conversation, tenant: ref.TenantID,
		lim:  newLimiter(p.cfg.Conversation, p.cfg.Share, p.cfg.Guard),
		lock: make(chan struct{}, 1), users: 1,
	}
	p.convs[ref.Conversation] = p.lru.PushFront(cp)
	return cp
}

// tenant returns the tenant's limiter. Called with p.mu held.
func (p *pacer) tenant(id string, now time.Time) *limiter {
	if lm, ok := p.tenants[id]; ok {
		return lm
	}
	if len(p.tenants) >= 1000 {
		for k, lm := range p.tenants {
			if lm.idle(now) {
				delete(p.tenants, k)
			}
		}
	}
	lm := newLimiter(p.cfg.App, p.cfg.Share, p.cfg.Guard)
	p.tenants[id] = lm
	return lm
}

func (p *pacer) done(cp *convPace) {
	p.mu.Lock()
	cp.users--
	p.mu.Unlock()
}

// acquire takes the conversation's send lock, waiting until it is free or ctx
// ends. The returned function releases it.
func (p *pacer) acquire(ctx context.Context, ref bridge.ConversationRef) (*convPace, func(), error) {
	cp := p.entry(ref)
	select {
	case cp.lock <- struct{}{}:
		return cp, func() { <-cp.lock; p.done(cp) }, nil
	case <-ctx.Done():
		p.done(cp)
		return nil, nil, ctx.Err()
	}
}

// tryAcquire takes the send lock only if it is free.
func (p *pacer) tryAcquire(ref bridge.ConversationRef) (*convPace, func(), bool) {
	cp := p.entry(ref)
	select {
	case cp.lock <- struct{}{}:
		return cp, func() { <-cp.lock; p.done(cp) }, true
	default:
		p.done(cp)
		return nil, nil, false
	}
}

// take admits one request to cp's conversation if the conversation's and its
// tenant's windows have room now, recording it in both; otherwise it records
// nothing and returns how long to wait.
func (p *pacer) take(cp *convPace) time.Duration {
	if p.cfg.Off {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	tl := p.tenant(cp.tenant, now)
	if d := max(cp.lim.wait(now), tl.wait(now)); d > 0 {
		return d + time.Millisecond
	}
	cp.lim.take(now)
	tl.take(now)
	cp.pending = true
	if p.admitted != nil {
		p.admitted(cp.id, cp.tenant, now)
	}
	return 0
}

// wait blocks until a request to cp's conversation may leave, and records it.
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

// observe tells the pacer how the last admitted request of cp ended: a 429
// shrinks the conversation's and the tenant's share, anything else grows them
// back.
func (p *pacer) observe(cp *convPace, throttled bool) {
	if p.cfg.Off {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !cp.pending {
		return
	}
	cp.pending = false
	tl := p.tenant(cp.tenant, time.Now())
	if throttled {
		cp.lim.throttled()
		tl.throttled()
		return
	}
	cp.lim.succeeded()
	tl.succeeded()
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
