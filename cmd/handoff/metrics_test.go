package main

import (
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// sample returns the value of the series (name plus labels exactly as
// exposed), or -1 when absent.
func sample(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// exportedNames returns every metric family name in a scrape.
func exportedNames(body string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			out[strings.Fields(rest)[0]] = true
		}
	}
	return out
}

// TestMetricsAnswerQuestions runs one handoff through the real service with
// HANDOFF_METRICS_ADDR set, then scrapes the separate listener: every
// histogram and counter of the README's metrics section has observed the
// conversation, /metrics is gone from the bot's port, and every metric the
// Grafana dashboard and the alert rules name is exported.
func TestMetricsAnswerQuestions(t *testing.T) {
	metricsAddr := freeAddr(t)
	w := newWorld(t, worldOpts{extra: map[string]string{"HANDOFF_METRICS_ADDR": metricsAddr}})
	u := teamstest.NewUser("Metrics Employee")
	runConversation(w, u, lifecycleEndings("connect")[1]) // the user ends the chat

	w.mu.Lock()
	base := w.base
	w.mu.Unlock()
	if code, _ := get(t, base+"/metrics"); code != 404 {
		t.Fatalf("/metrics on the bot's port = %d with HANDOFF_METRICS_ADDR set; want 404", code)
	}
	code, body := get(t, "http://"+metricsAddr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics on HANDOFF_METRICS_ADDR = %d", code)
	}
	atLeast := map[string]float64{
		`handoff_relay_latency_seconds_count{direction="user_to_agent"}`:                3,
		`handoff_relay_latency_seconds_count{direction="agent_to_user"}`:                3,
		`handoff_relay_latency_seconds_count{direction="bot"}`:                          3,
		`handoff_handoffs_started_total{reason="user_asked"}`:                           1,
		`handoff_handoffs_ended_total{reason="` + string(bridge.ReasonUserEnded) + `"}`: 1,
		`handoff_queue_wait_seconds_count`:                                              1,
		`handoff_duration_seconds_count`:                                                1,
		`handoff_poll_lag_seconds_count`:                                                3,
		`handoff_outbound_requests_total{code="200",system="servicenow"}`:               1,
		`handoff_outbound_requests_total{code="200",system="teams"}`:                    1,
		`handoff_outbound_requests_total{code="200",system="rasa"}`:                     1,
		`handoff_ready`: 1,
	}
	for series, min := range atLeast {
		if v := sample(body, series); v < min {
			t.Errorf("%s = %v, want ≥ %v", series, v, min)
		}
	}
	// Nothing is pending once the conversation is over.
	if v := sample(body, "handoff_outbox_oldest_pending_age_seconds"); v < 0 {
		t.Errorf("handoff_outbox_oldest_pending_age_seconds is missing")
	}

	// /metrics does not grow with the number of chats: every label of the
	// service's own series is one of a fixed, small set (none names a
	// session, chat or conversation), as the README's Performance section
	// says.
	bounded := map[string]bool{"direction": true, "reason": true, "system": true, "code": true, "route": true,
		"status": true, "kind": true, "state": true, "job": true, "le": true}
	labelName := regexp.MustCompile(`([a-z_]+)="`)
	for _, line := range strings.Split(body, "\n") {
		series, _, _ := strings.Cut(line, " ")
		_, labels, ok := strings.Cut(series, "{")
		if !strings.HasPrefix(line, "handoff_") || !ok {
			continue
		}
		for _, m := range labelName.FindAllStringSubmatch(labels, -1) {
			if !bounded[m[1]] {
				t.Errorf("series %s has the label %q, which may grow with the number of chats", series, m[1])
			}
		}
	}

	exported := exportedNames(body)
	for _, name := range namesInDeployFiles(t) {
		if !exported[name] {
			t.Errorf("the dashboard or the alert rules use %s, which the service does not export", name)
		}
	}
}

// namesInDeployFiles returns the metric names deploy/grafana/handoff.json and
// deploy/prometheus/alerts.yml query (histogram series reduced to their
// family name; Prometheus' own "up" left out).
func namesInDeployFiles(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`\bhandoff_[a-z_]+`)
	seen := map[string]bool{}
	for _, f := range []string{"../../deploy/grafana/handoff.json", "../../deploy/prometheus/alerts.yml"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range re.FindAllString(string(raw), -1) {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if strings.HasSuffix(m, "_seconds"+suffix) {
					m = strings.TrimSuffix(m, suffix)
				}
			}
			seen[m] = true
			n++
		}
		if n < 5 {
			t.Fatalf("%s names only %d metrics", f, n)
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
