package snowtest_test

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// A test or console opens a chat over REST as the bridge would, then plays
// the agent through the Go API.
func Example() {
	in := snowtest.New(snowtest.Options{Now: time.Date(2024, 5, 2, 14, 3, 11, 0, time.UTC)})
	defer in.Close()

	req, _ := http.NewRequest("POST", in.URL()+"/api/now/connect/support/queues/"+snowtest.DefaultQueue+"/sessions",
		strings.NewReader(`{"message":"Abel Tuter needs help with the VPN"}`))
	req.SetBasicAuth(snowtest.DefaultUser, snowtest.DefaultPassword)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	chat := in.WaitingChats()[0]
	_ = in.Accept(chat.Group, "Beth Anglin")
	in.Advance(2 * time.Second)
	_, _ = in.Say(chat.Group, "Beth Anglin", "Hi Abel, which VPN client do you use?")
	_ = in.CloseChat(chat.Group)

	for _, m := range in.Messages(chat.Group) {
		fmt.Printf("%s %-14s %.40s\n", m.At.Format("15:04:05"), m.CreatedBy, m.Text)
	}
	c, _ := in.Chat(chat.Group)
	fmt.Println(c.Number, c.State.Label())
	// Output:
	// 14:03:11 handoff.bridge Abel Tuter needs help with the VPN
	// 14:03:11 beth.anglin    Thank you for contacting support. We are
	// 14:03:13 beth.anglin    Hi Abel, which VPN client do you use?
	// 14:03:13 system         Beth Anglin has closed the support sessi
	// CHAT0010001 Closed Complete
}
