// Command handoff runs the Teams ↔ Rasa ↔ ServiceNow handoff bridge.
//
//	handoff serve              run the service (configured by HANDOFF_* variables)
//	handoff demo               run the whole handoff on one machine, in the browser
//	handoff migrate up|status  apply or list database migrations
//	handoff review export      export why-handoff records
//	handoff outbox list|retry  inspect and repair outward calls
//	handoff sessions list      list sessions
//	handoff teams-app          write the Teams app package (manifest and icons)
//	handoff version            print the version
//	handoff help               describe every subcommand and variable
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

// Set at build time by `make build` with
// -ldflags "-X main.version=v1.2.3 -X main.commit=<sha> -X main.buildDate=<RFC 3339>".
var (
	version   = ""
	commit    = ""
	buildDate = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runEnv(ctx, os.Args[1:], env{getenv: os.Getenv, environ: os.Environ, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed
	exitUsage = 2 // bad arguments or configuration
)

// env is what a subcommand gets from the process.
type env struct {
	getenv func(string) string
	// environ lists KEY=VALUE entries, to warn about unknown variables; nil
	// in tests that pass only getenv.
	environ func() []string
	stdout  io.Writer
	stderr  io.Writer
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e env, args []string) int
}

func commands() []command {
	return []command{
		{"serve", "run the bridge: Teams endpoint, relay, poller or webhooks, review job", runServe},
		{"demo", "run the whole handoff on one machine with simulated Teams, Rasa and ServiceNow", runDemo},
		{"migrate", "apply (up) or list (status) the database migrations", runMigrate},
		{"review", "export why-handoff records: review export --from --to --format --out", runReview},
		{"outbox", "inspect and repair outward calls: outbox list [--dead], outbox retry ID", runOutbox},
		{"sessions", "list sessions: sessions list [--state STATE]", runSessions},
		{"teams-app", "write the Teams app package to upload: teams-app --out handoff-teams.zip", runTeamsApp},
		{"version", "print the version", func(_ context.Context, e env, _ []string) int {
			fmt.Fprintf(e.stdout, "handoff %s (commit %s, built %s, %s)\n", buildVersion(), orUnknown(commit), orUnknown(buildDate), runtime.Version())
			return exitOK
		}},
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, env{getenv: getenv, stdout: stdout, stderr: stderr})
}

func runEnv(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return runEnv(ctx, []string{args[1], "-h"}, e)
		}
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "handoff: unknown command %q; run 'handoff help' for the list\n", args[0])
	return exitUsage
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "handoff %s: hand employees chatting with a Rasa bot in Microsoft Teams to a ServiceNow live agent and back.\n\n", buildVersion())
	fmt.Fprintln(w, "Usage: handoff <command> [arguments]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "  help     this text; 'handoff help <command>' describes one command")
	fmt.Fprintln(w)
	configHelp(w)
}

// configHelp prints every configuration variable, grouped.
func configHelp(w io.Writer) {
	fmt.Fprintln(w, "Configuration (environment variables):")
	groups := map[string][]setting{}
	var order []string
	for _, s := range settings {
		if _, ok := groups[s.Group]; !ok {
			order = append(order, s.Group)
		}
		groups[s.Group] = append(groups[s.Group], s)
	}
	for _, g := range order {
		fmt.Fprintf(w, "\n  %s\n", g)
		for _, s := range groups[g] {
			def := s.Default
			if def == "" {
				def = "(none)"
			}
			extra := ""
			if s.Secret {
				extra = " [secret]"
			}
			fmt.Fprintf(w, "    %-36s %s%s\n    %-36s default: %s\n", s.Name, s.Help, extra, "", def)
		}
	}
}

// newFlagSet returns a flag set whose -h prints summary, the flags and, when
// withConfig, the configuration variables.
func newFlagSet(e env, name, summary string, withConfig bool) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "handoff %s: %s\n\n", name, summary)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "Flags:")
			fs.PrintDefaults()
			fmt.Fprintln(w)
		}
		if withConfig {
			fmt.Fprintln(w, "Commands:")
			for _, c := range commands() {
				fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
			}
			fmt.Fprintln(w)
			configHelp(w)
		}
	}
	return fs
}

// parseFlags parses args; it returns done=true with the exit code when the
// command should stop (help asked for, or bad flags). Help goes to stdout
// once; a bad flag prints its error and one line pointing to -h.
func parseFlags(fs *flag.FlagSet, e env, args []string) (code int, done bool) {
	usage := fs.Usage
	fs.Usage = func() {} // the flag package would print it on every error
	err := fs.Parse(args)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		return exitOK, true
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "run 'handoff %s -h' for help\n", fs.Name())
		return exitUsage, true
	}
	return exitOK, false
}

// loadConfig parses the environment; every bad value is printed on its own
// line naming the variable. Unknown HANDOFF_* variables are returned as
// warnings for the caller to log.
func loadConfig(e env) (*Config, []string, int) {
	var warnings []string
	if e.environ != nil {
		warnings = UnknownVariables(e.environ())
	}
	cfg, err := LoadConfig(e.getenv)
	if err != nil {
		printConfigErrors(e.stderr, err)
		return nil, warnings, exitUsage
	}
	return cfg, warnings, exitOK
}

// printConfigErrors prints one line per configuration problem.
func printConfigErrors(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "handoff: configuration: %s\n", line)
	}
}

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// configSummary returns the non-secret, non-empty settings for the start log.
func configSummary(getenv func(string) string) []any {
	var attrs []any
	for _, s := range settings {
		v := getenv(s.Name)
		if v == "" || (s.Secret && s.Name != "HANDOFF_DATABASE_URL") {
			continue
		}
		if s.Name == "HANDOFF_DATABASE_URL" { // logged without its password
			v = redactURL(v)
		}
		attrs = append(attrs, strings.ToLower(strings.TrimPrefix(s.Name, "HANDOFF_")), v)
	}
	return attrs
}

// printWarnings prints configuration warnings of commands that do not log.
func printWarnings(w io.Writer, warnings []string) {
	for _, s := range warnings {
		fmt.Fprintf(w, "handoff: warning: %s\n", s)
	}
}
