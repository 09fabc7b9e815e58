// Command testreport reads `go test -json` on stdin and prints what a plain
// `go test` prints (package results, and the full output of failing tests),
// then every skipped test with its reason, and a closing line
// "tests: N passed, N failed, N skipped". It exits 1 when a test or package
// failed, so `make test` can pipe through it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	type key struct{ pkg, test string }
	buf := map[key][]string{}
	var skipped []string
	passed, failed, skips := 0, 0, 0
	pkgFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Println(sc.Text()) // build errors and the like are not JSON
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output":
			if e.Test == "" {
				// Package lines: "ok", "FAIL", "PASS", panics, build output.
				if !strings.HasPrefix(e.Output, "=== ") && e.Output != "PASS\n" {
					fmt.Print(e.Output)
				}
				continue
			}
			buf[k] = append(buf[k], e.Output)
		case "pass":
			if e.Test != "" {
				passed++
			}
			delete(buf, k)
		case "skip":
			if e.Test == "" {
				delete(buf, k)
				continue
			}
			skips++
			reason := ""
			for _, l := range buf[k] {
				l = strings.TrimSpace(l)
				if l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- SKIP") {
					reason = l
				}
			}
			skipped = append(skipped, fmt.Sprintf("  %s %s: %s", e.Package, e.Test, reason))
			delete(buf, k)
		case "fail":
			if e.Test == "" {
				pkgFailed = true
				continue
			}
			failed++
			for _, l := range buf[k] {
				if !strings.HasPrefix(l, "=== ") {
					fmt.Print(l)
				}
			}
			delete(buf, k)
		}
	}
	if len(skipped) > 0 {
		sort.Strings(skipped)
		fmt.Printf("\nSkipped (%d):\n%s\n", len(skipped), strings.Join(skipped, "\n"))
	} else {
		fmt.Println("\nSkipped: none")
	}
	fmt.Printf("tests: %d passed, %d failed, %d skipped\n", passed, failed, skips)
	if failed > 0 || pkgFailed {
		os.Exit(1)
	}
}
