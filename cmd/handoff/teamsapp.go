package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/handoffhq/handoff/teams"
)

// runTeamsApp writes the Teams app package administrators upload so that
// employees can install the bot.
func runTeamsApp(_ context.Context, e env, args []string) int {
	fs := newFlagSet(e, "teams-app", "write the Teams app package (manifest.json and icons, zipped) for the bot of\n"+
		"HANDOFF_TEAMS_APP_ID. Upload it in the Teams admin center (Manage apps → Upload) or the Developer Portal.\n\n"+
		"Usage: handoff teams-app --out handoff-teams.zip --developer \"Contoso IT\" --website https://it.contoso.com", false)
	out := fs.String("out", "handoff-teams.zip", "where to write the package")
	name := fs.String("name", "IT Helpdesk", "the app's short name in Teams (up to 30 characters)")
	desc := fs.String("description", "Ask the IT helpdesk bot, or chat with a live agent.", "short description (up to 80 characters)")
	full := fs.String("full-description", "Ask the IT helpdesk virtual assistant for help. When it cannot help, it connects you to a live agent of the IT service desk; type /end_chat to go back to the assistant at any time.", "full description")
	dev := fs.String("developer", "", "your organisation's name (required; up to 32 characters)")
	site := fs.String("website", "", "https URL of your IT service desk (required)")
	privacy := fs.String("privacy-url", "", "https URL of your privacy statement (default: --website)")
	terms := fs.String("terms-url", "", "https URL of your terms of use (default: --website)")
	accent := fs.String("accent", "#2B5797", "accent and icon background colour (#RRGGBB)")
	appVersion := fs.String("app-version", "1.0.0", "app version (raise it for every upload)")
	appID := fs.String("app-id", "", "the Teams app's id, a GUID (default: the bot id)")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	cfg, warnings, code := loadConfig(e)
	printWarnings(e.stderr, warnings)
	if cfg == nil {
		return code
	}
	if cfg.TeamsAppID == "" {
		fmt.Fprintln(e.stderr, "handoff teams-app: HANDOFF_TEAMS_APP_ID is required: the package names the bot by its Microsoft App ID")
		return exitUsage
	}
	p := teams.AppPackage{BotID: cfg.TeamsAppID, AppID: *appID, Version: *appVersion, ShortName: *name,
		ShortDesc: *desc, FullDesc: *full, Developer: *dev, WebsiteURL: *site, PrivacyURL: *privacy, TermsURL: *terms,
		AccentColor: *accent}
	if _, err := p.Manifest(); err != nil {
		printConfigErrors(e.stderr, err)
		fmt.Fprintln(e.stderr, "run 'handoff teams-app -h' for help")
		return exitUsage
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".handoff-teams-*.zip")
	if err != nil {
		fmt.Fprintf(e.stderr, "handoff teams-app: %v\n", err)
		return exitFail
	}
	defer os.Remove(tmp.Name())
	if err := p.Write(tmp); err != nil {
		tmp.Close()
		fmt.Fprintf(e.stderr, "handoff teams-app: %v\n", err)
		return exitFail
	}
	if err := tmp.Close(); err != nil {
		fmt.Fprintf(e.stderr, "handoff teams-app: write %s: %v\n", *out, err)
		return exitFail
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		fmt.Fprintf(e.stderr, "handoff teams-app: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(e.stdout, "wrote %s (manifest %s, bot %s); upload it in the Teams admin center or the Developer Portal\n", *out, teams.ManifestVersion, cfg.TeamsAppID)
	return exitOK
}
