package rasatest

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Script is what the fake bot understands and answers. Rules are tried in
// order against each user message; the first that matches decides the intent
// and the answer. A message no rule matches is an nlu_fallback, answered by
// Fallback. A message "/intent" (a button payload, Rasa's intent syntax) picks
// the first rule of that intent directly with confidence 1.0, and "/restart"
// restarts the conversation as Rasa's default action_restart does.
//
// A Script is also valid YAML (see ParseScript), for example:
//
//	rules:
//	  - intent: talk_to_human
//	    phrases: ["talk to live agent", "human"]
//	    replies: [{text: "Connecting you with an agent."}]
//	    handoff: {reason: user_asked, queue: it-desk}
//	  - intent: vpn_help
//	    pattern: '\bvpn\b'
//	    replies:
//	      - text: "Which client do you use?"
//	        buttons: [{title: GlobalProtect, payload: /vpn_globalprotect}]
//	fallback:
//	  replies: [{text: "Sorry, I didn't get that."}]
//	  handoff_after: 2
type Script struct {
	Rules    []Rule   `yaml:"rules" json:"rules"`
	Fallback Fallback `yaml:"fallback" json:"fallback"`
	// Slots are the domain's slots and their initial values. Slot events for
	// other names are recorded but change nothing, as in Rasa. Default:
	// handoff_active=false, handoff_outcome=null.
	Slots map[string]any `yaml:"slots" json:"slots"`
	// HandoffSlot is the bool slot a handoff sets to true. Default
	// "handoff_active".
	HandoffSlot string `yaml:"handoff_slot" json:"handoff_slot"`
}

// Rule maps user phrases to an intent and the bot's answer.
type Rule struct {
	Intent string `yaml:"intent" json:"intent"`
	// Phrases match case-insensitively on word boundaries anywhere in the
	// message ("hi" matches "Hi there" but not "this").
	Phrases []string `yaml:"phrases" json:"phrases"`
	// Pattern is a Go regular expression, matched case-insensitively.
	Pattern string `yaml:"pattern" json:"pattern"`
	// Confidence is the NLU confidence recorded for a phrase or pattern match.
	// Default 0.95.
	Confidence float64 `yaml:"confidence" json:"confidence"`
	// Action is the action name recorded in the tracker. Default
	// "action_handoff" for a handoff rule, else "utter_<intent>".
	Action  string  `yaml:"action" json:"action"`
	Replies []Reply `yaml:"replies" json:"replies"`
	// Handoff, when set, makes the action also send the handoff custom
	// payload {"handoff": {...}} and set the HandoffSlot to true.
	Handoff *Handoff `yaml:"handoff" json:"handoff"`
	// SetSlots are set by the action (slot events, in name order).
	SetSlots map[string]any `yaml:"set_slots" json:"set_slots"`
	// ActiveLoop activates a loop (form) of that name.
	ActiveLoop string `yaml:"active_loop" json:"active_loop"`
}

// Reply is one bot response. Like Rasa's REST channel the fake sends a text
// without buttons split at blank lines, text with buttons as one message, and
// the custom payload, image and attachment as messages of their own.
type Reply struct {
	Text       string   `yaml:"text" json:"text"`
	Buttons    []Button `yaml:"buttons" json:"buttons"`
	Image      string   `yaml:"image" json:"image"`
	Attachment any      `yaml:"attachment" json:"attachment"`
	Custom     any      `yaml:"custom" json:"custom"`
}

// Button is a quick reply.
type Button struct {
	Title   string `yaml:"title" json:"title"`
	Payload string `yaml:"payload" json:"payload"`
}

// Handoff is the payload of the handoff signal.
type Handoff struct {
	Reason string `yaml:"reason" json:"reason"`
	Queue  string `yaml:"queue,omitempty" json:"queue,omitempty"`
}

// Fallback answers messages no rule matches, as Rasa's FallbackClassifier and
// a fallback rule do.
type Fallback struct {
	// Threshold is the FallbackClassifier threshold: the confidence recorded
	// for nlu_fallback, above every guess in the ranking behind it. Default
	// 0.3 (Rasa's default).
	Threshold float64 `yaml:"threshold" json:"threshold"`
	// Action is the action recorded. Default "action_fallback_or_handoff" (see
	// rasa/examples).
	Action  string  `yaml:"action" json:"action"`
	Replies []Reply `yaml:"replies" json:"replies"`
	// HandoffAfter hands off on that many consecutive fallbacks. Default 2;
	// negative: never.
	HandoffAfter   int     `yaml:"handoff_after" json:"handoff_after"`
	HandoffReplies []Reply `yaml:"handoff_replies" json:"handoff_replies"`
	// Handoff is the signal's payload. Default reason "fallback".
	Handoff Handoff `yaml:"handoff" json:"handoff"`
}

// ParseScript reads a Script from YAML (or JSON). Unknown keys are errors.
func ParseScript(data []byte) (Script, error) {
	var sc Script
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&sc); err != nil {
		return Script{}, fmt.Errorf("rasatest: parse script: %w", err)
	}
	if _, err := compile(sc); err != nil {
		return Script{}, err
	}
	return sc, nil
}

// DefaultScript is a small IT-helpdesk bot: greetings, password resets (with
// buttons), VPN help, opening hours, thanks, a "talk to live agent" handoff
// (reason "user_asked") and a fallback that hands off (reason "fallback") on
// the second consecutive message it does not understand.
func DefaultScript() Script {
	return Script{
		Rules: []Rule{
			{
				Intent:  "talk_to_human",
				Phrases: []string{"talk to live agent", "live agent", "talk to a human", "talk to a person", "real person", "human", "speak to someone", "service desk agent"},
				Replies: []Reply{{Text: "Sure, I'm connecting you with a live agent from the IT service desk. Please stay in this chat."}},
				Handoff: &Handoff{Reason: "user_asked"},
			},
			{
				Intent:  "password_reset",
				Phrases: []string{"password", "reset my password", "forgot my password", "locked out", "account locked", "can't log in", "cannot log in"},
				Replies: []Reply{{
					Text: "I can help with that. What happened?",
					Buttons: []Button{
						{Title: "I forgot my password", Payload: "/password_forgotten"},
						{Title: "My account is locked", Payload: "/account_locked"},
					},
				}},
			},
			{
				Intent:  "password_forgotten",
				Replies: []Reply{{Text: "You can set a new password yourself at https://passwordreset.example.com with your phone's authenticator app. The new password works everywhere within 15 minutes."}},
			},
			{
				Intent:  "account_locked",
				Replies: []Reply{{Text: "Accounts unlock automatically 30 minutes after the last failed attempt. If you need access sooner, say \"talk to live agent\"."}},
			},
			{
				Intent:  "vpn_help",
				Phrases: []string{"vpn", "remote access", "globalprotect", "anyconnect", "work from home connection"},
				Replies: []Reply{{Text: "Most VPN problems go away with these steps:\n1. Quit the VPN client completely and start it again.\n2. Check that you can open https://www.example.com without the VPN.\n3. Sign in with your full e-mail address.\nIf it still fails, say \"talk to live agent\"."}},
			},
			{
				Intent:  "opening_hours",
				Phrases: []string{"opening hours", "office hours", "when are you open", "are you open", "hours", "open today"},
				Replies: []Reply{{Text: "The IT service desk is staffed Monday to Friday, 08:00-18:00 CET. Outside these hours I can still help, and urgent outages are handled by the on-call team."}},
			},
			{
				Intent:  "greet",
				Phrases: []string{"hi", "hello", "hey", "good morning", "good afternoon"},
				Replies: []Reply{{Text: "Hi! I'm the IT helpdesk bot. I can help with password resets, VPN problems and our opening hours. You can also say \"talk to live agent\"."}},
			},
			{
				Intent:  "thanks",
				Phrases: []string{"thanks", "thank you", "cheers", "bye", "goodbye"},
				Replies: []Reply{{Text: "You're welcome! Write any time you need IT help."}},
			},
		},
		Fallback: Fallback{
			Replies:        []Reply{{Text: "Sorry, I didn't understand that. I can help with password resets, VPN problems and opening hours, or you can say \"talk to live agent\"."}},
			HandoffAfter:   2,
			HandoffReplies: []Reply{{Text: "I'm still not sure what you need, so I'm handing you over to a colleague from the IT service desk."}},
			Handoff:        Handoff{Reason: "fallback"},
		},
	}
}

// compiled is a Script ready to run.
type compiled struct {
	rules        []compiledRule
	fallback     Fallback
	slots        map[string]any
	handoffSlot  string
	vocab        map[string]map[string]bool // intent -> words of its phrases
	intentsOrder []string
}

type compiledRule struct {
	Rule
	phrases [][]string
	re      *regexp.Regexp
}

const (
	defaultConfidence     = 0.95
	defaultThreshold      = 0.3
	defaultFallbackAction = "action_fallback_or_handoff"
	defaultHandoffAction  = "action_handoff"
	fallbackIntent        = "nlu_fallback"
	restartIntent         = "restart"
)

func compile(sc Script) (*compiled, error) {
	c := &compiled{
		fallback:    sc.Fallback,
		handoffSlot: sc.HandoffSlot,
		vocab:       map[string]map[string]bool{},
	}
	if c.handoffSlot == "" {
		c.handoffSlot = "handoff_active"
	}
	if sc.Slots == nil {
		c.slots = map[string]any{"handoff_active": false, "handoff_outcome": nil}
	} else {
		s, err := normalize(sc.Slots)
		if err != nil {
			return nil, fmt.Errorf("rasatest: script slots: %w", err)
		}
		c.slots, _ = s.(map[string]any)
	}
	if c.fallback.Threshold == 0 {
		c.fallback.Threshold = defaultThreshold
	}
	if c.fallback.Threshold < 0 || c.fallback.Threshold > 1 {
		return nil, fmt.Errorf("rasatest: fallback threshold %v is not in (0, 1]", c.fallback.Threshold)
	}
	if c.fallback.Action == "" {
		c.fallback.Action = defaultFallbackAction
	}
	if c.fallback.HandoffAfter == 0 {
		c.fallback.HandoffAfter = 2
	}
	if c.fallback.Handoff.Reason == "" {
		c.fallback.Handoff.Reason = "fallback"
	}
	// Replies are normalised in copies: the caller's Script is not touched.
	c.fallback.Replies = slices.Clone(c.fallback.Replies)
	c.fallback.HandoffReplies = slices.Clone(c.fallback.HandoffReplies)
	if err := checkReplies(c.fallback.Replies); err != nil {
		return nil, fmt.Errorf("rasatest: fallback: %w", err)
	}
	if err := checkReplies(c.fallback.HandoffReplies); err != nil {
		return nil, fmt.Errorf("rasatest: fallback: %w", err)
	}
	for i, r := range sc.Rules {
		if strings.TrimSpace(r.Intent) == "" {
			return nil, fmt.Errorf("rasatest: rule %d has no intent", i)
		}
		if r.Intent == fallbackIntent || r.Intent == restartIntent {
			return nil, fmt.Errorf("rasatest: rule %d: intent %q is built in", i, r.Intent)
		}
		cr := compiledRule{Rule: r}
		if cr.Confidence == 0 {
			cr.Confidence = defaultConfidence
		}
		if cr.Confidence < 0 || cr.Confidence > 1 {
			return nil, fmt.Errorf("rasatest: rule %d (%s): confidence %v is not in (0, 1]", i, r.Intent, r.Confidence)
		}
		if cr.Action == "" {
			if r.Handoff != nil {
				cr.Action = defaultHandoffAction
			} else {
				cr.Action = "utter_" + r.Intent
			}
		}
		for _, p := range r.Phrases {
			words := tokenize(p)
			if len(words) == 0 {
				return nil, fmt.Errorf("rasatest: rule %d (%s): phrase %q has no words", i, r.Intent, p)
			}
			cr.phrases = append(cr.phrases, words)
			if c.vocab[r.Intent] == nil {
				c.vocab[r.Intent] = map[string]bool{}
			}
			for _, w := range words {
				c.vocab[r.Intent][w] = true
			}
		}
		if r.Pattern != "" {
			pat := r.Pattern
			if !strings.HasPrefix(pat, "(?i)") {
				pat = "(?i)" + pat
			}
			re, err := regexp.Compile(pat)
			if err != nil {
				return nil, fmt.Errorf("rasatest: rule %d (%s): %w", i, r.Intent, err)
			}
			cr.re = re
		}
		if r.Handoff != nil {
			h := *r.Handoff
			cr.Handoff = &h
		}
		cr.Replies = slices.Clone(r.Replies)
		if err := checkReplies(cr.Replies); err != nil {
			return nil, fmt.Errorf("rasatest: rule %d (%s): %w", i, r.Intent, err)
		}
		if r.SetSlots != nil {
			s, err := normalize(r.SetSlots)
			if err != nil {
				return nil, fmt.Errorf("rasatest: rule %d (%s): set_slots: %w", i, r.Intent, err)
			}
			cr.SetSlots, _ = s.(map[string]any)
		}
		if !slices.Contains(c.intentsOrder, r.Intent) {
			c.intentsOrder = append(c.intentsOrder, r.Intent)
		}
		c.rules = append(c.rules, cr)
	}
	return c, nil
}

// checkReplies makes sure custom payloads and attachments encode as JSON
// (YAML allows maps with non-string keys, JSON does not).
func checkReplies(rs []Reply) error {
	for i := range rs {
		for _, v := range []*any{&rs[i].Custom, &rs[i].Attachment} {
			n, err := normalize(*v)
			if err != nil {
				return fmt.Errorf("reply %d: %w", i, err)
			}
			*v = n
		}
	}
	return nil
}

// normalize converts v to what encoding/json decodes (maps with string keys,
// []any, float64, ...), failing on values JSON cannot carry.
func normalize(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	v = stringKeys(v)
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// stringKeys turns YAML's map[any]any into map[string]any where keys are
// strings or scalars.
func stringKeys(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[fmt.Sprint(k)] = stringKeys(val)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[k] = stringKeys(val)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, val := range x {
			s[i] = stringKeys(val)
		}
		return s
	}
	return v
}

// tokenize lower-cases s and splits it into words of letters and digits.
func tokenize(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

func containsSeq(words, seq []string) bool {
	if len(seq) == 0 || len(seq) > len(words) {
		return false
	}
	for i := 0; i+len(seq) <= len(words); i++ {
		if slices.Equal(words[i:i+len(seq)], seq) {
			return true
		}
	}
	return false
}

// nlu is the fake NLU's reading of one message.
type nlu struct {
	intent     string
	confidence float64
	ranking    []map[string]any
	rule       *compiledRule // nil for fallback and restart
}

var errNoRule = errors.New("no rule")

// parse classifies text.
func (c *compiled) parse(text string) nlu {
	if name, ok := intentSyntax(text); ok {
		if name == restartIntent {
			return nlu{intent: restartIntent, confidence: 1, ranking: []map[string]any{{"name": restartIntent, "confidence": 1.0}}}
		}
		if r, err := c.ruleFor(name); err == nil {
			return nlu{intent: name, confidence: 1, ranking: []map[string]any{{"name": name, "confidence": 1.0}}, rule: r}
		}
	}
	words := tokenize(text)
	for i := range c.rules {
		r := &c.rules[i]
		matched := r.re != nil && r.re.MatchString(text)
		for _, p := range r.phrases {
			if matched {
				break
			}
			matched = containsSeq(words, p)
		}
		if matched {
			ranking := []map[string]any{{"name": r.Intent, "confidence": r.Confidence}}
			rest := 1 - r.Confidence
			guesses := c.guesses(words, r.Intent)
			var total float64
			for _, g := range guesses {
				total += g.score + 0.05
			}
			for _, g := range guesses {
				ranking = append(ranking, map[string]any{"name": g.intent, "confidence": rest * (g.score + 0.05) / total})
			}
			return nlu{intent: r.Intent, confidence: r.Confidence, ranking: capRanking(ranking), rule: r}
		}
	}
	// Rasa's FallbackClassifier: nlu_fallback with the threshold as confidence
	// in front of the classifier's own (low) ranking.
	thr := c.fallback.Threshold
	ranking := []map[string]any{{"name": fallbackIntent, "confidence": thr}}
	for _, g := range c.guesses(words, "") {
		ranking = append(ranking, map[string]any{"name": g.intent, "confidence": thr * (0.2 + 0.75*g.score)})
	}
	return nlu{intent: fallbackIntent, confidence: thr, ranking: capRanking(ranking)}
}

func capRanking(r []map[string]any) []map[string]any {
	if len(r) > 10 { // Rasa's default ranking_length
		r = r[:10]
	}
	return r
}

type guess struct {
	intent string
	score  float64
}

// guesses scores every intent but skip by the share of the message's words
// found in its phrases, best first.
func (c *compiled) guesses(words []string, skip string) []guess {
	var gs []guess
	for _, in := range c.intentsOrder {
		if in == skip {
			continue
		}
		hits := 0
		for _, w := range words {
			if c.vocab[in][w] {
				hits++
			}
		}
		gs = append(gs, guess{intent: in, score: float64(hits) / float64(len(words)+1)})
	}
	sort.SliceStable(gs, func(i, j int) bool { return gs[i].score > gs[j].score })
	return gs
}

func (c *compiled) ruleFor(intent string) (*compiledRule, error) {
	for i := range c.rules {
		if c.rules[i].Intent == intent {
			return &c.rules[i], nil
		}
	}
	return nil, errNoRule
}

// intentSyntax recognises Rasa's "/intent" and "/intent{...}" messages.
func intentSyntax(text string) (string, bool) {
	if !strings.HasPrefix(text, "/") {
		return "", false
	}
	name := text[1:]
	if i := strings.IndexAny(name, "{@ "); i >= 0 {
		name = name[:i]
	}
	return name, name != ""
}
