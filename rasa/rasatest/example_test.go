package rasatest_test

import (
	"context"
	"fmt"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/rasa"
	"github.com/handoffhq/handoff/rasa/rasatest"
)

func Example() {
	srv := rasatest.New(rasatest.Options{Token: "s3cret"})
	defer srv.Close()
	bot, err := rasa.New(rasa.Config{URL: srv.URL(), Token: "s3cret"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	replies, _ := bot.Send(ctx, bridge.BotInput{Conversation: "a:1demo", Text: "I want to talk to live agent"})
	for _, r := range replies {
		if r.Handoff != nil {
			fmt.Println("handoff:", r.Handoff.Reason)
		} else {
			fmt.Println("bot:", r.Text)
		}
	}
	bc, _ := bot.Context(ctx, "a:1demo")
	fmt.Println("intent:", bc.LatestIntent, "action:", bc.LatestAction)

	_ = bot.Handback(ctx, "a:1demo", bridge.Handback{Reason: bridge.ReasonAgentClosed})
	tr, _ := srv.Tracker("a:1demo")
	fmt.Println("slots:", tr.Slots["handoff_active"], tr.Slots["handoff_outcome"])
	// Output:
	// bot: Sure, I'm connecting you with a live agent from the IT service desk. Please stay in this chat.
	// handoff: user_asked
	// intent: talk_to_human action: action_handoff
	// slots: false agent_closed
}
