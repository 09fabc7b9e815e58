package servicenow

import (
	"bytes"
	"encoding/json"
	"net/url"
	"path"
	"strings"

	"github.com/handoffhq/handoff/bridge"
)

// vaFile reads the file an agent's output item carries, in the controls
// va-api-controls.md documents: an Output Link with a label (value.action
// the URL, label its name, header a line above it) or an Output Image (value
// the URL, altText its name). ok is false for every other item; a link
// without a label stays text, as before. How Agent Chat
// forwards a file an agent uploads is not documented; these are the
// documented controls that carry a link.
func vaFile(uiType string, raw json.RawMessage) (file bridge.Attachment, header string, ok bool) {
	var w struct {
		Value   json.RawMessage `json:"value"`
		Label   field           `json:"label"`
		Header  field           `json:"header"`
		AltText field           `json:"altText"`
	}
	if json.Unmarshal(raw, &w) != nil {
		return bridge.Attachment{}, "", false
	}
	v := bytes.TrimSpace(w.Value)
	switch uiType {
	case "OutputLink":
		var link struct {
			Action field `json:"action"`
		}
		if len(v) == 0 || v[0] != '{' || json.Unmarshal(v, &link) != nil || strings.TrimSpace(link.Action.Value) == "" ||
			strings.TrimSpace(w.Label.Value) == "" {
			return bridge.Attachment{}, "", false // an unnamed link stays text ("<header> <url>")
		}
		file = bridge.Attachment{Name: strings.TrimSpace(w.Label.Value), URL: strings.TrimSpace(link.Action.Value)}
		header = strings.TrimSpace(w.Header.Value)
		if header == file.Name {
			header = ""
		}
	case "OutputImage":
		u, err := scalar(v)
		if len(v) == 0 || err != nil || strings.TrimSpace(u) == "" {
			return bridge.Attachment{}, "", false
		}
		file = bridge.Attachment{Name: strings.TrimSpace(w.AltText.Value), ContentType: "image", URL: strings.TrimSpace(u)}
	default:
		return bridge.Attachment{}, "", false
	}
	if file.Name == "" {
		if p, err := url.Parse(file.URL); err == nil {
			if b := path.Base(p.Path); b != "." && b != "/" {
				file.Name = b
			}
		}
	}
	return file, header, true
}
