package review

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/handoffhq/handoff/bridge"
)

// Bounds of the report's case lists and clusters (see reportStats): memory
// stays bounded whatever the number of handoffs.
const (
	maxCaseGroups    = 200  // reasons or intents with a case list; later new ones are only counted
	casesPerGroup    = 20   // cases listed per reason or intent (the first ones of the range)
	maxClusterDocs   = 3000 // utterances clustered (the first ones of the range)
	topClusters      = 12   // clusters shown
	clusterExamples  = 4    // examples shown per cluster
	utterancesOfCase = 3    // last user utterances shown per case
)

// caseRow is one handoff in the report's lists.
type caseRow struct {
	Started    string
	Utterances []string
	Intent     string
	Confidence string
	Topic      string
	Outcome    string
	CSAT       int
}

// caseGroup is the cases of one reason or one intent.
type caseGroup struct {
	Label string
	Total int
	Cases []caseRow
}

// caseLists keeps the first casesPerGroup cases of each of up to
// maxCaseGroups labels.
type caseLists struct {
	groups map[string]*caseGroup
	order  []string
}

func newCaseLists() *caseLists { return &caseLists{groups: map[string]*caseGroup{}} }

func (l *caseLists) add(label string, c func() caseRow) {
	g := l.groups[label]
	if g == nil {
		if len(l.groups) >= maxCaseGroups {
			return
		}
		g = &caseGroup{Label: label}
		l.groups[label] = g
		l.order = append(l.order, label)
	}
	g.Total++
	if len(g.Cases) < casesPerGroup {
		g.Cases = append(g.Cases, c())
	}
}

// top returns the n largest groups.
func (l *caseLists) top(n int) []caseGroup {
	out := make([]caseGroup, 0, len(l.groups))
	for _, k := range l.order {
		out = append(out, *l.groups[k])
	}
	slices.SortStableFunc(out, func(a, b caseGroup) int { return cmp.Compare(b.Total, a.Total) })
	return out[:min(n, len(out))]
}

// lastUtterances returns the texts of the last n user turns, oldest first,
// without button payloads.
func lastUtterances(turns []bridge.Turn, n int) []string {
	var out []string
	for i := len(turns) - 1; i >= 0 && len(out) < n; i-- {
		t := turns[i]
		if t.Role != "user" || strings.HasPrefix(strings.TrimSpace(t.Text), "/") || strings.TrimSpace(t.Text) == "" {
			continue
		}
		out = append(out, t.Text)
	}
	slices.Reverse(out)
	return out
}

// telling returns the utterance that says most about what the user wanted:
// of the last three user turns, the one with the most content words (a final
// "talk to a human" says less than the question before it).
func telling(utterances []string) string {
	best, bestN := "", -1
	for i := len(utterances) - 1; i >= 0; i-- {
		if n := len(tokens(utterances[i])); n > bestN {
			best, bestN = utterances[i], n
		}
	}
	return best
}

// clusterRow is one cluster as the report shows it.
type clusterRow struct {
	Size      int
	LooksLike string
	Examples  []string
	Intents   []string // "password_reset at 0.41 (20)"
	Topics    []string // agent topic labels with counts
	Suggested string   // a new intent name, when the agents' topics agree
}

// describeClusters turns the clusters of docs into report rows.
func describeClusters(docs []clusterDoc) []clusterRow {
	cs := clusterDocs(docs)
	var rows []clusterRow
	for _, c := range cs[:min(topClusters, len(cs))] {
		if len(c.docs) < 2 && len(rows) > 0 {
			break // singletons say nothing once larger clusters are shown
		}
		r := clusterRow{Size: len(c.docs)}
		for _, i := range c.central(docs, clusterExamples) {
			r.Examples = append(r.Examples, docs[i].text)
		}
		type agg struct {
			n   int
			sum float64
		}
		intents, topics, shown := map[string]*agg{}, map[string]int{}, map[string]string{}
		labelled := 0
		for _, i := range c.docs {
			d := docs[i]
			a := intents[orNone(d.intent)]
			if a == nil {
				a = &agg{}
				intents[orNone(d.intent)] = a
			}
			a.n++
			a.sum += d.confidence
			if t := strings.ToLower(strings.Join(strings.Fields(d.topic), " ")); t != "" {
				if topics[t] == 0 {
					shown[t] = strings.Join(strings.Fields(d.topic), " ")
				}
				topics[t]++
				labelled++
			}
		}
		for _, k := range sortedByCount(intents, func(a *agg) int { return a.n })[:min(3, len(intents))] {
			a := intents[k]
			r.Intents = append(r.Intents, fmt.Sprintf("%s at %s (%d)", k, formatConfidence(a.sum/float64(a.n)), a.n))
		}
		tk := sortedByCount(topics, func(n int) int { return n })
		for _, k := range tk[:min(3, len(tk))] {
			r.Topics = append(r.Topics, fmt.Sprintf("%s (%d)", shown[k], topics[k]))
		}
		r.LooksLike = r.Examples[0]
		if len(tk) > 0 && topics[tk[0]] >= 2 && 10*topics[tk[0]] >= 6*labelled {
			r.LooksLike, r.Suggested = shown[tk[0]], intentSlug(tk[0])
		}
		rows = append(rows, r)
	}
	return rows
}

func sortedByCount[V any](m map[string]V, count func(V) int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(count(m[b]), count(m[a])), cmp.Compare(a, b)) })
	return keys
}

var nonSlugRE = regexp.MustCompile(`[^a-z0-9]+`)

// intentSlug makes an intent name of a topic label: "Reset MFA on new
// phone" → "reset_mfa_on_new_phone".
func intentSlug(topic string) string {
	s := strings.Trim(nonSlugRE.ReplaceAllString(strings.ToLower(topic), "_"), "_")
	if len(s) > 50 {
		s = strings.TrimRight(s[:50], "_")
	}
	return s
}
