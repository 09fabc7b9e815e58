package snowtest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// BenchmarkTableGroupIN: one batch-poll request (live_message for 100 chats
// by groupIN) against a fake holding 1,000 or 10,000 chats of 3 messages
// each. The fake's cost should follow the chats asked for, not the rows it
// holds, so that `make bench-scale` measures the bridge.
func BenchmarkTableGroupIN(b *testing.B) {
	for _, chats := range []int{1_000, 10_000} {
		b.Run(fmt.Sprint(chats, "chats"), func(b *testing.B) {
			in := snowtest.New(snowtest.Options{})
			b.Cleanup(in.Close)
			groups := make([]string, 0, chats)
			for i := range chats {
				req, _ := http.NewRequest("POST", in.URL()+"/api/now/connect/support/queues/"+snowtest.DefaultQueue+"/sessions",
					strings.NewReader(`{"message":"help `+fmt.Sprint(i)+`"}`))
				req.SetBasicAuth(snowtest.DefaultUser, snowtest.DefaultPassword)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				var body struct {
					Result struct {
						Group string `json:"group"`
					} `json:"result"`
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err := json.Unmarshal(raw, &body); err != nil || body.Result.Group == "" {
					b.Fatalf("open %d: %s", i, raw)
				}
				groups = append(groups, body.Result.Group)
			}
			q := url.QueryEscape("groupIN" + strings.Join(groups[chats/2:chats/2+100], ",") + "^sys_created_on>=2020-01-01 00:00:00^ORDERBYsys_created_on")
			u := in.URL() + "/api/now/table/live_message?sysparm_query=" + q + "&sysparm_limit=1000"
			b.ResetTimer()
			for b.Loop() {
				req, _ := http.NewRequest("GET", u, nil)
				req.SetBasicAuth(snowtest.DefaultUser, snowtest.DefaultPassword)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
