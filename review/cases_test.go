package review

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// TestReportShowsCases builds a week of handoffs from the clustering corpus,
// with agent topic labels on the MFA cases and CSAT on some, and checks that
// the HTML report lists the cases by reason and by intent with their
// utterances, topic, outcome and CSAT, shows the MFA cluster with the bot's
// guess, and suggests an intent name from the agreeing topic labels.
// mfaWeekRecords are the cluster corpus as handoffs of ISO week 2026-W46:
// the MFA topic guessed as password_reset at 0.41 with six agent labels and
// CSAT 2, the other topics guessed as "<topic>_guess".
func mfaWeekRecords() []bridge.ReviewRecord {
	var recs []bridge.ReviewRecord
	i := 0
	for _, topic := range slices.Sorted(maps.Keys(clusterCorpus)) { // a fixed order: the same week every run
		us := clusterCorpus[topic]
		for k, u := range us {
			r := bridge.ReviewRecord{SessionID: bridge.SessionID(fmt.Sprintf("%s-%d", topic, k)),
				StartedAt: weekFrom.Add(time.Duration(i) * time.Hour), Reason: "fallback", Intent: "password_reset", Confidence: 0.41,
				BotTurns: []bridge.Turn{{Role: "user", Text: u, Intent: "password_reset", Confidence: 0.41},
					{Role: "bot", Text: "Sorry?"}, {Role: "user", Text: "talk to a human"}},
				EndedAt: weekFrom.Add(time.Duration(i)*time.Hour + 10*time.Minute), CloseReason: bridge.ReasonAgentClosed}
			if topic != "mfa_new_phone" {
				r.Intent, r.Reason = topic+"_guess", "user_asked"
			} else if k < 6 {
				r.Verdict = &bridge.Verdict{Topic: "Reset MFA on new phone"}
				r.CSAT = &bridge.CSAT{Rating: 2}
			}
			recs = append(recs, r)
			i++
		}
	}
	return recs
}

func TestReportShowsCases(t *testing.T) {
	recs := mfaWeekRecords()
	src := &memSource{records: recs}
	var out bytes.Buffer
	if _, err := testExporter(t, ExportConfig{}).Export(context.Background(), &out, src, weekFrom, weekTo, FormatHTML); err != nil {
		t.Fatal(err)
	}
	html := out.String()
	if testing.Verbose() {
		i := strings.Index(html, "What users asked")
		t.Log(html[i : i+3000])
	}
	for _, want := range []string{
		"handoffs looked like “Reset MFA on new phone”</b>; the bot guessed <code>password_reset at 0.41 (1",
		`Suggested new intent: <code class="suggested">reset_mfa_on_new_phone</code>`,
		"<b>fallback</b>: 12 handoffs",
		"<b>user_asked</b>: 60 handoffs",
		"<b>vpn_drops_guess</b>: 12 handoffs",
		"“MFA stopped working after I switched phones” → “talk to a human”",
		"<td>Reset MFA on new phone</td><td>agent_closed</td><td>2</td>",
		"Employee rating (CSAT) of agent-handled chats: 2.0 / 5 from 6 ratings.",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Count(html, `class="cluster"`) < 6 {
		t.Errorf("report shows %d clusters, want the 6 topics", strings.Count(html, `class="cluster"`))
	}
}

// TestSuggestedIntentNeedsAgreement: a cluster's intent name is suggested
// from the agents' topic labels only when they agree (the top label on at
// least two cases and at least 60 % of the labelled ones); labels that
// disagree, or a single label, suggest nothing and the cluster is named by
// its most central utterance.
func TestSuggestedIntentNeedsAgreement(t *testing.T) {
	us := clusterCorpus["mfa_new_phone"][:8]
	for _, tc := range []struct {
		name   string
		topics []string // per utterance, "" unlabelled
		want   string
	}{
		{"all agree", []string{"Reset MFA on new phone", "reset  MFA on new phone", "Reset MFA on new phone"}, "reset_mfa_on_new_phone"},
		{"three of four", []string{"MFA new phone", "MFA new phone", "MFA new phone", "Authenticator app"}, "mfa_new_phone"},
		{"split evenly", []string{"MFA new phone", "MFA new phone", "Authenticator app", "Authenticator app"}, ""},
		{"no majority", []string{"MFA new phone", "MFA new phone", "Authenticator app", "Token sync", "Phone swap"}, ""},
		{"one label", []string{"MFA new phone"}, ""},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs := func() []clusterDoc {
				var docs []clusterDoc
				for _, u := range us {
					docs = append(docs, clusterDoc{text: u, intent: "password_reset", confidence: 0.41})
				}
				return docs
			}
			// Label members of the largest cluster (the one shown first).
			members := clusterDocs(docs())[0].docs
			if len(members) < 5 {
				t.Fatalf("the largest cluster of %d paraphrases has %d members, want at least 5", len(us), len(members))
			}
			labelled := docs()
			for i, topic := range tc.topics {
				labelled[members[i]].topic = topic
			}
			rows := describeClusters(labelled)
			if len(rows) == 0 || rows[0].Size != len(members) {
				t.Fatalf("labels changed the clusters: %+v", rows)
			}
			if got := rows[0].Suggested; got != tc.want {
				t.Errorf("suggested %q, want %q (topics %v)", got, tc.want, rows[0].Topics)
			}
			if tc.want == "" && rows[0].LooksLike != rows[0].Examples[0] {
				t.Errorf("without agreement the cluster is named %q, want its most central utterance %q", rows[0].LooksLike, rows[0].Examples[0])
			}
		})
	}
}
