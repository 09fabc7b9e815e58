package snowtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf16"
)

// This file is the instance's outgoing side: the Business Rule on
// live_message that POSTs every new message to the bridge (what
// servicenow/businessrule/live_message_webhook.js does on a real instance),
// and the delivery engine it shares with the Virtual Agent callbacks (va.go),
// with injectable latency, duplicates, reordering and drops.

// WebhookOptions configures the Business Rule behaviour.
type WebhookOptions struct {
	// URL receives the POSTs, e.g. "http://127.0.0.1:8080/webhooks/servicenow".
	URL string
	// URLs, when set, receive the POSTs in turn instead of URL, as a load
	// balancer in front of several bridge replicas spreads them.
	URLs []string
	// Secret signs each request as the script does: X-Handoff-Timestamp (Unix
	// seconds) and X-Handoff-Signature "sha256=<base64 HMAC-SHA256 of
	// "<timestamp>.<body>">" (base64 because GlideCertificateEncryption's
	// generateMac returns base64; HexSignature sends hex instead).
	Secret       string
	HexSignature bool
	// Username and Password add Basic auth (the alternative to Secret).
	Username string
	Password string
	// SkipCreatedBy is the script's condition: rows created by this user (the
	// bridge's integration user) are not sent. "" sends every row.
	SkipCreatedBy string
	// Timeout of one POST (RESTMessageV2's HTTP timeout). Default 10 s.
	Timeout time.Duration
	// Clock signs the requests (the instance's own clock, not the message
	// clock of SetNow/Advance). Default time.Now.
	Clock func() time.Time
}

// sign adds what HandoffWebhook.js adds: the signature, or Basic auth.
func (o WebhookOptions) sign(body []byte, h http.Header) {
	if o.Secret != "" {
		maps.Copy(h, SignWebhook(o.Secret, o.Clock(), body, o.HexSignature))
	}
	if o.Username != "" {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(o.Username+":"+o.Password)))
	}
}

// EnableWebhooks turns the Business Rule on: from now on every new message of
// a Connect chat is POSTed to o.URL asynchronously, after the message is
// stored, through the delivery faults set with SetDeliveryFaults.
func (in *Instance) EnableWebhooks(o WebhookOptions) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.outbound().rule = &o
}

// DisableWebhooks turns the Business Rule off (deliveries under way finish).
func (in *Instance) DisableWebhooks() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.outbound().rule = nil
}

// DeliveryFaults disturb the instance's outgoing calls (Business Rule
// webhooks and VA callbacks). Each "Every" counter and rate is applied to the
// sequence of deliveries in the order they were triggered.
type DeliveryFaults struct {
	// Latency delays every delivery; Jitter adds up to that much more, at
	// random (which alone can reorder Business Rule deliveries, as async
	// rules on a real instance do).
	Latency time.Duration
	Jitter  time.Duration
	// DropEvery drops every Nth delivery (never sent); DropRate drops each
	// with that probability.
	DropEvery int
	DropRate  float64
	// DuplicateEvery / DuplicateRate send a delivery twice (the second a
	// little later, signed again, as a rule that fired twice would).
	DuplicateEvery int
	DuplicateRate  float64
	// ReorderEvery / ReorderRate hold a delivery back and send it after the
	// next delivery of the same chat (or after ReorderHold, default 2 s, if
	// none comes).
	ReorderEvery int
	ReorderRate  float64
	ReorderHold  time.Duration
	// Seed seeds the rates' random numbers (0: a fixed seed).
	Seed uint64
}

// SetDeliveryFaults replaces the delivery faults (the counters restart).
func (in *Instance) SetDeliveryFaults(f DeliveryFaults) {
	if f.ReorderHold <= 0 {
		f.ReorderHold = 2 * time.Second
	}
	in.mu.Lock()
	o := in.outbound()
	in.mu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.faults = f
	o.n = 0
	o.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))
}

// Delivery is one outgoing call as the bridge saw it (or did not).
type Delivery struct {
	Kind    string // "webhook" (Business Rule) or "va" (callback)
	Chat    string // group
	Key     string // sys_id of the message (webhooks), requestId (callbacks)
	Status  int    // HTTP status; 0 when dropped or the request failed
	Err     string // transport error
	Dropped bool
	Copy    int // 0 the original, 1 a duplicate
	Queued  time.Time
	Sent    time.Time // zero when dropped
}

// Deliveries returns every delivery so far, in the order they finished (or
// were dropped).
func (in *Instance) Deliveries() []Delivery {
	in.mu.Lock()
	o := in.outbound()
	in.mu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Delivery(nil), o.done...)
}

// WaitDeliveries sends every held delivery now and waits until none is
// queued or in flight.
func (in *Instance) WaitDeliveries(ctx context.Context) error {
	in.mu.Lock()
	o := in.outbound()
	in.mu.Unlock()
	for {
		o.mu.Lock()
		for lane, d := range o.held {
			delete(o.held, lane)
			o.dispatchLocked(d, 0)
		}
		n, ch := o.inflight, o.changed
		o.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// outbound is the instance's delivery engine.
type outbound struct {
	rule *WebhookOptions // Business Rule on; guarded by Instance.mu
	sent int             // deliveries addressed so far (URLs in turn); guarded by Instance.mu
	va   *vaState        // VA mode on; guarded by Instance.mu

	mu       sync.Mutex
	faults   DeliveryFaults
	rng      *rand.Rand
	n        int
	held     map[string]*delivery // per lane (chat): a delivery held back for reordering
	lanes    map[string][]*delivery
	inflight int
	changed  chan struct{}
	done     []Delivery
	stop     chan struct{}
	stopped  bool
	client   *http.Client
}

// delivery is one POST to make.
type delivery struct {
	kind    string
	chat    string
	key     string
	url     string
	header  http.Header
	body    []byte
	sign    func(body []byte, h http.Header) // adds auth headers at send time
	timeout time.Duration
	ordered bool // VA callbacks: one lane per chat, one after the other
	copies  int
	queued  time.Time
}

// outbound returns the engine, making it on first use. Callers hold in.mu.
func (in *Instance) outbound() *outbound {
	if in.out == nil {
		in.out = &outbound{held: map[string]*delivery{}, lanes: map[string][]*delivery{},
			changed: make(chan struct{}), stop: make(chan struct{}), rng: rand.New(rand.NewPCG(0, 0x9e3779b97f4a7c15)),
			client: &http.Client{Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 64,
			}}}
	}
	return in.out
}

// closeOutbound stops deliveries (called by Close).
func (in *Instance) closeOutbound() {
	in.mu.Lock()
	o := in.out
	in.mu.Unlock()
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.stopped {
		o.stopped = true
		close(o.stop)
	}
}

// every reports whether the nth item hits an "every N" or rate fault.
func (o *outbound) hit(every int, rate float64) bool {
	if every > 0 && o.n%every == 0 {
		return true
	}
	return rate > 0 && o.rng.Float64() < rate
}

// enqueue applies the faults to d and schedules it. Callers may hold
// Instance.mu.
func (o *outbound) enqueue(d *delivery) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return
	}
	d.queued = time.Now()
	o.n++
	f := o.faults
	if o.hit(f.DropEvery, f.DropRate) {
		o.done = append(o.done, Delivery{Kind: d.kind, Chat: d.chat, Key: d.key, Dropped: true, Queued: d.queued})
		return
	}
	d.copies = 1
	if o.hit(f.DuplicateEvery, f.DuplicateRate) {
		d.copies = 2
	}
	o.inflight++
	held := o.held[d.chat]
	if held == nil && o.hit(f.ReorderEvery, f.ReorderRate) {
		o.held[d.chat] = d
		time.AfterFunc(f.ReorderHold, func() {
			o.mu.Lock()
			defer o.mu.Unlock()
			if o.held[d.chat] == d {
				delete(o.held, d.chat)
				o.dispatchLocked(d, 0)
			}
		})
		return
	}
	o.dispatchLocked(d, 0)
	if held != nil {
		delete(o.held, d.chat)
		// Sent after d: a little later, so it arrives second.
		o.dispatchLocked(held, 30*time.Millisecond)
	}
}

// dispatchLocked starts d (after extra delay). Callers hold o.mu.
func (o *outbound) dispatchLocked(d *delivery, extra time.Duration) {
	if !d.ordered {
		go o.run(d, extra)
		return
	}
	q := o.lanes[d.chat]
	o.lanes[d.chat] = append(q, d)
	if len(q) == 0 {
		go o.drain(d.chat, extra)
	}
}

// drain sends a lane's deliveries one after the other.
func (o *outbound) drain(lane string, extra time.Duration) {
	for {
		o.mu.Lock()
		q := o.lanes[lane]
		if len(q) == 0 {
			delete(o.lanes, lane)
			o.mu.Unlock()
			return
		}
		d := q[0]
		o.mu.Unlock()
		o.run(d, extra)
		extra = 0
		o.mu.Lock()
		o.lanes[lane] = o.lanes[lane][1:]
		o.mu.Unlock()
	}
}

// run sends d (and its duplicate) and records the outcome.
func (o *outbound) run(d *delivery, extra time.Duration) {
	o.mu.Lock()
	f := o.faults
	wait := f.Latency + extra
	if f.Jitter > 0 {
		wait += time.Duration(o.rng.Int64N(int64(f.Jitter) + 1))
	}
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.inflight--
		close(o.changed)
		o.changed = make(chan struct{})
		o.mu.Unlock()
	}()
	for c := 0; c < d.copies; c++ {
		if c > 0 {
			wait = 50 * time.Millisecond
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-o.stop:
				t.Stop()
				return
			}
		}
		rec := o.send(d)
		rec.Copy = c
		o.mu.Lock()
		o.done = append(o.done, rec)
		o.mu.Unlock()
	}
}

func (o *outbound) send(d *delivery) Delivery {
	rec := Delivery{Kind: d.kind, Chat: d.chat, Key: d.key, Queued: d.queued, Sent: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	go func() {
		select {
		case <-o.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		rec.Err = err.Error()
		return rec
	}
	req.Header = d.header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Content-Type", "application/json")
	if d.kind == "webhook" {
		req.Header.Set("Content-Type", "application/json; charset=utf-8") // as HandoffWebhook.js sets it
	}
	req.Header.Set("User-Agent", "ServiceNow/1.0")
	if d.sign != nil {
		d.sign(d.body, req.Header)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		rec.Err = err.Error()
		return rec
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	rec.Status = resp.StatusCode
	return rec
}

// webhookPayload renders m as the Business Rule sends it, with prev as its
// "previous" pointer.
func webhookPayload(m *Message, prev []string, files []any) []byte {
	return ruleJSON(map[string]any{
		"previous":       prev,
		"attachments":    files,
		"table":          "live_message",
		"sys_id":         m.SysID,
		"group":          m.Group,
		"message":        m.Text,
		"created_by":     m.CreatedBy,
		"sender_name":    m.SenderName,
		"profile":        m.Profile,
		"sys_created_on": fmtTime(m.At),
		"timestamp":      m.At.UnixMilli(),
	})
}

// ruleJSON encodes v as HandoffWebhook.js does: JSON.stringify, then every
// non-ASCII character as a \uXXXX escape (UTF-16 code units).
func ruleJSON(v any) []byte {
	raw, _ := json.Marshal(v)
	canon, _ := jsRestringify(raw) // JSON.stringify's form: "<", ">", "&" raw
	var out bytes.Buffer
	for _, r := range string(canon) {
		switch {
		case r < 0x80:
			out.WriteRune(r)
		case r > 0xffff:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&out, `\u%04x\u%04x`, hi, lo)
		default:
			fmt.Fprintf(&out, `\u%04x`, r)
		}
	}
	return out.Bytes()
}

// SignWebhook returns the headers the Business Rule sends for body signed at
// ts with secret: X-Handoff-Timestamp and X-Handoff-Signature (base64, or hex
// when hexSig).
func SignWebhook(secret string, ts time.Time, body []byte, hexSig bool) http.Header {
	stamp := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(stamp + "."))
	m.Write(body)
	sum := m.Sum(nil)
	sig := base64.StdEncoding.EncodeToString(sum)
	if hexSig {
		sig = hex.EncodeToString(sum)
	}
	return http.Header{"X-Handoff-Timestamp": {stamp}, "X-Handoff-Signature": {"sha256=" + sig}}
}

// messageAdded runs the insert rules of live_message. Callers hold in.mu.
func (in *Instance) messageAdded(c *chat, m *Message) {
	if in.out == nil {
		return
	}
	if in.out.va != nil && in.vaMessageAdded(c, m) {
		return
	}
	rule := in.out.rule
	if rule == nil || (rule.URL == "" && len(rule.URLs) == 0) || (rule.SkipCreatedBy != "" && m.CreatedBy == rule.SkipCreatedBy) {
		return
	}
	opts := *rule
	d := &delivery{kind: "webhook", chat: m.Group, key: m.SysID, url: in.ruleURL(), body: webhookPayload(m, previous(c, m, rule.SkipCreatedBy), in.filesJSON(m)), timeout: opts.Timeout,
		header: http.Header{}}
	d.sign = opts.sign
	in.out.enqueue(d)
}

// ruleURL is where the Business Rule's next delivery goes: URL, or the
// next of URLs in turn. Callers hold in.mu with the rule on.
func (in *Instance) ruleURL() string {
	r := in.out.rule
	if len(r.URLs) == 0 {
		return r.URL
	}
	in.out.sent++
	return r.URLs[(in.out.sent-1)%len(r.URLs)]
}

// previous is what live_message_webhook.js puts in "previous": the sys_ids
// of the chat's rows other than m, not created by skip, whose sys_created_on
// (seconds) is the newest at or before m's: the rows the rule's query sees.
// Callers hold in.mu.
func previous(c *chat, m *Message, skip string) []string {
	at := m.At.Truncate(time.Second)
	var newest time.Time
	prev := []string{}
	for _, o := range c.msgs {
		if o == m || o.SysID == m.SysID || (skip != "" && o.CreatedBy == skip) {
			continue
		}
		on := o.At.Truncate(time.Second)
		switch {
		case on.After(at) || on.Before(newest):
		case on.After(newest):
			newest, prev = on, []string{o.SysID}
		default:
			prev = append(prev, o.SysID)
		}
	}
	if len(prev) > 20 {
		prev = prev[len(prev)-20:] // the rule's setLimit(20)
	}
	return prev
}

// stateChanged runs the rules on a queue entry's state change. Callers hold
// in.mu.
func (in *Instance) stateChanged(c *chat, prev State) {
	if in.out != nil && in.out.va != nil {
		in.vaStateChanged(c, prev)
	}
	in.queueEntryRule(c, prev)
}

// queueEntryRule is chat_queue_entry_webhook.js: a chat the bridge opened
// whose state changes to 3, 4, 7 or 8 is POSTed as a state event. Callers
// hold in.mu.
func (in *Instance) queueEntryRule(c *chat, prev State) {
	if in.out == nil || in.out.rule == nil || (in.out.rule.URL == "" && len(in.out.rule.URLs) == 0) || c.State == prev || !c.State.Closed() {
		return
	}
	opts := *in.out.rule
	if opts.SkipCreatedBy != "" && c.OpenedBy != opts.SkipCreatedBy {
		return // not a chat the bridge opened
	}
	body := ruleJSON(map[string]any{"table": "chat_queue_entry", "sys_id": c.QueueEntry, "group": c.Group,
		"state": strconv.Itoa(int(c.State)), "assigned_to": c.AssignedTo, "timestamp": opts.Clock().UnixMilli()})
	d := &delivery{kind: "webhook", chat: c.Group, key: "state:" + c.QueueEntry + ":" + strconv.Itoa(int(c.State)), url: in.ruleURL(),
		body: body, timeout: opts.Timeout, header: http.Header{}}
	d.sign = opts.sign
	in.out.enqueue(d)
}
