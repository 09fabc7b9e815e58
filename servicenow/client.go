package servicenow

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Client is the Connect Support desk: it talks to a ServiceNow instance's
// Connect Support REST API (and the Table API for batched polling) through
// the shared transport. It is safe for concurrent use.
type Client struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	t     *transport
	cls   classifier                // echo, system and end-phrase rules
	hints lastSeen                  // for LastMessageHint
	files memo[[]bridge.Attachment] // files already read per message (attachments.go)
	exact memo[exactTime]           // ms creation times read per message (table.go)
	ranks atomic.Uint64             // for exactTime.rank
	live  liveStates                // for LiveStateEvery
}

var (
	_ bridge.AgentDesk      = (*Client)(nil)
	_ bridge.AgentFeed      = (*Client)(nil)
	_ bridge.BatchAgentFeed = (*Client)(nil)
)

// New returns a client for cfg. It makes no request; call CheckQueue at
// startup to learn whether the instance can take chats.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	c.t = newTransport(cfg.transport())
	c.cls = newClassifier(cfg.BridgeUser, cfg.EndPhrases)
	return c, nil
}

// Run lives as long as the desk may send: when ctx ends it cancels an OAuth
// token fetch still running (one a request started to renew the token) and
// waits for it, then returns nil. Stop it after the last send.
func (c *Client) Run(ctx context.Context) error { return c.t.run(ctx) }

// do performs cl through the transport.
func (c *Client) do(ctx context.Context, cl call) (json.RawMessage, error) { return c.t.do(ctx, cl) }
