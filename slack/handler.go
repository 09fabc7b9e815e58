package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// SessionLookup finds the session bound to a desk chat. *bridge.Relay
// implements it; it returns an error wrapping bridge.ErrNotFound when no
// session has the chat (yet).
type SessionLookup interface {
	DeskData(ctx context.Context, chat bridge.AgentChatID) (string, error)
}

// HandlerConfig configures the receivers of Slack's requests.
type HandlerConfig struct {
	// SigningSecret is the app's signing secret (Basic Information page).
	SigningSecret string
	// SocketOnly: payloads arrive over Socket Mode only (NewSocket), which
	// Slack does not sign; the signing secret may be empty, and then the
	// HTTP receivers refuse every request.
	SocketOnly bool
	// MaxSkew is the replay window of signed timestamps (default 5 minutes).
	MaxSkew time.Duration
	// OrderWindow holds the events of one thread this long so parallel
	// deliveries are stored in ts order (default 300 ms; negative: none).
	OrderWindow time.Duration
	// OpenWait is how long an event for a thread the bridge does not know yet
	// waits for the chat to be recorded (the parent was just posted).
	// Default 500 ms.
	OpenWait time.Duration
	// MaxBody bounds a request body; larger ones get 413. Default 1 MiB.
	MaxBody int64
	Logger  *slog.Logger
	Now     func() time.Time
}

// Handler receives Slack's Events API requests (ServeEvents) and
// interactivity payloads (ServeInteractive). Both verify the signature before
// anything else, store what the request means through the Sink, and only
// then answer 200, well inside Slack's 3 seconds; the outward consequences
// are the dispatcher's work.
type Handler struct {
	cfg    HandlerConfig
	desk   *Client
	lookup SessionLookup
	order  *orderer
	log    *slog.Logger
	now    func() time.Time
	taken  takenSet
	// afterTake runs after the parent was updated for a take (button or
	// first reply), once the request was answered (tests wait on it).
	afterTake func()
}

// NewHandler returns the receivers for the desk's channel.
func NewHandler(cfg HandlerConfig, desk *Client, sink Sink, lookup SessionLookup) (*Handler, error) {
	if cfg.SigningSecret == "" && !cfg.SocketOnly {
		return nil, errors.New("slack: the app's signing secret is required to accept its requests")
	}
	if desk == nil || sink == nil {
		return nil, errors.New("slack: handler needs the desk client and a sink")
	}
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = DefaultMaxSkew
	}
	if cfg.OrderWindow == 0 {
		cfg.OrderWindow = 300 * time.Millisecond
	}
	if cfg.OpenWait <= 0 {
		cfg.OpenWait = 500 * time.Millisecond
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Handler{cfg: cfg, desk: desk, lookup: lookup, order: newOrderer(cfg.OrderWindow, sink), log: log, now: now}, nil
}

// read returns the verified body, or answers the request and returns false.
func (h *Handler) read(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBody), http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "cannot read the body", http.StatusBadRequest)
		}
		return nil, false
	}
	if h.cfg.SigningSecret == "" {
		http.Error(w, "this bridge receives Slack over Socket Mode and has no signing secret for HTTP requests", http.StatusUnauthorized)
		return nil, false
	}
	if err := verify(h.cfg.SigningSecret, h.cfg.MaxSkew, h.now(), r.Header, body); err != nil {
		h.log.WarnContext(r.Context(), "slack request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		http.Error(w, "invalid Slack signature: "+err.Error(), http.StatusUnauthorized)
		return nil, false
	}
	return body, true
}

// known waits up to OpenWait for chat to be bound to a session.
func (h *Handler) known(ctx context.Context, chat bridge.AgentChatID) (bool, error) {
	if h.lookup == nil {
		return true, nil
	}
	deadline := time.Now().Add(h.cfg.OpenWait)
	for {
		_, err := h.lookup.DeskData(ctx, chat)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, bridge.ErrNotFound) {
			return false, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
	}
}

// store hands the events of a known chat to the sink; it reports the HTTP
// status to answer.
func (h *Handler) store(ctx context.Context, chat bridge.AgentChatID, evs []bridge.AgentEvent) int {
	ok, err := h.known(ctx, chat)
	if err != nil {
		h.log.ErrorContext(ctx, "slack event not stored: session lookup failed; Slack will retry", "chat_id", chat, "err", err)
		return http.StatusInternalServerError
	}
	if !ok {
		h.log.DebugContext(ctx, "slack event for a thread that is not a handoff ignored", "chat_id", chat)
		return http.StatusOK
	}
	if err := h.order.deliver(ctx, chat, evs); err != nil {
		h.log.ErrorContext(ctx, "slack event not stored; Slack will retry", "chat_id", chat, "err", err)
		return http.StatusInternalServerError
	}
	return http.StatusOK
}

// ServeEvents receives the Events API: it answers the url_verification
// challenge and stores message events of handoff threads.
func (h *Handler) ServeEvents(w http.ResponseWriter, r *http.Request) {
	body, ok := h.read(w, r)
	if !ok {
		return
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		http.Error(w, "body is not an Events API JSON object: "+err.Error(), http.StatusBadRequest)
		return
	}
	if env.Type == "url_verification" {
		if env.Challenge == "" {
			http.Error(w, "url_verification without a challenge", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"challenge": env.Challenge})
		return
	}
	ctx := r.Context()
	h.log.DebugContext(ctx, "slack event", "event_id", env.EventID, "retry", r.Header.Get(HeaderRetryNum), "retry_reason", r.Header.Get(HeaderRetryCause))
	res := h.event(ctx, env)
	if res.err != nil {
		http.Error(w, res.err.Error(), res.status)
		return
	}
	w.WriteHeader(res.status)
	h.finish(ctx, w, res)
}

// received is what storing one Events API callback or interactivity payload
// came to: the status to answer (200 once stored or ignored), the error of a
// malformed one (400), and the work to do after answering: updating the
// parent message after the handoff was taken.
type received struct {
	status int
	err    error
	after  func(ctx context.Context)
}

// finish runs res.after once the answer is flushed, bounded and inside the
// request (so shutdown waits for it), detached from Slack's cancellation.
func (h *Handler) finish(ctx context.Context, w http.ResponseWriter, res received) {
	if res.after == nil {
		return
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	h.runAfter(ctx, res)
}

func (h *Handler) runAfter(ctx context.Context, res received) {
	if res.after == nil {
		return
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	res.after(uctx)
	if h.afterTake != nil {
		h.afterTake()
	}
}

// event stores an Events API callback (the same for an HTTP request and a
// Socket Mode envelope).
func (h *Handler) event(ctx context.Context, env envelope) received {
	switch env.Type {
	case "app_rate_limited":
		h.log.WarnContext(ctx, "slack stopped sending events for a minute: the app exceeded 30,000 events per hour")
		return received{status: http.StatusOK}
	case "event_callback":
	default:
		return received{status: http.StatusOK}
	}
	chat, evs, err := h.convert(ctx, env)
	if err != nil {
		return received{status: http.StatusBadRequest, err: err}
	}
	if len(evs) == 0 {
		return received{status: http.StatusOK}
	}
	res := received{status: h.store(ctx, chat, evs)}
	if res.status != http.StatusOK {
		return res
	}
	for _, ev := range evs {
		if ev.System && strings.HasPrefix(ev.ExternalID, "joined:") && h.taken.first(chat) {
			// A first reply takes the handoff like the Take button: the
			// parent message is updated the same way.
			name := ev.Author
			res.after = func(ctx context.Context) { h.markTakenByReply(ctx, chat, name) }
		}
	}
	return res
}

// markTakenByReply updates the parent message after an agent took the
// handoff by replying first. The parent is read first: a parent already
// taken (by the button) or ended is left alone.
func (h *Handler) markTakenByReply(ctx context.Context, chat bridge.AgentChatID, name string) {
	parent, err := h.desk.parent(ctx, chat)
	if err == nil {
		err = h.desk.markTaken(ctx, chat, parent.Blocks, name)
	}
	if err != nil {
		h.taken.forget(chat) // the next reply tries again
		h.log.WarnContext(ctx, "the parent message still shows Take; the handoff is taken anyway", "chat_id", chat, "err", err)
	}
}

// takenSet remembers, per process, the threads whose parent was already
// updated after a reply took them, so only a thread's first reply costs a
// read of the parent. Bounded: when full it starts over, which costs one
// more read per thread, never a wrong update (markTaken checks the parent).
type takenSet struct {
	mu    sync.Mutex
	chats map[bridge.AgentChatID]struct{}
}

// first reports whether chat is new to the set, and adds it.
func (s *takenSet) first(chat bridge.AgentChatID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.chats[chat]; ok {
		return false
	}
	if s.chats == nil || len(s.chats) >= 10000 {
		s.chats = map[bridge.AgentChatID]struct{}{}
	}
	s.chats[chat] = struct{}{}
	return true
}

func (s *takenSet) forget(chat bridge.AgentChatID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.chats, chat)
}
