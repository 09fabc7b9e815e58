package teams

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/infracloudio/msbotbuilder-go/schema"

	"github.com/handoffhq/handoff/bridge"
)

// DefaultChannelServiceURL is the Bot Connector URL for proactive posts when
// none was stored from an activity of the team (Microsoft's global one; a
// tenant's regional URL such as …/emea/ works as well).
const DefaultChannelServiceURL = "https://smba.trafficmanager.net/teams/"

// ChannelRef names a Teams channel the bot is installed in.
type ChannelRef struct {
	// ChannelID is the channel's conversation id, 19:…@thread.tacv2 (or the
	// older …@thread.skype).
	ChannelID string
	// ServiceURL is the Bot Connector URL of the tenant ("" :
	// DefaultChannelServiceURL).
	ServiceURL string
	TenantID   string
	// BotID is the bot's id in Teams, "28:<app id>".
	BotID string
}

// CheckChannelID reports whether id looks like a Teams channel's
// conversation id (19:…@thread.tacv2 or …@thread.skype), without a
// ";messageid=" thread suffix.
func CheckChannelID(id string) error {
	if !strings.HasPrefix(id, "19:") || !(strings.HasSuffix(id, "@thread.tacv2") || strings.HasSuffix(id, "@thread.skype")) ||
		strings.ContainsAny(id, "; /") {
		return fmt.Errorf("teams: %q is not a channel's conversation id: want 19:…@thread.tacv2 (in Teams: the channel's … menu → Get link to channel, the part after /channel/, URL-decoded)", id)
	}
	return nil
}

// channelConversation is the Bot Connector's ConversationParameters for a
// new post in a channel (see teamstest/testdata/create_conversation_channel.json).
type channelConversation struct {
	IsGroup     bool                  `json:"isGroup"`
	Bot         schema.ChannelAccount `json:"bot,omitzero"`
	ChannelData channelData           `json:"channelData"`
	TenantID    string                `json:"tenantId,omitempty"`
	Activity    outActivity           `json:"activity"`
}

type channelData struct {
	Channel struct {
		ID string `json:"id"`
	} `json:"channel"`
	Tenant struct {
		ID string `json:"id,omitempty"`
	} `json:"tenant,omitzero"`
}

// PostToChannel starts a new post in the channel holding card: Create
// Conversation, POST {serviceUrl}/v3/conversations with isGroup, the
// channel's id and the tenant in channelData, and the card as the first
// activity. It returns the new thread's conversation id
// ("<channel>;messageid=<activity id>"). Errors as Send: a removed bot is
// bridge.ErrUserUnreachable, other 4xx are Permanent, a 429 the call cannot
// wait out is a bridge.ThrottledError.
func (c *Client) PostToChannel(ctx context.Context, ch ChannelRef, card bridge.Card) (string, error) {
	if err := CheckChannelID(ch.ChannelID); err != nil {
		return "", bridge.Permanent(err)
	}
	if ch.ServiceURL == "" {
		ch.ServiceURL = DefaultChannelServiceURL
	}
	u, err := c.hosts.check(ch.ServiceURL)
	if err != nil {
		return "", bridge.Permanent(err)
	}
	ref := bridge.ConversationRef{Conversation: bridge.ConversationID(ch.ChannelID), ServiceURL: ch.ServiceURL,
		ConversationType: "channel", TenantID: ch.TenantID, BotID: ch.BotID}
	p := channelConversation{IsGroup: true, Bot: schema.ChannelAccount{ID: ch.BotID}, TenantID: ch.TenantID}
	p.ChannelData.Channel.ID = ch.ChannelID
	p.ChannelData.Tenant.ID = ch.TenantID
	p.Activity = outActivity{Type: string(schema.Message), Attachments: []schema.Attachment{adaptiveCardOf(card)}}
	body, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("teams: post to channel: %w", err)
	}
	cp, release, err := c.pacer.acquire(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("teams: post to channel: %w", err)
	}
	defer release()
	id, err := c.call(ctx, cp, http.MethodPost, strings.TrimSuffix(u.String(), "/")+"/v3/conversations", body)
	if err != nil {
		return "", fmt.Errorf("teams: post to channel %s: %w", ch.ChannelID, err)
	}
	return id, nil // "" when the connector answered without one: posted all the same
}
