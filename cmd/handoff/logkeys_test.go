package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLogKeySpelling holds the style rule that an error is logged under one
// key, "err": no slog call or attribute in the module's code uses "error"
// (or "error_message", "e") as a key.
func TestLogKeySpelling(t *testing.T) {
	logCalls := map[string]int{ // method → index of its first key/value argument
		"Debug": 1, "Info": 1, "Warn": 1, "Error": 1,
		"DebugContext": 2, "InfoContext": 2, "WarnContext": 2, "ErrorContext": 2,
		"Log": 3, "With": 0,
		"Any": 0, "String": 0, "Group": 0,
	}
	wrong := map[string]bool{"error": true, "error_message": true, "e": true, "Err": true}
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n != ".." && strings.HasPrefix(n, ".") || n == "node_modules" || n == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			first, ok := logCalls[sel.Sel.Name]
			if !ok || len(call.Args) <= first {
				return true
			}
			for i := first; i < len(call.Args); i += 2 {
				lit, ok := call.Args[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				if key, err := strconv.Unquote(lit.Value); err == nil && wrong[key] {
					t.Errorf("%s: %s(…) logs under the key %q; the project's key for errors is \"err\"", fset.Position(lit.Pos()), sel.Sel.Name, key)
				}
				if sel.Sel.Name == "Any" || sel.Sel.Name == "String" || sel.Sel.Name == "Group" {
					break // an attribute constructor has one key
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("scanned %d Go files; the walk did not find the module", files)
	}
}
