package review

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// clusterCorpus is a fixed corpus of what employees write before a handoff:
// 72 utterances, 12 paraphrases for each of 6 topics, written the way people
// do (typos of case, filler, different word order, different details).
var clusterCorpus = map[string][]string{
	"mfa_new_phone": {
		"I got a new phone and now the authenticator app doesn't work",
		"MFA stopped working after I switched phones",
		"new phone, how do I move my authenticator",
		"cant sign in, the MFA code goes to my old phone",
		"my old phone is broken and I need MFA on the new phone",
		"authenticator not set up on my new iPhone",
		"how do I register MFA on a new phone",
		"lost my phone, can't approve the MFA prompt",
		"the authenticator app shows no accounts on my new phone",
		"MFA prompt still goes to my old phone",
		"set up authenticator again after phone replacement",
		"I changed my phone and MFA is asking for a code I don't get",
	},
	"vpn_drops": {
		"the VPN keeps disconnecting every few minutes",
		"vpn drops when I join a Teams call",
		"my VPN connection is unstable at home",
		"VPN disconnects all the time since yesterday",
		"cannot stay connected to the vpn",
		"the vpn client says connection lost",
		"VPN connection drops after 5 minutes",
		"vpn disconnecting randomly on wifi",
		"my vpn connection keeps dropping",
		"the VPN disconnected again, third time today",
		"vpn unstable, constantly reconnecting",
		"why does the VPN connection drop so often",
	},
	"printer_jam": {
		"the printer on floor 3 is jammed",
		"paper jam in the printer near the kitchen",
		"printer says paper jam but there is no paper stuck",
		"the office printer is jammed again",
		"printer jammed and shows an error light",
		"there is a paper jam in printer PRN-204",
		"the big printer keeps jamming",
		"how do I clear a paper jam on the printer",
		"printer jams on every print job",
		"printer stuck with jammed paper in tray 2",
		"paper keeps jamming in the printer",
		"the color printer is jammed",
	},
	"password_expired": {
		"my password expired and I can't log in",
		"password expired, how do I reset it",
		"it says my password has expired",
		"I need to reset my expired password",
		"windows says the password expired",
		"my account is locked because the password expired",
		"password expired while I was on holiday",
		"reset expired password please",
		"the password expired message won't go away",
		"how to change an expired password from home",
		"expired password on my laptop login",
		"my password has expired and the reset link fails",
	},
	"laptop_wont_boot": {
		"my laptop won't boot",
		"laptop does not start, black screen",
		"the laptop is stuck on the boot screen",
		"laptop won't turn on after the update",
		"my laptop shows a blue screen when booting",
		"laptop boots into a black screen",
		"the laptop won't start at all",
		"laptop restarts in a loop and never boots",
		"after the update my laptop does not boot",
		"my laptop screen stays black on start",
		"laptop stuck at the logo and won't boot",
		"the laptop does not turn on",
	},
	"software_install": {
		"I need Visio installed",
		"can you install Visio on my laptop",
		"please install Adobe Acrobat Pro",
		"request to install Python on my machine",
		"how do I get software installed",
		"I need a license for Visio",
		"install Power BI desktop for me please",
		"need admin rights to install software",
		"can I get Tableau installed",
		"software install request for Notepad++",
		"the software center won't install Acrobat",
		"please install Visio and Project",
	},
}

// TestClusterCorpus clusters the fixed corpus and checks that paraphrases end
// up together and unrelated utterances apart: purity (the share of
// utterances in the majority topic of their cluster) and inverse purity (the
// share in the largest cluster of their topic) are printed and must both be
// high, and there must be about as many clusters as topics.
func TestClusterCorpus(t *testing.T) {
	var docs []clusterDoc
	var truth []string
	for topic, us := range clusterCorpus {
		for _, u := range us {
			docs = append(docs, clusterDoc{text: u})
			truth = append(truth, topic)
		}
	}
	if len(docs) < 60 || len(clusterCorpus) < 6 {
		t.Fatalf("corpus has %d utterances in %d topics; want at least 60 in 6", len(docs), len(clusterCorpus))
	}
	cs := clusterDocs(docs)
	purity, inverse := clusterPurity(cs, truth)
	t.Logf("%d utterances in %d topics → %d clusters; purity %.3f, inverse purity %.3f", len(docs), len(clusterCorpus), len(cs), purity, inverse)
	for i, c := range cs {
		var b strings.Builder
		for _, d := range c.docs {
			fmt.Fprintf(&b, " [%s] %q", truth[d], docs[d].text)
		}
		t.Logf("cluster %d (%d):%s", i, len(c.docs), b.String())
	}
	if purity < 0.9 {
		t.Errorf("purity %.3f, want ≥ 0.9: unrelated utterances were grouped together", purity)
	}
	if inverse < 0.75 {
		t.Errorf("inverse purity %.3f, want ≥ 0.75: paraphrases were split apart", inverse)
	}
	if len(cs) < 6 || len(cs) > 12 {
		t.Errorf("%d clusters for 6 topics, want 6 to 12", len(cs))
	}
}

// clusterPurity returns purity and inverse purity of cs against the true
// topic of every doc.
func clusterPurity(cs []cluster, truth []string) (purity, inverse float64) {
	total := 0
	best := map[string]int{} // topic → size of its largest share in one cluster
	size := map[string]int{}
	for _, t := range truth {
		size[t]++
	}
	for _, c := range cs {
		count := map[string]int{}
		for _, d := range c.docs {
			count[truth[d]]++
		}
		m := 0
		for topic, n := range count {
			m = max(m, n)
			best[topic] = max(best[topic], n)
		}
		purity += float64(m)
		total += len(c.docs)
	}
	for _, n := range best {
		inverse += float64(n)
	}
	return purity / float64(len(truth)), inverse / float64(len(truth))
}

func TestTokens(t *testing.T) {
	for in, want := range map[string]string{
		"The printer keeps JAMMING!":        "printer jam",
		"VPN disconnects, call +49 [phone]": "vpn disconnect call",
		"my password expired on INC0012345": "password expir inc0012345",
		"printing printed prints":           "print print print",
		"":                                  "",
	} {
		if got := strings.Join(tokens(in), " "); got != want {
			t.Errorf("tokens(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkClusterWorstCase clusters maxClusterDocs utterances that share
// little (random words from a 2,000-word vocabulary), the case that makes the
// most clusters and so the most comparisons.
func BenchmarkClusterWorstCase(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := make([]string, 2000)
	for i := range vocab {
		vocab[i] = fmt.Sprintf("w%dx", i)
	}
	docs := make([]clusterDoc, maxClusterDocs)
	for i := range docs {
		var ws []string
		for range 4 + rng.IntN(8) {
			ws = append(ws, vocab[rng.IntN(len(vocab))])
		}
		docs[i].text = strings.Join(ws, " ")
	}
	for b.Loop() {
		cs := clusterDocs(docs)
		b.ReportMetric(float64(len(cs)), "clusters")
	}
}
