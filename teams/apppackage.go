package teams

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/url"
	"regexp"
	"strings"
)

// ManifestVersion is the Teams app manifest schema version the package uses
// (the newest released schema; Microsoft's npm package @microsoft/app-manifest
// ships it and the test validates against it).
const ManifestVersion = "1.30"

// AppPackage describes the Teams app package an administrator uploads
// (Teams admin center → Manage apps → Upload, or Developer Portal) so that
// employees can install the bot.
type AppPackage struct {
	BotID       string // the bot's Microsoft App ID (HANDOFF_TEAMS_APP_ID)
	AppID       string // the Teams app's id (a GUID; default BotID)
	Version     string // the app version (semver; default 1.0.0)
	ShortName   string // up to 30 characters
	FullName    string // up to 100 characters (default ShortName)
	ShortDesc   string // up to 80 characters
	FullDesc    string // up to 4000 characters
	Developer   string // up to 32 characters
	WebsiteURL  string // https
	PrivacyURL  string // https (default WebsiteURL)
	TermsURL    string // https (default WebsiteURL)
	AccentColor string // #RRGGBB
}

var (
	guidRE   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	semverRE = regexp.MustCompile(`^\d+\.\d+\.\d+$`)
	colorRE  = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
)

// withDefaults fills the optional fields and checks the rest, reporting
// every problem at once.
func (p AppPackage) withDefaults() (AppPackage, error) {
	if p.AppID == "" {
		p.AppID = p.BotID
	}
	if p.Version == "" {
		p.Version = "1.0.0"
	}
	if p.FullName == "" {
		p.FullName = p.ShortName
	}
	if p.PrivacyURL == "" {
		p.PrivacyURL = p.WebsiteURL
	}
	if p.TermsURL == "" {
		p.TermsURL = p.WebsiteURL
	}
	var errs []error
	check := func(ok bool, format string, a ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	check(guidRE.MatchString(p.BotID), "bot id %q: want the bot's Microsoft App ID, a GUID (HANDOFF_TEAMS_APP_ID)", p.BotID)
	check(guidRE.MatchString(p.AppID), "app id %q: want a GUID", p.AppID)
	check(semverRE.MatchString(p.Version), "version %q: want major.minor.patch such as 1.0.0", p.Version)
	check(p.ShortName != "" && len([]rune(p.ShortName)) <= 30, "short name %q: want 1 to 30 characters", p.ShortName)
	check(len([]rune(p.FullName)) <= 100, "full name: want at most 100 characters")
	check(p.ShortDesc != "" && len([]rune(p.ShortDesc)) <= 80, "short description: want 1 to 80 characters")
	check(p.FullDesc != "" && len([]rune(p.FullDesc)) <= 4000, "full description: want 1 to 4000 characters")
	check(p.Developer != "" && len([]rune(p.Developer)) <= 32, "developer name %q: want 1 to 32 characters", p.Developer)
	for _, u := range []struct{ name, v string }{{"website", p.WebsiteURL}, {"privacy", p.PrivacyURL}, {"terms of use", p.TermsURL}} {
		pu, err := url.Parse(u.v)
		check(err == nil && pu.Scheme == "https" && pu.Host != "", "%s URL %q: want an https URL", u.name, u.v)
	}
	check(colorRE.MatchString(p.AccentColor), "accent colour %q: want #RRGGBB", p.AccentColor)
	return p, errors.Join(errs...)
}

// Manifest returns manifest.json of the package.
func (p AppPackage) Manifest() ([]byte, error) {
	p, err := p.withDefaults()
	if err != nil {
		return nil, err
	}
	type text struct {
		Short string `json:"short"`
		Full  string `json:"full"`
	}
	type command struct {
		Title       string `json:"title"`
		Description string `json:"description"`
	}
	m := map[string]any{
		"$schema":         "https://developer.microsoft.com/en-us/json-schemas/teams/v" + ManifestVersion + "/MicrosoftTeams.schema.json",
		"manifestVersion": ManifestVersion,
		"version":         p.Version,
		"id":              strings.ToLower(p.AppID),
		"developer": map[string]string{
			"name": p.Developer, "websiteUrl": p.WebsiteURL, "privacyUrl": p.PrivacyURL, "termsOfUseUrl": p.TermsURL,
		},
		"name":        text{p.ShortName, p.FullName},
		"description": text{p.ShortDesc, p.FullDesc},
		"icons":       map[string]string{"color": "color.png", "outline": "outline.png"},
		"accentColor": strings.ToUpper(p.AccentColor),
		"bots": []map[string]any{{
			"botId":              strings.ToLower(p.BotID),
			"scopes":             []string{"personal"},
			"supportsFiles":      false,
			"isNotificationOnly": false,
			"commandLists": []map[string]any{{
				"scopes": []string{"personal"},
				"commands": []command{
					{"/end_chat", "End the chat with the live agent and go back to the virtual assistant"},
					{"/restart", "End any live chat and start over with the virtual assistant"},
				},
			}},
		}},
		"permissions":  []string{"identity", "messageTeamMembers"},
		"validDomains": []string{},
	}
	return json.MarshalIndent(m, "", "  ")
}

// Write writes the zipped package (manifest.json, color.png 192×192,
// outline.png 32×32, all at the root of the archive as Teams requires).
func (p AppPackage) Write(w io.Writer) error {
	manifest, err := p.Manifest()
	if err != nil {
		return err
	}
	p, _ = p.withDefaults()
	colorPNG, err := encodePNG(colorIcon(p.AccentColor))
	if err != nil {
		return err
	}
	outlinePNG, err := encodePNG(outlineIcon())
	if err != nil {
		return err
	}
	zw := zip.NewWriter(w)
	for _, f := range []struct {
		name string
		data []byte
	}{{"manifest.json", manifest}, {"color.png", colorPNG}, {"outline.png", outlinePNG}} {
		fw, err := zw.Create(f.name)
		if err != nil {
			return fmt.Errorf("teams: app package: %w", err)
		}
		if _, err := fw.Write(f.data); err != nil {
			return fmt.Errorf("teams: app package: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("teams: app package: %w", err)
	}
	return nil
}

func encodePNG(img image.Image) ([]byte, error) {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, fmt.Errorf("teams: app package icon: %w", err)
	}
	return b.Bytes(), nil
}

func parseHex(s string) color.NRGBA {
	var r, g, b uint8
	_, _ = fmt.Sscanf(strings.TrimPrefix(s, "#"), "%02x%02x%02x", &r, &g, &b)
	return color.NRGBA{r, g, b, 255}
}

// bubble reports whether (x, y) of a size×size square lies in a speech
// bubble (a rounded body and a tail at its lower left), and whether it lies
// on its edge of width edge.
func bubble(x, y, size int, edge float64) (in, onEdge bool) {
	s := float64(size)
	fx, fy := float64(x)+0.5, float64(y)+0.5
	// Body: an ellipse in the upper 80 % of the square.
	cx, cy, rx, ry := s/2, s*0.42, s*0.40, s*0.32
	dx, dy := (fx-cx)/rx, (fy-cy)/ry
	d := dx*dx + dy*dy
	inner := func(e float64) bool {
		ix, iy := (fx-cx)/(rx-e), (fy-cy)/(ry-e)
		return ix*ix+iy*iy <= 1
	}
	// Tail: a triangle below the body's left half.
	tail := fy >= cy && fy <= s*0.88 && fx >= s*0.22 && fx <= s*0.22+(s*0.88-fy)*0.9
	switch {
	case d <= 1:
		return true, !inner(edge)
	case tail:
		return true, true
	}
	return false, false
}

// colorIcon is the 192×192 full-colour icon: a white speech bubble on the
// accent colour.
func colorIcon(accent string) image.Image {
	const size = 192
	bg := parseHex(accent)
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			c := bg
			if in, _ := bubble(x, y, size, 0); in {
				c = color.NRGBA{255, 255, 255, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

// outlineIcon is the 32×32 outline icon: a white speech bubble outline on
// a transparent background, as Teams requires.
func outlineIcon() image.Image {
	const size = 32
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			if _, edge := bubble(x, y, size, 2); edge {
				img.SetNRGBA(x, y, color.NRGBA{255, 255, 255, 255})
			}
		}
	}
	return img
}
