// Command kubeschema turns Kubernetes' OpenAPI v2 document (swagger.json of
// the k8s.io/kubernetes module, api/openapi-spec) into one standalone, strict
// JSON schema per kind, named as kubeconform looks them up
// ({{ .ResourceKind }}{{ .KindSuffix }}.json, e.g. deployment-apps-v1.json),
// so `kubeconform -strict` can validate the Helm chart without network:
//
//	kubeschema swagger.json outdir
//
// Strict means objects reject properties the API does not know
// (additionalProperties: false), which catches misspelt or misplaced fields.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

type doc struct {
	Definitions map[string]map[string]any `json:"definitions"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: kubeschema swagger.json outdir")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	var d doc
	if err := json.Unmarshal(raw, &d); err != nil {
		fail(fmt.Errorf("%s: %w", os.Args[1], err))
	}
	if err := os.MkdirAll(os.Args[2], 0o755); err != nil {
		fail(err)
	}
	n := 0
	for name, def := range d.Definitions {
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk, _ := g.(map[string]any)
			group, _ := gvk["group"].(string)
			version, _ := gvk["version"].(string)
			kind, _ := gvk["kind"].(string)
			suffix := "-" + version
			if group != "" {
				suffix = "-" + strings.Split(group, ".")[0] + suffix
			}
			schema := expand(d.Definitions, name, map[string]bool{})
			schema["$schema"] = "http://json-schema.org/schema#"
			out, err := json.Marshal(schema)
			if err != nil {
				fail(err)
			}
			file := filepath.Join(os.Args[2], strings.ToLower(kind)+suffix+".json")
			if err := os.WriteFile(file, out, 0o644); err != nil {
				fail(err)
			}
			n++
		}
	}
	fmt.Printf("kubeschema: %d schemas written to %s\n", n, os.Args[2])
}

// expand returns definition name with every $ref inlined (a reference back
// into a definition being expanded becomes {}), strict objects, and
// Kubernetes' string-or-number types spelled out.
func expand(defs map[string]map[string]any, name string, seen map[string]bool) map[string]any {
	switch name {
	case "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	case "io.k8s.apimachinery.pkg.api.resource.Quantity":
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	}
	if seen[name] {
		return map[string]any{}
	}
	seen[name] = true
	defer delete(seen, name)
	return walk(defs, defs[name], seen).(map[string]any)
}

func walk(defs map[string]map[string]any, v any, seen map[string]bool) any {
	switch t := v.(type) {
	case map[string]any:
		if ref, ok := t["$ref"].(string); ok {
			return expand(defs, strings.TrimPrefix(ref, "#/definitions/"), seen)
		}
		out := map[string]any{}
		for k, x := range t {
			if strings.HasPrefix(k, "x-kubernetes-") && k != "x-kubernetes-group-version-kind" {
				continue
			}
			if k == "properties" {
				props := map[string]any{}
				for pk, pv := range x.(map[string]any) {
					props[pk] = walk(defs, pv, seen)
				}
				out[k] = props
				continue
			}
			out[k] = walk(defs, x, seen)
		}
		if _, ok := out["properties"]; ok {
			if _, set := out["additionalProperties"]; !set {
				out["additionalProperties"] = false
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = walk(defs, x, seen)
		}
		return out
	}
	return v
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kubeschema:", err)
	os.Exit(1)
}
