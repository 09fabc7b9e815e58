package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/handoffhq/handoff/bridge/store"
)

func runMigrate(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "migrate", "apply (up) or list (status) the database migrations of HANDOFF_DATABASE_URL.\n\nUsage: handoff migrate up|status", false)
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() != 1 || (fs.Arg(0) != "up" && fs.Arg(0) != "status") {
		fmt.Fprintln(e.stderr, "handoff migrate: expects 'up' or 'status'")
		return exitUsage
	}
	cfg, warnings, code := loadConfig(e)
	printWarnings(e.stderr, warnings)
	if cfg == nil {
		return code
	}
	log := newLogger(e.stderr, cfg.LogFormat, cfg.LogLevel)
	st, err := store.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "handoff migrate: open database %s: %v\n", redactURL(cfg.DatabaseURL), err)
		return exitFail
	}
	defer st.Close()
	if fs.Arg(0) == "up" {
		if err := st.Migrate(ctx); err != nil {
			fmt.Fprintf(e.stderr, "handoff migrate up: %v\n", err)
			return exitFail
		}
	}
	vs, err := st.SchemaStatus(ctx)
	if err != nil {
		fmt.Fprintf(e.stderr, "handoff migrate status: %v\n", err)
		return exitFail
	}
	pending := 0
	fmt.Fprintf(e.stdout, "%-8s %-10s %-22s %s\n", "VERSION", "STATE", "APPLIED AT", "NAME")
	for _, v := range vs {
		state, at := "pending", "-"
		if v.Applied {
			state, at = "applied", v.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
		} else {
			pending++
		}
		fmt.Fprintf(e.stdout, "%-8d %-10s %-22s %s\n", v.Version, state, at, v.Name)
	}
	fmt.Fprintf(e.stdout, "%d applied, %d pending (%s)\n", len(vs)-pending, pending, st.Dialect())
	return exitOK
}

// redactURL hides the password of a database URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}
