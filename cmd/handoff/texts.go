package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/handoffhq/handoff/bridge"
)

// textCatalogue is what HANDOFF_TEXTS_FILE holds: per language tag ("en",
// "de", "de-CH"), the texts to use instead of the shipped ones, by key
// (bridge.TextKeys). Keys a language leaves out keep the shipped text of
// that language, else the English one.
type textCatalogue struct {
	English bridge.Texts            // "en": overrides of the English defaults
	Locales map[string]bridge.Texts // the shipped locales with the file's texts over them
}

var langTag = regexp.MustCompile(`^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{1,8})*$`)

// verbs lists a text's format verbs ("%s", "%d"), which an override must keep.
var verbs = regexp.MustCompile(`%[sdv]`)

// loadTexts reads a catalogue file (YAML, or JSON by its .json extension).
func loadTexts(path string) (textCatalogue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return textCatalogue{}, fmt.Errorf("read %s: %w", path, err)
	}
	return parseTexts(b, strings.EqualFold(filepath.Ext(path), ".json"))
}

// parseTexts checks a catalogue: language tags, known keys, non-empty texts,
// and the same format verbs as the English default (so "%s" stays "%s").
func parseTexts(b []byte, isJSON bool) (textCatalogue, error) {
	raw := map[string]map[string]string{}
	var err error
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(b))
		err = dec.Decode(&raw)
	} else {
		err = yaml.Unmarshal(b, &raw)
	}
	if err != nil {
		return textCatalogue{}, fmt.Errorf("expects a map of language tags (en, de, …) to maps of text keys to texts: %w", err)
	}
	keys := bridge.TextKeys()
	def := reflect.ValueOf(bridge.DefaultTexts())
	cat := textCatalogue{Locales: bridge.DefaultLocales()}
	for tag, texts := range raw {
		if !langTag.MatchString(tag) {
			return textCatalogue{}, fmt.Errorf("%q is not a language tag such as en, de or de-CH", tag)
		}
		var t bridge.Texts
		v := reflect.ValueOf(&t).Elem()
		for k, text := range texts {
			i := slices.Index(keys, k)
			if i < 0 {
				return textCatalogue{}, fmt.Errorf("%s: unknown text key %q (known keys: %s)", tag, k, strings.Join(keys, ", "))
			}
			if strings.TrimSpace(text) == "" {
				return textCatalogue{}, fmt.Errorf("%s.%s: empty text (leave the key out to keep the default)", tag, k)
			}
			want := verbs.FindAllString(def.Field(i).String(), -1)
			if got := verbs.FindAllString(text, -1); !slices.Equal(got, want) || strings.Count(text, "%") != strings.Count(def.Field(i).String(), "%") {
				return textCatalogue{}, fmt.Errorf("%s.%s: must contain the placeholders %q in this order, as the default %q does", tag, k, want, def.Field(i).String())
			}
			v.Field(i).SetString(text)
		}
		if strings.EqualFold(tag, "en") {
			cat.English = t
			continue
		}
		base := bridge.Texts{}
		for k, shipped := range cat.Locales {
			if strings.EqualFold(k, tag) {
				base = shipped
				delete(cat.Locales, k)
			}
		}
		cat.Locales[strings.ToLower(tag)] = t.Fill(base)
	}
	return cat, nil
}
