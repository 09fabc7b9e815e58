package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
)

// The operator commands: look into and repair the outbox and the sessions of
// HANDOFF_DATABASE_URL while the service runs (they only read, except
// `outbox retry`, which the running dispatchers then pick up).

func runOutbox(ctx context.Context, e env, args []string) int {
	const usage = "handoff outbox list [--dead] [--limit N] | handoff outbox retry ID"
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "list":
		fs := newFlagSet(e, "outbox list", "list outward calls not yet done (or, with --dead, those that failed for good),\nnewest first.\n\nUsage: "+usage, false)
		dead := fs.Bool("dead", false, "list the dead items instead of the pending ones")
		limit := fs.Int("limit", 50, "at most this many items")
		if code, done := parseFlags(fs, e, args); done {
			return code
		}
		return withStore(ctx, e, "outbox list", func(st *store.Store) error {
			items, err := st.OutboxItems(ctx, *dead, max(*limit, 1))
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tSESSION\tATTEMPTS\tCREATED\tNEXT ATTEMPT\tLAST ERROR")
			for _, it := range items {
				next := it.NextAttemptAt.UTC().Format(time.RFC3339)
				if *dead {
					next = "-"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", it.ID, it.Kind, it.SessionID, it.Attempts,
					it.CreatedAt.UTC().Format(time.RFC3339), next, oneLine(it.LastError, 100))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			what := "pending"
			if *dead {
				what = "dead"
			}
			fmt.Fprintf(e.stdout, "%d %s item(s) shown (newest first, --limit %d)\n", len(items), what, *limit)
			return nil
		})
	case "retry":
		fs := newFlagSet(e, "outbox retry", "make a dead outbox item pending again with a fresh attempt budget; the running\nservice retries it within a second.\n\nUsage: handoff outbox retry ID", false)
		if code, done := parseFlags(fs, e, args); done {
			return code
		}
		id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if fs.NArg() != 1 || err != nil || id <= 0 {
			fmt.Fprintln(e.stderr, "handoff outbox retry: expects one item ID (see 'handoff outbox list --dead')")
			return exitUsage
		}
		return withStore(ctx, e, "outbox retry", func(st *store.Store) error {
			if err := st.RetryDeadOutbox(ctx, id, time.Now()); err != nil {
				if errors.Is(err, bridge.ErrNotFound) {
					return fmt.Errorf("no outbox item %d", id)
				}
				return err
			}
			fmt.Fprintf(e.stdout, "outbox item %d is pending again\n", id)
			return nil
		})
	}
	fmt.Fprintf(e.stderr, "handoff outbox: expects 'list' or 'retry'\nUsage: %s\n", usage)
	return exitUsage
}

func runSessions(ctx context.Context, e env, args []string) int {
	if len(args) == 0 || args[0] != "list" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			args = []string{"list", "-h"}
		} else {
			fmt.Fprintln(e.stderr, "handoff sessions: expects 'list'\nUsage: handoff sessions list [--state bot|queued|live|closing|closed] [--limit N]")
			return exitUsage
		}
	}
	fs := newFlagSet(e, "sessions list", "list sessions, most recently changed first.\n\nUsage: handoff sessions list [--state STATE] [--limit N]", false)
	state := fs.String("state", "", "only sessions in this state: bot, queued, live, closing or closed")
	limit := fs.Int("limit", 50, "at most this many sessions")
	if code, done := parseFlags(fs, e, args[1:]); done {
		return code
	}
	if *state != "" {
		ok := false
		for _, s := range bridge.States {
			ok = ok || string(s) == *state
		}
		if !ok {
			fmt.Fprintf(e.stderr, "handoff sessions list: --state %q: expects bot, queued, live, closing or closed\n", *state)
			return exitUsage
		}
	}
	return withStore(ctx, e, "sessions list", func(st *store.Store) error {
		ss, err := st.Sessions(ctx, bridge.State(*state), max(*limit, 1))
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SESSION\tSTATE\tUSER\tAGENT CHAT\tREASON\tQUEUED\tUPDATED\tCLOSE REASON")
		for _, s := range ss {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.State, orDash(s.UserName), orDash(string(s.AgentChatID)),
				orDash(s.Reason), timeOrDash(s.QueuedAt), timeOrDash(s.UpdatedAt), orDash(string(s.CloseReason)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%d session(s) shown (--limit %d)\n", len(ss), *limit)
		return nil
	})
}

// withStore opens HANDOFF_DATABASE_URL, checks its schema is current and runs
// fn; an error is printed naming the command.
func withStore(ctx context.Context, e env, name string, fn func(st *store.Store) error) int {
	cfg, warnings, code := loadConfig(e)
	printWarnings(e.stderr, warnings)
	if cfg == nil {
		return code
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, newLogger(e.stderr, cfg.LogFormat, cfg.LogLevel))
	if err != nil {
		fmt.Fprintf(e.stderr, "handoff %s: open database %s: %v\n", name, redactURL(cfg.DatabaseURL), err)
		return exitFail
	}
	defer st.Close()
	if ok, reason, err := st.SchemaCurrent(ctx); err != nil || !ok {
		fmt.Fprintf(e.stderr, "handoff %s: database %s is not ready (%v%s); run 'handoff migrate up' or check HANDOFF_DATABASE_URL\n",
			name, redactURL(cfg.DatabaseURL), err, reason)
		return exitFail
	}
	if err := fn(st); err != nil {
		fmt.Fprintf(e.stderr, "handoff %s: %v\n", name, err)
		return exitFail
	}
	return exitOK
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return orDash(s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
