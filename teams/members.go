package teams

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/handoffhq/handoff/bridge"
)

var _ bridge.UserDirectory = (*Client)(nil)

// Member is a conversation member as the Bot Connector's members API returns
// it (TeamsChannelAccount).
type Member struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	AADObjectID       string `json:"aadObjectId"`
	Email             string `json:"email"`
	UserPrincipalName string `json:"userPrincipalName"`
	GivenName         string `json:"givenName"`
	Surname           string `json:"surname"`
	TenantID          string `json:"tenantId"`
	UserRole          string `json:"userRole"`
}

// Member fetches one member of the conversation
// (GET {serviceUrl}/v3/conversations/{id}/members/{memberId}). It is made
// once, without retries: callers use it on the way to something more
// important and bound it with ctx. bridge.ErrNotFound when Teams does not
// know the member (404); other errors as Send.
func (c *Client) Member(ctx context.Context, ref bridge.ConversationRef, memberID string) (Member, error) {
	ep, err := c.endpoint(ctx, ref)
	if err != nil {
		return Member{}, err
	}
	if memberID == "" {
		return Member{}, bridge.Permanent(fmt.Errorf("teams: member lookup: no member id"))
	}
	u := strings.TrimSuffix(ep, "/activities") + "/members/" + escapeSegment(memberID)
	res, err := c.do(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Member{}, fmt.Errorf("teams: member lookup: %w", err)
	}
	switch {
	case res.status == http.StatusOK:
	case res.status == http.StatusNotFound:
		return Member{}, fmt.Errorf("teams: member %s: %w: %w", memberID, bridge.ErrNotFound, c.statusErr("get member", res))
	default:
		if res.status == http.StatusUnauthorized {
			c.tokens.invalidate(res.token)
		}
		return Member{}, c.statusErr("get member", res)
	}
	var m Member
	if err := json.Unmarshal(res.body, &m); err != nil {
		return Member{}, fmt.Errorf("teams: member %s: decode: %w", memberID, err)
	}
	return m, nil
}

// UserEmail returns the conversation user's e-mail, else their user
// principal name (the sign-in name, usually the same address).
// bridge.ErrNotFound when Teams does not know the user or gives neither.
func (c *Client) UserEmail(ctx context.Context, ref bridge.ConversationRef) (string, error) {
	m, err := c.Member(ctx, ref, ref.UserID)
	if err != nil {
		return "", err
	}
	if e := strings.TrimSpace(m.Email); e != "" {
		return e, nil
	}
	if upn := strings.TrimSpace(m.UserPrincipalName); upn != "" {
		return upn, nil
	}
	return "", fmt.Errorf("teams: member %s has no e-mail or user principal name: %w", ref.UserID, bridge.ErrNotFound)
}
