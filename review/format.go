package review

import (
	"fmt"
	"strings"
)

// Format is an export format.
type Format string

const (
	FormatCSV   Format = "csv"   // one row per handoff, for spreadsheets
	FormatJSONL Format = "jsonl" // one full record per line, for pipelines
	FormatNLU   Format = "nlu"   // Rasa NLU training data (YAML) of annotation candidates
	FormatHTML  Format = "html"  // a self-contained report with inline SVG charts
)

// Formats lists every format, in the order the weekly job writes them.
var Formats = []Format{FormatCSV, FormatJSONL, FormatNLU, FormatHTML}

// ParseFormat reads a format name, case-insensitively. Besides the names of the
// constants it accepts "ndjson" for jsonl and "rasa", "yaml" and "yml" for nlu.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "csv":
		return FormatCSV, nil
	case "jsonl", "ndjson":
		return FormatJSONL, nil
	case "nlu", "rasa", "yaml", "yml":
		return FormatNLU, nil
	case "html":
		return FormatHTML, nil
	}
	return "", fmt.Errorf("review: unknown export format %q (want csv, jsonl, nlu or html)", s)
}

// Ext returns the file name extension, with its dot: ".csv", ".jsonl",
// ".nlu.yml", ".html".
func (f Format) Ext() string {
	switch f {
	case FormatNLU:
		return ".nlu.yml"
	case FormatCSV, FormatJSONL, FormatHTML:
		return "." + string(f)
	}
	return ""
}

// ContentType returns the HTTP media type of the format.
func (f Format) ContentType() string {
	switch f {
	case FormatCSV:
		return "text/csv; charset=utf-8"
	case FormatJSONL:
		return "application/jsonl; charset=utf-8"
	case FormatNLU:
		return "application/yaml; charset=utf-8"
	case FormatHTML:
		return "text/html; charset=utf-8"
	}
	return "application/octet-stream"
}

func (f Format) valid() bool {
	switch f {
	case FormatCSV, FormatJSONL, FormatNLU, FormatHTML:
		return true
	}
	return false
}
