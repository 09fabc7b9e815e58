package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestConfigErrorsReportedAtOnce: three bad values give three errors (one
// line each on stderr), not one per run.
func TestConfigErrorsReportedAtOnce(t *testing.T) {
	env := map[string]string{"HANDOFF_LOG_FORMAT": "xml", "HANDOFF_POLL_INTERVAL": "often", "HANDOFF_DELIVERY": "pigeon"}
	_, err := LoadConfig(mapEnv(env))
	if err == nil {
		t.Fatal("LoadConfig accepted three bad values")
	}
	for name := range env {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"serve"}, mapEnv(env), &out, &errb); code != exitUsage {
		t.Fatalf("serve exit %d, want %d", code, exitUsage)
	}
	if lines := strings.Split(strings.TrimSpace(errb.String()), "\n"); len(lines) != 3 {
		t.Fatalf("stderr has %d lines, want one per bad variable:\n%s", len(lines), errb.String())
	}

	// What serve needs beyond single values is also reported together.
	cfg, err := LoadConfig(mapEnv(map[string]string{"HANDOFF_TEAMS_APP_ID": "app"}))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.ValidateServe()
	for _, name := range []string{"HANDOFF_RASA_URL", "HANDOFF_SERVICENOW_URL", "HANDOFF_REVIEW_SALT", "HANDOFF_TEAMS_APP_PASSWORD", "HANDOFF_SERVICENOW_QUEUE"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("ValidateServe does not report %s:\n%v", name, err)
		}
	}
}

// TestSecretFromFile: every secret can come from <NAME>_FILE; setting both
// is an error naming the variable; a missing file is an error naming _FILE.
func TestSecretFromFile(t *testing.T) {
	dir := t.TempDir()
	n := 0
	for _, s := range settings {
		if !s.Secret {
			continue
		}
		n++
		secret := "s3cret-from-file"
		if s.Name == "HANDOFF_DATABASE_URL" {
			secret = "postgres://handoff:s3cret@db:5432/handoff"
		}
		path := filepath.Join(dir, s.Name)
		if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Run(s.Name, func(t *testing.T) {
			cfg, err := LoadConfig(mapEnv(map[string]string{s.Name + "_FILE": path}))
			if err != nil {
				t.Fatalf("LoadConfig with %s_FILE: %v", s.Name, err)
			}
			viaEnv, err := LoadConfig(mapEnv(map[string]string{s.Name: secret}))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg, viaEnv) {
				t.Fatalf("%s_FILE gave %+v; the variable gives %+v", s.Name, cfg, viaEnv)
			}
			if reflect.DeepEqual(cfg, mustDefaults(t)) {
				t.Fatalf("%s_FILE changed nothing", s.Name)
			}

			_, err = LoadConfig(mapEnv(map[string]string{s.Name: "x", s.Name + "_FILE": path}))
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Name != s.Name || !strings.Contains(err.Error(), "both set") {
				t.Fatalf("both set = %v; want an error naming %s", err, s.Name)
			}
			_, err = LoadConfig(mapEnv(map[string]string{s.Name + "_FILE": filepath.Join(dir, "missing")}))
			if !errors.As(err, &ce) || ce.Name != s.Name+"_FILE" {
				t.Fatalf("missing file = %v; want an error naming %s_FILE", err, s.Name)
			}
		})
	}
	if n < 5 {
		t.Fatalf("only %d secret settings; the test lost its subject", n)
	}
	// A variable that is not a secret has no _FILE form.
	cfg, err := LoadConfig(mapEnv(map[string]string{"HANDOFF_RASA_URL_FILE": filepath.Join(dir, "HANDOFF_REVIEW_SALT")}))
	if err != nil || cfg.RasaURL != "" {
		t.Fatalf("HANDOFF_RASA_URL_FILE was read: %v %q", err, cfg.RasaURL)
	}
}

func mustDefaults(t *testing.T) *Config {
	t.Helper()
	c, err := LoadConfig(mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUnknownVariableWarning(t *testing.T) {
	got := UnknownVariables([]string{"HANDOFF_POL_INTERVAL=5s", "HANDOFF_POLL_INTERVAL=5s", "PATH=/bin",
		"HANDOFF_RASA_TOKEN_FILE=/run/secrets/rasa", "HANDOFF_SERVICENOW_PASWORD=x", "HANDOFF_TEST_DATABASE_URL=postgres://"})
	want := []string{
		"HANDOFF_POL_INTERVAL is not a known variable and is ignored; did you mean HANDOFF_POLL_INTERVAL?",
		"HANDOFF_SERVICENOW_PASWORD is not a known variable and is ignored; did you mean HANDOFF_SERVICENOW_PASSWORD?",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("UnknownVariables =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// serve logs it as a warning.
	cmd, _, stderr := startProcess(t, localServeEnv(map[string]string{"HANDOFF_POL_INTERVAL": "5s"}), "serve")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !strings.Contains(stderr.String(), `"level":"WARN"`) || !strings.Contains(stderr.String(), "did you mean HANDOFF_POLL_INTERVAL?") {
		t.Fatalf("serve did not warn about HANDOFF_POL_INTERVAL:\n%s", stderr.String())
	}
}

// TestHelpPrintedOnce: help goes to stdout only, once; a bad flag prints its
// error and one line pointing to -h.
func TestHelpPrintedOnce(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"serve", "-h"}, {"help", "serve"}, {"migrate", "-h"}, {"demo", "-h"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, mapEnv(nil), &out, &errb); code != exitOK {
			t.Fatalf("%v exit %d", args, code)
		}
		if errb.Len() != 0 {
			t.Errorf("%v wrote to stderr too:\n%s", args, errb.String())
		}
		if n := strings.Count(out.String(), "HANDOFF_DATABASE_URL"); args[0] != "migrate" && args[0] != "demo" && n != 1 {
			t.Errorf("%v describes HANDOFF_DATABASE_URL %d times", args, n)
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"serve", "-frobnicate"}, mapEnv(nil), &out, &errb); code != exitUsage {
		t.Fatalf("bad flag exit %d, want %d", code, exitUsage)
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if out.Len() != 0 || len(lines) != 2 || !strings.Contains(lines[0], "-frobnicate") || lines[1] != "run 'handoff serve -h' for help" {
		t.Fatalf("bad flag printed stdout %q stderr %q; want its error and one line pointing to -h", out.String(), errb.String())
	}
}

// TestServeRefusesWithoutTeams: with nothing configured serve exits 2 instead
// of running a bridge-less server that says it is ready.
func TestServeRefusesWithoutTeams(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"serve"}, mapEnv(map[string]string{"HANDOFF_ADDR": "127.0.0.1:0"}), &out, &errb); code != exitUsage {
		t.Fatalf("serve with no configuration exit %d, want %d; stderr:\n%s", code, exitUsage, errb.String())
	}
	if !strings.Contains(errb.String(), "HANDOFF_TEAMS_APP_ID") {
		t.Fatalf("stderr does not say what to set:\n%s", errb.String())
	}
}

// TestVersionPrintsBuildInfo: `make build` sets version, commit and build
// date with -ldflags; `handoff version` prints them ("dev" without).
func TestVersionPrintsBuildInfo(t *testing.T) {
	var out bytes.Buffer
	run(context.Background(), []string{"version"}, mapEnv(nil), &out, &out)
	if !strings.HasPrefix(out.String(), "handoff dev (commit unknown, built unknown, go") {
		t.Fatalf("version without ldflags = %q", out.String())
	}
	defer func(v, c, d string) { version, commit, buildDate = v, c, d }(version, commit, buildDate)
	version, commit, buildDate = "v1.2.3", "abc123", "2026-12-02T10:00:00Z"
	out.Reset()
	run(context.Background(), []string{"version"}, mapEnv(nil), &out, &out)
	if !strings.HasPrefix(out.String(), "handoff v1.2.3 (commit abc123, built 2026-12-02T10:00:00Z, go") {
		t.Fatalf("version = %q", out.String())
	}
}
