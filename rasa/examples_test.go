package rasa

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestExamples keeps rasa/examples valid and consistent with the client's
// defaults: YAML parses, the slots the handback sets are declared with
// mappings, the rules call actions the domain lists, and the Python action
// file is syntactically valid (when python3 is installed).
func TestExamples(t *testing.T) {
	var domain struct {
		Version string         `yaml:"version"`
		Intents []string       `yaml:"intents"`
		Slots   map[string]any `yaml:"slots"`
		Resp    map[string]any `yaml:"responses"`
		Actions []string       `yaml:"actions"`
	}
	readYAML(t, "examples/domain.yml", &domain)
	if domain.Version != "3.1" || !slices.Contains(domain.Intents, "talk_to_human") {
		t.Fatalf("domain: %+v", domain)
	}
	for _, name := range []string{DefaultSlotHandoffActive, DefaultSlotOutcome} {
		slot, ok := domain.Slots[name].(map[string]any)
		if !ok {
			t.Fatalf("slot %s missing", name)
		}
		if _, ok := slot["mappings"].([]any); !ok || slot["influence_conversation"] != false {
			t.Fatalf("slot %s: %v", name, slot)
		}
	}
	for _, r := range []string{"utter_handoff", "utter_handoff_fallback", "utter_default"} {
		if _, ok := domain.Resp[r]; !ok {
			t.Errorf("response %s missing", r)
		}
	}

	var rules struct {
		Rules []struct {
			Rule  string              `yaml:"rule"`
			Steps []map[string]string `yaml:"steps"`
		} `yaml:"rules"`
	}
	readYAML(t, "examples/data/rules.yml", &rules)
	triggers := map[string]string{}
	for _, r := range rules.Rules {
		if len(r.Steps) != 2 {
			t.Fatalf("rule %q: %v", r.Rule, r.Steps)
		}
		action := r.Steps[1]["action"]
		if !slices.Contains(domain.Actions, action) {
			t.Errorf("rule %q calls %q, not in the domain's actions", r.Rule, action)
		}
		triggers[r.Steps[0]["intent"]] = action
	}
	if triggers["talk_to_human"] != "action_handoff" || triggers["nlu_fallback"] != "action_fallback_or_handoff" {
		t.Fatalf("rules: %v", triggers)
	}

	var nlu struct {
		NLU []struct {
			Intent   string `yaml:"intent"`
			Examples string `yaml:"examples"`
		} `yaml:"nlu"`
	}
	readYAML(t, "examples/data/nlu.yml", &nlu)
	if len(nlu.NLU) != 1 || nlu.NLU[0].Intent != "talk_to_human" || strings.Count(nlu.NLU[0].Examples, "\n- ") < 5 {
		t.Fatalf("nlu: %+v", nlu)
	}

	src, err := os.ReadFile(filepath.Join("examples", "actions", "handoff.py"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"action_handoff"`, `"action_fallback_or_handoff"`, `json_message={"handoff": payload}`, `HANDOFF_ACTIVE_SLOT = "handoff_active"`, `HANDOFF_OUTCOME_SLOT = "handoff_outcome"`} {
		if !strings.Contains(string(src), want) {
			t.Errorf("handoff.py lacks %s", want)
		}
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Log("python3 not installed: skipping the syntax check of handoff.py")
		return
	}
	// ast.parse checks the syntax without writing __pycache__ into the tree.
	out, err := exec.Command(python, "-c", "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])",
		filepath.Join("examples", "actions", "handoff.py")).CombinedOutput()
	if err != nil {
		t.Fatalf("handoff.py: %v\n%s", err, out)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
