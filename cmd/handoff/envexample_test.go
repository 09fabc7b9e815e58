package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

const envExamplePath = "../../deploy/handoff.env.example"

// envExample renders every setting as a commented KEY=default line, grouped,
// for operators to copy (the systemd unit reads /etc/handoff/handoff.env).
func envExample() string {
	var b strings.Builder
	b.WriteString("# handoff configuration: every variable, with its default.\n")
	b.WriteString("# Generated from cmd/handoff/config.go by `go test ./cmd/handoff -run TestREADME -update-readme`; do not edit.\n")
	b.WriteString("# Copy to /etc/handoff/handoff.env (mode 0600), uncomment what you set. A secret can instead be read\n")
	b.WriteString("# from a file: NAME_FILE=/path (not both).\n")
	group := ""
	for _, s := range settings {
		if s.Group != group {
			group = s.Group
			fmt.Fprintf(&b, "\n# ---- %s ----\n", group)
		}
		help := s.Help
		if s.Secret {
			help += " [secret; or " + s.Name + "_FILE=/path]"
		}
		fmt.Fprintf(&b, "\n# %s\n#%s=%s\n", help, s.Name, s.Default)
	}
	return b.String()
}

// TestREADMEEnvExample keeps deploy/handoff.env.example equal to the
// settings the binary reads.
func TestREADMEEnvExample(t *testing.T) {
	want := envExample()
	if *updateReadme {
		if err := os.WriteFile(envExamplePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(envExamplePath)
	if err != nil {
		t.Fatalf("%v; run: go test ./cmd/handoff -run TestREADME -update-readme", err)
	}
	if string(got) != want {
		t.Fatal("deploy/handoff.env.example is out of date; run: go test ./cmd/handoff -run TestREADME -update-readme")
	}
	// Every line is a comment or blank, so copying the file changes nothing
	// until a line is uncommented, and each variable appears exactly once.
	for _, s := range settings {
		if n := strings.Count(want, "\n#"+s.Name+"="); n != 1 {
			t.Errorf("%s appears %d times", s.Name, n)
		}
	}
}
