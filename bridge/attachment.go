package bridge

import (
	"fmt"
	"net/url"
	"strings"
)

// Attachment is a file passed between the employee and the agent, as a link.
type Attachment struct {
	Name        string `json:"name,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	URL         string `json:"url"`
	Size        int64  `json:"size,omitempty"` // bytes; 0 when unknown
}

// MaxAttachmentURL is the longest file link the bridge passes on, in bytes.
// Browsers and mail clients cut longer links (2,083 characters is the
// classic limit), so a longer one would reach the employee broken.
const MaxAttachmentURL = 2048

// LinkProblem says why a's link cannot be given to the employee as a link,
// or "" when it can: it must be an absolute http(s) URL with a host, no
// longer than MaxAttachmentURL.
func (a Attachment) LinkProblem() string {
	switch {
	case strings.TrimSpace(a.URL) == "":
		return "no link"
	case len(a.URL) > MaxAttachmentURL:
		return fmt.Sprintf("link longer than %d bytes", MaxAttachmentURL)
	}
	u, err := url.Parse(a.URL)
	switch {
	case err != nil:
		return "link is not a URL"
	case u.Scheme != "https" && u.Scheme != "http":
		return "link is not an http(s) URL"
	case u.Host == "":
		return "link has no host"
	}
	return ""
}

// Label names the file for a notice: its name, else its type, else "file",
// at most 80 characters.
func (a Attachment) Label() string {
	name := strings.TrimSpace(a.Name)
	if name == "" {
		name = strings.TrimSpace(a.ContentType)
	}
	if name == "" {
		return "file"
	}
	if r := []rune(name); len(r) > 80 {
		name = string(r[:79]) + "…"
	}
	return name
}
