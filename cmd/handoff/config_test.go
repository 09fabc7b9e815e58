package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(mapEnv(nil))
	if err != nil {
		t.Fatalf("LoadConfig with no variables: %v", err)
	}
	if cfg.DatabaseURL != "sqlite:handoff.db" || cfg.Addr != ":8080" || cfg.PollInterval != 3*time.Second ||
		cfg.Delivery != "poll" || cfg.ReviewRetention != 180*24*time.Hour || !cfg.ReviewRedact || cfg.MaxBody != 1<<20 {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if cfg.Integrated() {
		t.Fatal("no variables must not count as integrated")
	}
	// serve with nothing configured would answer 404 on /api/messages while
	// /readyz says ready: it refuses, naming what to set.
	var ce *ConfigError
	if err := cfg.ValidateServe(); !errors.As(err, &ce) || ce.Name != "HANDOFF_TEAMS_APP_ID" {
		t.Fatalf("ValidateServe with defaults = %v; want an error naming HANDOFF_TEAMS_APP_ID", err)
	}
}

func TestLoadConfigRejects(t *testing.T) {
	tests := []struct {
		name, value, wantVar, wantMsg string
	}{
		{"HANDOFF_DATABASE_URL", "mysql://x", "HANDOFF_DATABASE_URL", "sqlite:"},
		{"HANDOFF_LOG_FORMAT", "xml", "HANDOFF_LOG_FORMAT", "json, text"},
		{"HANDOFF_LOG_LEVEL", "loud", "HANDOFF_LOG_LEVEL", ""},
		{"HANDOFF_POLL_INTERVAL", "100ms", "HANDOFF_POLL_INTERVAL", "duration"},
		{"HANDOFF_POLL_INTERVAL", "often", "HANDOFF_POLL_INTERVAL", "duration"},
		{"HANDOFF_DELIVERY", "carrier-pigeon", "HANDOFF_DELIVERY", "poll, webhook, hybrid"},
		{"HANDOFF_RASA_URL", "rasa:5005", "HANDOFF_RASA_URL", "http(s) URL"},
		{"HANDOFF_MAX_BODY", "12", "HANDOFF_MAX_BODY", "bytes"},
		{"HANDOFF_REVIEW_RETENTION", "-3d", "HANDOFF_REVIEW_RETENTION", "days"},
		{"HANDOFF_REVIEW_PATTERNS", "([a-z", "HANDOFF_REVIEW_PATTERNS", "regular expressions"},
		{"HANDOFF_REVIEW_TIMEZONE", "Mars/Olympus", "HANDOFF_REVIEW_TIMEZONE", "IANA"},
		{"HANDOFF_TEAMS_MULTI_TENANT", "maybe", "HANDOFF_TEAMS_MULTI_TENANT", "true or false"},
		{"HANDOFF_TRANSCRIPT_TURNS", "1000", "HANDOFF_TRANSCRIPT_TURNS", "integer"},
		{"HANDOFF_SLACK_CHANNEL", "#it-support", "HANDOFF_SLACK_CHANNEL", "channel id"},
		{"HANDOFF_DESK", "zendesk", "HANDOFF_DESK", "slack"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, err := LoadConfig(mapEnv(map[string]string{tt.name: tt.value}))
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Name != tt.wantVar || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("LoadConfig = %v; want a ConfigError naming %s containing %q", err, tt.wantVar, tt.wantMsg)
			}
		})
	}
}

func TestValidateServe(t *testing.T) {
	full := map[string]string{
		"HANDOFF_TEAMS_APP_ID": "app", "HANDOFF_TEAMS_APP_PASSWORD": "pw", "HANDOFF_TEAMS_TENANT_ID": "tenant",
		"HANDOFF_RASA_URL": "http://rasa:5005", "HANDOFF_SERVICENOW_URL": "https://acme.service-now.com",
		"HANDOFF_SERVICENOW_USER": "bridge", "HANDOFF_SERVICENOW_PASSWORD": "pw", "HANDOFF_SERVICENOW_QUEUE": "q1",
		"HANDOFF_REVIEW_SALT": "salt",
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range full {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string // "" = valid
	}{
		{"complete", full, ""},
		{"no rasa", with("HANDOFF_RASA_URL", ""), "HANDOFF_RASA_URL"},
		{"no teams", with("HANDOFF_TEAMS_APP_ID", "", "HANDOFF_TEAMS_APP_PASSWORD", ""), "HANDOFF_TEAMS_APP_ID"},
		{"no salt", with("HANDOFF_REVIEW_SALT", ""), "HANDOFF_REVIEW_SALT"},
		{"no tenant", with("HANDOFF_TEAMS_TENANT_ID", ""), "HANDOFF_TEAMS_TENANT_ID"},
		{"multi-tenant needs no tenant", with("HANDOFF_TEAMS_TENANT_ID", "", "HANDOFF_TEAMS_MULTI_TENANT", "true"), ""},
		{"no queue", with("HANDOFF_SERVICENOW_QUEUE", ""), "HANDOFF_SERVICENOW_QUEUE"},
		{"oauth without client", with("HANDOFF_SERVICENOW_AUTH", "oauth-client"), "HANDOFF_SERVICENOW_CLIENT_ID"},
		{"webhook without secret", with("HANDOFF_DELIVERY", "webhook"), "HANDOFF_WEBHOOK_SECRET"},
		{"webhook with secret", with("HANDOFF_DELIVERY", "webhook", "HANDOFF_WEBHOOK_SECRET", "s"), ""},
		{"va needs webhook delivery", with("HANDOFF_DESK", "va", "HANDOFF_VA_TOKEN", "t", "HANDOFF_VA_CALLBACK_SECRET", "c"), "HANDOFF_DELIVERY"},
		{"slack desk needs no servicenow", with("HANDOFF_DESK", "slack", "HANDOFF_SERVICENOW_URL", "", "HANDOFF_SERVICENOW_USER", "", "HANDOFF_SERVICENOW_QUEUE", "",
			"HANDOFF_SLACK_BOT_TOKEN", "xoxb-1", "HANDOFF_SLACK_SIGNING_SECRET", "s", "HANDOFF_SLACK_CHANNEL", "C0123ABCD"), ""},
		{"slack desk needs its token", with("HANDOFF_DESK", "slack", "HANDOFF_SLACK_SIGNING_SECRET", "s", "HANDOFF_SLACK_CHANNEL", "C0123ABCD"), "HANDOFF_SLACK_BOT_TOKEN"},
		{"slack desk needs its signing secret", with("HANDOFF_DESK", "slack", "HANDOFF_SLACK_BOT_TOKEN", "xoxb-1", "HANDOFF_SLACK_CHANNEL", "C0123ABCD"), "HANDOFF_SLACK_SIGNING_SECRET"},
		{"slack desk needs its channel", with("HANDOFF_DESK", "slack", "HANDOFF_SLACK_BOT_TOKEN", "xoxb-1", "HANDOFF_SLACK_SIGNING_SECRET", "s"), "HANDOFF_SLACK_CHANNEL"},
		{"slack desk still needs teams", with("HANDOFF_DESK", "slack", "HANDOFF_SLACK_BOT_TOKEN", "xoxb-1", "HANDOFF_SLACK_SIGNING_SECRET", "s", "HANDOFF_SLACK_CHANNEL", "C0123ABCD",
			"HANDOFF_TEAMS_APP_ID", ""), "HANDOFF_TEAMS_APP_ID"},
		{"anonymous on public addr", map[string]string{"HANDOFF_TEAMS_ANONYMOUS_DEV": "true", "HANDOFF_ADDR": ":8080"}, "HANDOFF_TEAMS_ANONYMOUS_DEV"},
		{"anonymous alone needs the rest", map[string]string{"HANDOFF_TEAMS_ANONYMOUS_DEV": "true", "HANDOFF_ADDR": "127.0.0.1:3978"}, "HANDOFF_RASA_URL"},
		{"anonymous needs no app credentials", with("HANDOFF_TEAMS_ANONYMOUS_DEV", "true", "HANDOFF_ADDR", "127.0.0.1:3978",
			"HANDOFF_TEAMS_APP_ID", "", "HANDOFF_TEAMS_APP_PASSWORD", "", "HANDOFF_TEAMS_TENANT_ID", ""), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(mapEnv(tt.env))
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			err = cfg.ValidateServe()
			var ce *ConfigError
			switch {
			case tt.wantVar == "" && err != nil:
				t.Fatalf("ValidateServe = %v; want nil", err)
			case tt.wantVar != "" && (!errors.As(err, &ce) || ce.Name != tt.wantVar):
				t.Fatalf("ValidateServe = %v; want an error naming %s", err, tt.wantVar)
			}
		})
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"serve", "-h"}} {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, mapEnv(nil), &out, &errb)
		if code != exitOK {
			t.Fatalf("%v exited %d: %s", args, code, errb.String())
		}
		for _, s := range settings {
			if !strings.Contains(out.String(), s.Name) {
				t.Errorf("%v does not describe %s", args, s.Name)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"serve", "-h"}} {
		var out bytes.Buffer
		run(context.Background(), args, mapEnv(nil), &out, &out)
		for _, c := range commands() {
			if !strings.Contains(out.String(), "  "+c.name+" ") {
				t.Errorf("%v does not describe subcommand %s", args, c.name)
			}
		}
	}
}

func TestBadConfigExits2NamingTheVariable(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"serve"}, mapEnv(map[string]string{"HANDOFF_DATABASE_URL": "mysql://x"}), &out, &errb)
	if code != exitUsage {
		t.Fatalf("exit code %d, want %d", code, exitUsage)
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "HANDOFF_DATABASE_URL") {
		t.Fatalf("stderr = %q; want one line naming HANDOFF_DATABASE_URL", errb.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"frobnicate"}, mapEnv(nil), &out, &errb); code != exitUsage {
		t.Fatalf("exit code %d, want %d", code, exitUsage)
	}
}
