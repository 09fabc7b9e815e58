package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// SocketConfig configures Socket Mode: Slack pushes the Events API and
// interactivity payloads over a WebSocket the bridge opens, so the bridge
// needs no public URL.
type SocketConfig struct {
	// AppToken is the app-level token (xapp-…) with connections:write.
	AppToken string
	// MinBackoff and MaxBackoff bound the wait before reconnecting after a
	// failed connection (defaults 1 s and 1 min, with jitter). A disconnect
	// Slack announces is followed at once.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how often the bridge pings Slack to find a dead
	// connection (default 30 s; the pong must come within the interval).
	PingInterval time.Duration
	// MaxMessage bounds one WebSocket message (default 1 MiB).
	MaxMessage int64
	// Workers bounds the envelopes being stored at once (default 32).
	Workers    int
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Socket is the Socket Mode connection. Run keeps one connection open and
// feeds every envelope to the Handler's receive path, the same one the HTTP
// endpoints use: the payload is stored (de-duplicated by the same keys)
// before the envelope is acknowledged, and an envelope that could not be
// stored is not acknowledged, so Slack sends it again.
type Socket struct {
	cfg   SocketConfig
	h     *Handler
	log   *slog.Logger
	hc    *http.Client
	mu    sync.Mutex
	stats SocketStats
}

// SocketStats counts what the Socket Mode loop did.
type SocketStats struct {
	Connections int // successful WebSocket connections
	Hellos      int
	Acks        int
}

// NewSocket returns the Socket Mode loop for h (whose desk client calls
// apps.connections.open).
func NewSocket(cfg SocketConfig, h *Handler) (*Socket, error) {
	if !strings.HasPrefix(cfg.AppToken, "xapp-") {
		return nil, errors.New("slack: Socket Mode needs the app-level token (xapp-…, Basic Information → App-Level Tokens, scope connections:write)")
	}
	if h == nil {
		return nil, errors.New("slack: Socket Mode needs the handler")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 30 * time.Second
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = 1 << 20
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 32
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	log := cfg.Logger
	if log == nil {
		log = h.log
	}
	return &Socket{cfg: cfg, h: h, log: log, hc: hc}, nil
}

// Stats returns what the loop did so far.
func (s *Socket) Stats() SocketStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Socket) count(f func(*SocketStats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// Run connects and reconnects until ctx is cancelled; it returns nil then.
// Every connection starts with apps.connections.open (a WebSocket URL is
// good for one connection). A refused app token is logged and retried at
// the longest backoff: the operator may fix the app while the bridge runs.
func (s *Socket) Run(ctx context.Context) error {
	wait := s.cfg.MinBackoff
	for {
		hellos := s.Stats().Hellos
		announced, err := s.connection(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if s.Stats().Hellos > hellos {
			wait = s.cfg.MinBackoff // the connection worked; this is a new failure
		}
		switch {
		case announced:
			wait = s.cfg.MinBackoff
			s.log.InfoContext(ctx, "slack socket mode: reconnecting as Slack asked")
			continue
		case err != nil && isAuth(err):
			wait = s.cfg.MaxBackoff
			s.log.ErrorContext(ctx, "slack socket mode: the app token is refused; retrying", "err", err, "next", wait)
		default:
			s.log.WarnContext(ctx, "slack socket mode: connection lost; reconnecting", "err", err, "next", wait)
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(wait*2, s.cfg.MaxBackoff)
	}
}

func isAuth(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Code == "invalid_auth" || ae.Code == "not_authed" || ae.Code == "not_allowed_token_type" ||
		ae.Code == "token_revoked" || ae.Code == "forbidden_team")
}

// socketMessage is any message Slack sends over the socket: hello,
// disconnect, or an envelope (events_api, interactive, slash_commands).
type socketMessage struct {
	Type       string          `json:"type"`
	EnvelopeID string          `json:"envelope_id,omitempty"`
	Payload    json.RawMessage `json:"payload,omitempty"`
	Retry      int             `json:"retry_attempt,omitempty"`
	Reason     string          `json:"reason,omitempty"`       // disconnect: warning, refresh_requested, link_disabled
	RetryCause string          `json:"retry_reason,omitempty"` // envelope: why it is sent again
	// NumConnections is the number of the app's open connections (hello).
	NumConnections int `json:"num_connections,omitempty"`
}

// open asks Slack for a WebSocket URL (apps.connections.open).
func (s *Socket) open(ctx context.Context) (string, error) {
	var out struct {
		URL string `json:"url"`
	}
	if err := s.h.desk.callAs(ctx, s.cfg.AppToken, "apps.connections.open", url.Values{}, &out); err != nil {
		return "", err
	}
	u, err := url.Parse(out.URL)
	if err != nil || (u.Scheme != "wss" && u.Scheme != "ws") {
		return "", fmt.Errorf("slack: apps.connections.open answered %q, not a WebSocket URL", clip(out.URL, 80))
	}
	return out.URL, nil
}

// connection runs one connection until it ends. announced reports that
// Slack asked for a new connection (disconnect), which is not a failure.
func (s *Socket) connection(ctx context.Context) (announced bool, err error) {
	wsURL, err := s.open(ctx)
	if err != nil {
		return false, err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, resp, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: s.hc})
	cancel()
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return false, fmt.Errorf("slack: connect the Socket Mode WebSocket: %w", err)
	}
	s.count(func(st *SocketStats) { st.Connections++ })
	conn.SetReadLimit(s.cfg.MaxMessage)
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait() // in-flight envelopes finish (or fail unacknowledged) first
		_ = conn.Close(websocket.StatusNormalClosure, "")
	}()
	wg.Go(func() { s.ping(cctx, conn, stop) })
	slots := make(chan struct{}, s.cfg.Workers)
	for {
		_, raw, err := conn.Read(cctx)
		if err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			return false, fmt.Errorf("slack: read from the Socket Mode WebSocket: %w", err)
		}
		var m socketMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			s.log.WarnContext(ctx, "slack socket mode: a message that is not JSON ignored", "err", err)
			continue
		}
		switch m.Type {
		case "hello":
			s.count(func(st *SocketStats) { st.Hellos++ })
			s.log.InfoContext(ctx, "slack socket mode connected", "connections", m.NumConnections)
		case "disconnect":
			if m.Reason == "link_disabled" {
				return false, errors.New("slack: Socket Mode was turned off for the app (disconnect: link_disabled); turn it on again or use the Events API")
			}
			s.log.InfoContext(ctx, "slack socket mode: Slack asks for a new connection", "reason", m.Reason)
			return true, nil
		case "events_api", "interactive":
			if m.EnvelopeID == "" {
				s.log.WarnContext(ctx, "slack socket mode: an envelope without envelope_id ignored", "type", m.Type)
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-cctx.Done():
				return false, nil
			}
			wg.Go(func() {
				defer func() { <-slots }()
				s.envelope(cctx, conn, m)
			})
		default:
			// slash_commands and anything new: acknowledged so Slack does
			// not send it again; the bridge has no use for it.
			if m.EnvelopeID != "" {
				s.ack(cctx, conn, m.EnvelopeID)
			}
		}
	}
}

// envelope stores one envelope's payload and acknowledges it once stored.
func (s *Socket) envelope(ctx context.Context, conn *websocket.Conn, m socketMessage) {
	res, ack := s.receive(ctx, m)
	if !ack {
		return
	}
	s.ack(ctx, conn, m.EnvelopeID)
	s.h.runAfter(ctx, res)
}

// receive stores an envelope's payload through the handler's receive path.
// It reports whether to acknowledge: yes once stored, or once found
// meaningless (a malformed payload sent again stays malformed); no when it
// could not be stored, so Slack sends it again.
func (s *Socket) receive(ctx context.Context, m socketMessage) (received, bool) {
	var res received
	switch m.Type {
	case "events_api":
		var env envelope
		if err := json.Unmarshal(m.Payload, &env); err != nil {
			res = received{status: http.StatusBadRequest, err: fmt.Errorf("events_api payload is not an Events API object: %w", err)}
		} else {
			s.log.DebugContext(ctx, "slack event", "event_id", env.EventID, "envelope_id", m.EnvelopeID, "retry", m.Retry, "retry_reason", m.RetryCause)
			res = s.h.event(ctx, env)
		}
	case "interactive":
		res = s.h.interaction(ctx, m.Payload)
	default:
		return received{}, true
	}
	switch {
	case res.status == http.StatusOK:
	case res.err != nil && res.status/100 == 4:
		s.log.WarnContext(ctx, "slack socket mode: envelope not usable; acknowledged so it is not sent again", "envelope_id", m.EnvelopeID, "err", res.err)
		res.after = nil
	default:
		s.log.ErrorContext(ctx, "slack socket mode: envelope not stored; left unacknowledged so Slack sends it again", "envelope_id", m.EnvelopeID, "status", res.status)
		return res, false
	}
	return res, true
}

// ack acknowledges an envelope: {"envelope_id": …}.
func (s *Socket) ack(ctx context.Context, conn *websocket.Conn, id string) {
	b, _ := json.Marshal(map[string]string{"envelope_id": id})
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := conn.Write(wctx, websocket.MessageText, b); err != nil {
		s.log.WarnContext(ctx, "slack socket mode: acknowledgement not sent; Slack will send the envelope again", "envelope_id", id, "err", err)
		return
	}
	s.count(func(st *SocketStats) { st.Acks++ })
}

// ping finds a dead connection: a ping without a pong within the interval
// ends the connection (stop), and Run reconnects.
func (s *Socket) ping(ctx context.Context, conn *websocket.Conn, stop context.CancelFunc) {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, s.cfg.PingInterval)
		err := conn.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "slack socket mode: no pong; reconnecting", "err", err)
			_ = conn.CloseNow()
			stop()
			return
		}
	}
}
