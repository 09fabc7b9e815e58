package review

import (
	"cmp"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Lexical clustering of what users wrote before a handoff: no model, no
// download. Each utterance becomes a TF-IDF vector over normalised word stems
// (lower case, stop words dropped, a light suffix stemmer, redaction tokens
// ignored); utterances are grouped greedily by cosine similarity to the
// running cluster centroids, then every utterance is moved to its nearest
// centroid in a few refinement passes (k-means on the found clusters).

// clusterThreshold is the cosine similarity an utterance needs to a cluster's
// centroid to join it. Tuned on the fixed corpus of cluster_test.go.
const clusterThreshold = 0.3

// mergeThreshold is the cosine similarity of two cluster centroids above
// which the clusters are merged.
const mergeThreshold = 0.25

// stopWords are English function words and chat filler that say nothing
// about the topic.
var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a about after again all am an and any are as at be been before being but by can
		cannot could did do does doing don dont for from get gets getting got had has have having he hello help her hi
		how i im i'm into is isnt it its it's ive just keep keeps let me mine more my myself need needs no not now of
		on once only or our out over please pls same says she should since so some still than thank thanks that the
		their them then there these they this those to too trying try tried up us very via was wasnt we were what
		when where which while who why will with wont would you your yours hey yes ok okay also again anymore
		today yesterday morning since cant can't doesnt doesn't isn't won't didnt didn't`) {
		m[w] = true
	}
	return m
}()

// stem strips common English suffixes so that "printing", "printed" and
// "prints" meet at "print". It is deliberately crude: it only has to make
// paraphrases share tokens.
func stem(w string) string {
	for _, suf := range []string{"ings", "ing", "edly", "ed", "ies", "es", "s", "ly"} {
		if len(w) > len(suf)+2 && strings.HasSuffix(w, suf) {
			w = strings.TrimSuffix(w, suf)
			if suf == "ies" {
				w += "y"
			}
			break
		}
	}
	// "stopped" → "stopp" → "stop"
	if n := len(w); n > 3 && w[n-1] == w[n-2] && !strings.ContainsRune("aeiouls", rune(w[n-1])) {
		w = w[:n-1]
	}
	return w
}

// tokens returns the normalised content tokens of s.
func tokens(s string) []string {
	s = redactionTokenRE.ReplaceAllString(strings.ToLower(s), " ")
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\'' }) {
		f = strings.Trim(f, "'")
		if f == "" || stopWords[f] {
			continue
		}
		if isNumber(f) {
			continue // ticket numbers, counts: not the topic
		}
		out = append(out, stem(f))
	}
	return out
}

// redactionTokenRE matches what redaction leaves in place of PII.
var redactionTokenRE = regexp.MustCompile(strings.Join([]string{regexp.QuoteMeta(TokenEmail), regexp.QuoteMeta(TokenPhone),
	regexp.QuoteMeta(TokenCard), regexp.QuoteMeta(TokenName), regexp.QuoteMeta(TokenRedacted)}, "|"))

func isNumber(w string) bool {
	for _, r := range w {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

// sparse is a unit-length TF-IDF vector.
type sparse map[string]float64

func (v sparse) dot(w sparse) float64 {
	if len(w) < len(v) {
		v, w = w, v
	}
	s := 0.0
	for k, x := range v {
		s += x * w[k]
	}
	return s
}

func normalize(v sparse) sparse {
	n := 0.0
	for _, x := range v {
		n += x * x
	}
	if n == 0 {
		return v
	}
	n = math.Sqrt(n)
	for k := range v {
		v[k] /= n
	}
	return v
}

// clusterDoc is one utterance to cluster, with what the report shows about
// its handoff.
type clusterDoc struct {
	text       string
	intent     string
	confidence float64
	topic      string
	toks       []string
	vec        sparse
}

// cluster is a group of similar utterances.
type cluster struct {
	docs     []int
	centroid sparse
}

// clusterDocs groups docs and returns the clusters, largest first (ties by
// first member). Docs with no content token form no cluster.
func clusterDocs(docs []clusterDoc) []cluster {
	df := map[string]int{}
	for i := range docs {
		docs[i].toks = tokens(docs[i].text)
		seen := map[string]bool{}
		for _, t := range docs[i].toks {
			if !seen[t] {
				seen[t] = true
				df[t]++
			}
		}
	}
	n := float64(len(docs))
	vecs := make([]sparse, len(docs))
	for i, d := range docs {
		if len(d.toks) == 0 {
			continue
		}
		v := sparse{}
		for _, t := range d.toks {
			v[t]++
		}
		for t, tf := range v {
			v[t] = (1 + math.Log(tf)) * (math.Log((1+n)/(1+float64(df[t]))) + 1)
		}
		vecs[i] = normalize(v)
		docs[i].vec = vecs[i]
	}

	var cs []cluster
	// postings lists, per term, the clusters whose centroid has it: only
	// those can be similar to a vector with that term.
	postings := map[string][]int{}
	index := func(c int) {
		for t := range cs[c].centroid {
			if l := postings[t]; len(l) == 0 || l[len(l)-1] != c {
				postings[t] = append(l, c)
			}
		}
	}
	candidates := func(v sparse, seen map[int]bool) []int {
		clear(seen)
		var out []int
		for t := range v {
			for _, c := range postings[t] {
				if !seen[c] {
					seen[c] = true
					out = append(out, c)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	seen := map[int]bool{}

	// Greedy pass: join the nearest centroid above the threshold, else start a
	// new cluster.
	assign := make([]int, len(docs))
	for i, v := range vecs {
		assign[i] = -1
		if v == nil {
			continue
		}
		best, bestSim := -1, clusterThreshold
		for _, c := range candidates(v, seen) {
			if s := v.dot(cs[c].centroid); s >= bestSim {
				best, bestSim = c, s
			}
		}
		if best < 0 {
			cs = append(cs, cluster{})
			best = len(cs) - 1
		}
		assign[i] = best
		cs[best].docs = append(cs[best].docs, i)
		cs[best].centroid = centroid(vecs, cs[best].docs)
		index(best)
	}

	// Merge: join clusters whose centroids are alike enough (paraphrases that
	// share different words with their topic's other members meet here).
	// Candidate pairs are taken most similar first; a pair is merged if the
	// clusters they now belong to are still alike enough.
	type pair struct {
		a, b int
		sim  float64
	}
	var pairs []pair
	for i := range cs {
		for _, j := range candidates(cs[i].centroid, seen) {
			if j <= i {
				continue
			}
			if s := cs[i].centroid.dot(cs[j].centroid); s >= mergeThreshold {
				pairs = append(pairs, pair{i, j, s})
			}
		}
	}
	slices.SortStableFunc(pairs, func(x, y pair) int { return cmp.Compare(y.sim, x.sim) })
	root := make([]int, len(cs))
	for i := range root {
		root[i] = i
	}
	find := func(i int) int {
		for root[i] != i {
			root[i] = root[root[i]]
			i = root[i]
		}
		return i
	}
	for _, p := range pairs {
		a, b := find(p.a), find(p.b)
		if a == b || cs[a].centroid.dot(cs[b].centroid) < mergeThreshold {
			continue
		}
		cs[a].docs = append(cs[a].docs, cs[b].docs...)
		cs[a].centroid = centroid(vecs, cs[a].docs)
		cs[b].docs, cs[b].centroid = nil, nil
		root[b] = a
	}
	for d, c := range assign {
		if c >= 0 {
			assign[d] = find(c)
		}
	}
	reindex := func() {
		clear(postings)
		for c := range cs {
			if len(cs[c].docs) > 0 {
				index(c)
			}
		}
	}
	reindex()

	// Refinement: move each doc to its nearest centroid, recompute, repeat.
	for range 3 {
		moved := false
		for i, v := range vecs {
			if v == nil {
				continue
			}
			best, bestSim := assign[i], -1.0
			for _, c := range candidates(v, seen) {
				if s := v.dot(cs[c].centroid); s > bestSim+1e-12 {
					best, bestSim = c, s
				}
			}
			if best != assign[i] && bestSim >= clusterThreshold {
				assign[i], moved = best, true
			}
		}
		if !moved {
			break
		}
		for c := range cs {
			cs[c].docs = cs[c].docs[:0]
		}
		for i, c := range assign {
			if c >= 0 {
				cs[c].docs = append(cs[c].docs, i)
			}
		}
		for c := range cs {
			cs[c].centroid = centroid(vecs, cs[c].docs)
		}
		reindex()
	}
	cs = slices.DeleteFunc(cs, func(c cluster) bool { return len(c.docs) == 0 })
	slices.SortStableFunc(cs, func(a, b cluster) int {
		return cmp.Or(cmp.Compare(len(b.docs), len(a.docs)), cmp.Compare(a.docs[0], b.docs[0]))
	})
	return cs
}

func centroid(vecs []sparse, members []int) sparse {
	c := sparse{}
	for _, i := range members {
		for k, x := range vecs[i] {
			c[k] += x
		}
	}
	return normalize(c)
}

// central returns up to n members of c, the most central first.
func (c cluster) central(docs []clusterDoc, n int) []int {
	m := slices.Clone(c.docs)
	slices.SortStableFunc(m, func(a, b int) int { return cmp.Compare(docs[b].vec.dot(c.centroid), docs[a].vec.dot(c.centroid)) })
	return m[:min(n, len(m))]
}
