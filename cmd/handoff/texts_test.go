package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoffhq/handoff/bridge"
)

func TestParseTexts(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		json    bool
		wantErr string
		check   func(t *testing.T, c textCatalogue)
	}{
		{name: "yaml", in: "en:\n  not_in_chat: No live chat is open.\nde:\n  not_in_chat: Kein Live-Chat offen.\nfr:\n  welcome: Bonjour !\n",
			check: func(t *testing.T, c textCatalogue) {
				if c.English.NotInChat != "No live chat is open." || c.English.Welcome != "" {
					t.Errorf("en = %+v", c.English)
				}
				if de := c.Locales["de"]; de.NotInChat != "Kein Live-Chat offen." || de.Welcome != bridge.DefaultLocales()["de"].Welcome {
					t.Errorf("de = %q / %q, want the file's text over the shipped German", de.NotInChat, de.Welcome)
				}
				if c.Locales["fr"].Welcome != "Bonjour !" {
					t.Errorf("fr = %+v", c.Locales["fr"])
				}
			}},
		{name: "json", json: true, in: `{"de-CH":{"card_title":"Live-Chat"}}`, check: func(t *testing.T, c textCatalogue) {
			if c.Locales["de-ch"].CardTitle != "Live-Chat" {
				t.Errorf("de-ch = %+v", c.Locales["de-ch"])
			}
		}},
		{name: "unknown key", in: "en:\n  welcom: hi\n", wantErr: `unknown text key "welcom"`},
		{name: "bad tag", in: "english!:\n  welcome: hi\n", wantErr: "not a language tag"},
		{name: "lost placeholder", in: "de:\n  card_connected: Verbunden\n", wantErr: "card_connected: must contain the placeholders"},
		{name: "extra placeholder", in: "en:\n  welcome: hi %s\n", wantErr: "welcome: must contain"},
		{name: "empty text", in: "en:\n  welcome: ' '\n", wantErr: "empty text"},
		{name: "not a map", in: "- a\n- b\n", wantErr: "expects a map"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseTexts([]byte(tc.in), tc.json)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

// TestTextsFileConfig: HANDOFF_TEXTS_FILE is read at start; a bad file stops
// the start with the variable's name.
func TestTextsFileConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "texts.yaml")
	if err := os.WriteFile(good, []byte("de:\n  not_in_chat: Kein Chat.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(mapEnv(map[string]string{"HANDOFF_TEXTS_FILE": good}))
	if err != nil || cfg.Texts.Locales["de"].NotInChat != "Kein Chat." {
		t.Fatalf("LoadConfig = %+v, %v", cfg, err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"en":{"nope":"x"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(mapEnv(map[string]string{"HANDOFF_TEXTS_FILE": bad})); err == nil || !strings.Contains(err.Error(), "HANDOFF_TEXTS_FILE") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("bad file: %v", err)
	}
	if _, err := LoadConfig(mapEnv(map[string]string{"HANDOFF_TEXTS_FILE": filepath.Join(dir, "missing.yaml")})); err == nil || !strings.Contains(err.Error(), "HANDOFF_TEXTS_FILE") {
		t.Fatalf("missing file: %v", err)
	}
}

func FuzzParseTexts(f *testing.F) {
	f.Add([]byte("en:\n  welcome: hi\n"), false)
	f.Add([]byte(`{"de":{"card_wait":"%d Min."}}`), true)
	f.Fuzz(func(t *testing.T, b []byte, isJSON bool) {
		c, err := parseTexts(b, isJSON)
		if err != nil {
			return
		}
		for tag, tx := range c.Locales {
			if tag != strings.ToLower(tag) {
				t.Fatalf("locale key %q not lower case", tag)
			}
			_ = tx.Fill(bridge.DefaultTexts())
		}
	})
}

// TestREADMETextKeys: the README lists every text key of the catalogue.
func TestREADMETextKeys(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range bridge.TextKeys() {
		if !strings.Contains(string(b), "`"+k+"`") {
			t.Errorf("README does not list the text key %q", k)
		}
	}
}
