package teams

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func testPackage() AppPackage {
	return AppPackage{BotID: "0b2c7e2a-1f44-4c1e-9d0a-3c5f1a2b3c4d", ShortName: "IT Helpdesk", ShortDesc: "Ask the bot or a live agent.",
		FullDesc: "Ask the IT helpdesk bot; it connects you to a live agent when needed.", Developer: "Contoso IT",
		WebsiteURL: "https://it.contoso.com", AccentColor: "#2B5797"}
}

func unzip(t *testing.T, p AppPackage) map[string][]byte {
	t.Helper()
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(b.Bytes()), int64(b.Len()))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	return files
}

// TestAppPackageLayout: the three files at the root of the zip, the icons of
// the sizes Teams requires (192×192 opaque colour, 32×32 white-on-
// transparent outline), and the bot's id, scope and commands in the manifest.
func TestAppPackageLayout(t *testing.T) {
	files := unzip(t, testPackage())
	if len(files) != 3 || files["manifest.json"] == nil || files["color.png"] == nil || files["outline.png"] == nil {
		t.Fatalf("zip holds %d files; want manifest.json, color.png, outline.png at the root", len(files))
	}
	for name, size := range map[string]int{"color.png": 192, "outline.png": 32} {
		img, err := png.Decode(bytes.NewReader(files[name]))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() != size || b.Dy() != size {
			t.Fatalf("%s is %dx%d, want %dx%d", name, b.Dx(), b.Dy(), size, size)
		}
		opaque, transparent, white := 0, 0, 0
		eachPixel(img, func(r, g, b, a uint32) {
			switch {
			case a == 0:
				transparent++
			case a == 0xffff:
				opaque++
				if r == 0xffff && g == 0xffff && b == 0xffff {
					white++
				}
			}
		})
		switch name {
		case "color.png":
			if opaque != size*size || white == 0 || white == size*size {
				t.Errorf("color.png: %d opaque and %d white pixels; want a fully opaque icon with a white glyph", opaque, white)
			}
		case "outline.png":
			if transparent+white != size*size || white == 0 || transparent == 0 {
				t.Errorf("outline.png: %d transparent, %d white of %d pixels; want only white on transparent", transparent, white, size*size)
			}
		}
	}
	var m struct {
		ManifestVersion string `json:"manifestVersion"`
		ID              string `json:"id"`
		Bots            []struct {
			BotID        string   `json:"botId"`
			Scopes       []string `json:"scopes"`
			CommandLists []struct {
				Commands []struct{ Title, Description string } `json:"commands"`
			} `json:"commandLists"`
		} `json:"bots"`
	}
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	if m.ManifestVersion != ManifestVersion || len(m.Bots) != 1 || m.Bots[0].BotID != testPackage().BotID || m.ID != testPackage().BotID ||
		strings.Join(m.Bots[0].Scopes, ",") != "personal" || len(m.Bots[0].CommandLists) != 1 {
		t.Fatalf("manifest = %s", files["manifest.json"])
	}
	var titles []string
	for _, c := range m.Bots[0].CommandLists[0].Commands {
		if c.Description == "" {
			t.Errorf("command %s has no description", c.Title)
		}
		titles = append(titles, c.Title)
	}
	if strings.Join(titles, " ") != "/end_chat /restart" {
		t.Fatalf("commands %v, want /end_chat and /restart", titles)
	}
}

func eachPixel(img image.Image, fn func(r, g, b, a uint32)) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			fn(img.At(x, y).RGBA())
		}
	}
}

func TestAppPackageRejects(t *testing.T) {
	p := testPackage()
	p.BotID, p.WebsiteURL, p.AccentColor, p.Developer = "not-a-guid", "http://it.contoso.com", "blue", ""
	_, err := p.Manifest()
	if err == nil {
		t.Fatal("accepted a bad package")
	}
	for _, want := range []string{"bot id", "website URL", "accent colour", "developer name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not report the %s:\n%v", want, err)
		}
	}
}

// appManifestPackage is Microsoft's npm package that ships the Teams app
// manifest JSON schemas (build/json-schemas/teams/v1.x). Pinned.
const appManifestPackage = "@microsoft/app-manifest@1.1.2"

// TestAppPackageManifestSchema validates the manifest against Microsoft's
// JSON schema of its version, installed from npm into a temporary directory.
// Without node and npm it skips, except with CI=true, where it fails.
func TestAppPackageManifestSchema(t *testing.T) {
	node, nerr := exec.LookPath("node")
	npm, perr := exec.LookPath("npm")
	if nerr != nil || perr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node and npm are required in CI to validate the Teams manifest against Microsoft's schema")
		}
		t.Skip("node and npm not found: install Node.js to validate the Teams manifest against Microsoft's schema")
	}
	dir := t.TempDir()
	cmd := exec.Command(npm, "install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", dir, appManifestPackage)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install %s: %v\n%s", appManifestPackage, err, out)
	}
	files := unzip(t, testPackage())
	manifest := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(manifest, files["manifest.json"], 0o644); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("testdata/validate-manifest.js")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, script, filepath.Join(dir, "node_modules"), manifest).CombinedOutput()
	if err != nil {
		t.Fatalf("the manifest does not validate against Microsoft's schema: %v\n%s\n%s", err, out, files["manifest.json"])
	}
	t.Log(strings.TrimSpace(string(out)))

	// The validator itself rejects what the schema forbids.
	var m map[string]any
	_ = json.Unmarshal(files["manifest.json"], &m)
	m["id"] = "not-a-guid"
	bad, _ := json.Marshal(m)
	if err := os.WriteFile(manifest, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(node, script, filepath.Join(dir, "node_modules"), manifest).CombinedOutput(); err == nil {
		t.Fatalf("the validator accepted an id that is no GUID:\n%s", out)
	}
}
