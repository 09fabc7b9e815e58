package main

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportGraph holds the architecture's import rules on the real package
// graph (go list, including test imports): adapters never import each other,
// and nothing in bridge/ (or review/) imports an adapter or names one in its
// code.
func TestImportGraph(t *testing.T) {
	const mod = "github.com/handoffhq/handoff/"
	adapters := []string{"teams", "servicenow", "rasa", "slack"}
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "./...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	area := func(pkg string) string {
		rest, ok := strings.CutPrefix(pkg, mod)
		if !ok {
			return ""
		}
		first, _, _ := strings.Cut(rest, "/")
		return first
	}
	isAdapter := func(a string) bool {
		for _, x := range adapters {
			if a == x {
				return true
			}
		}
		return false
	}
	checked := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		from := area(f[0])
		checked[from] = true
		for _, imp := range f[1:] {
			to := area(imp)
			switch {
			case to == "" || to == from:
			case isAdapter(from) && isAdapter(to):
				t.Errorf("adapter %s imports adapter %s (%s → %s)", from, to, f[0], imp)
			case (from == "bridge" || from == "review") && isAdapter(to):
				t.Errorf("%s imports adapter %s (%s → %s)", from, to, f[0], imp)
			}
		}
	}
	for _, a := range append([]string{"bridge"}, adapters...) {
		if !checked[a] {
			t.Errorf("go list listed no package of %s/: the rule was not checked", a)
		}
	}
	// bridge/ (with its store and test helpers) never learns the name of
	// the desk added last, Slack: not even in a comment.
	scanned := 0
	err = filepath.WalkDir(filepath.Join("..", "..", "bridge"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		scanned++
		if bytes.Contains(bytes.ToLower(b), []byte("slack")) {
			t.Errorf("%s mentions Slack", p)
		}
		return nil
	})
	if err != nil || scanned < 10 {
		t.Fatalf("scanned %d files of bridge/: %v", scanned, err)
	}
}
