package slacktest

import (
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// Manifest is the part of a Slack app manifest (slack/manifest.yml) that the
// fake and the tests hold the service to: the bot's scopes, its event
// subscriptions and the interactivity settings.
type Manifest struct {
	OAuth struct {
		Scopes struct {
			Bot []string `yaml:"bot"`
		} `yaml:"scopes"`
	} `yaml:"oauth_config"`
	Settings struct {
		Events struct {
			URL string   `yaml:"request_url"`
			Bot []string `yaml:"bot_events"`
		} `yaml:"event_subscriptions"`
		Interactivity struct {
			Enabled bool   `yaml:"is_enabled"`
			URL     string `yaml:"request_url"`
		} `yaml:"interactivity"`
		SocketMode *bool `yaml:"socket_mode_enabled"`
	} `yaml:"settings"`
}

// ReadManifest reads the app manifest at path.
func ReadManifest(path string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(path)
	if err != nil {
		return m, fmt.Errorf("slacktest: app manifest: %w", err)
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("slacktest: app manifest %s: %w", path, err)
	}
	return m, nil
}
