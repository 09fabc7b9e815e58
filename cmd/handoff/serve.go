package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
)

func runServe(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "serve", "run the bridge. Configuration comes from the HANDOFF_* environment variables below;\n"+
		"a bad or missing value exits with status 2 and names the variable.", true)
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	cfg, warnings, code := loadConfig(e)
	if cfg == nil {
		return code
	}
	if err := cfg.ValidateServe(); err != nil {
		printConfigErrors(e.stderr, err)
		return exitUsage
	}
	log := newLogger(e.stderr, cfg.LogFormat, cfg.LogLevel)
	slog.SetDefault(log)
	for _, w := range warnings {
		log.Warn("configuration: " + w)
	}
	log.Info("starting handoff", append([]any{"version", buildVersion()}, configSummary(e.getenv)...)...)

	a, err := newApp(ctx, cfg, log, nil)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFail
	}
	if err := a.serve(ctx, nil); err != nil {
		log.Error("serve failed", "err", err)
		return exitFail
	}
	log.Info("stopped cleanly")
	return exitOK
}

// app is the running service: storage, the relay and its loops, and the HTTP
// server. Close order is the reverse of start order.
type app struct {
	cfg     *Config
	log     *slog.Logger
	store   *store.Store
	metrics *metrics
	mux     *http.ServeMux
	// loops are the background components (lifecycle.go).
	loops []loop
	// leader holds this replica's job leases (nil without integrations).
	leader *bridge.Leader
	parts  parts
	// listen replaces net.Listen in tests.
	listen func(network, addr string) (net.Listener, error)
}

// overrides lets the demo and tests swap in-process parts.
type overrides struct {
	// httpClient is used for every outward call when set.
	httpClient *http.Client
	// wrapStore wraps the store the relay uses (the crash test injects
	// failures through it).
	wrapStore func(bridge.Store) bridge.Store
}

// relayStore is the store the relay works on.
func (a *app) relayStore(ov *overrides) bridge.Store {
	var st bridge.Store = observedStore{Store: a.store, m: a.metrics.relay}
	if ov != nil && ov.wrapStore != nil {
		st = ov.wrapStore(st)
	}
	return st
}

func newApp(ctx context.Context, cfg *Config, log *slog.Logger, ov *overrides) (*app, error) {
	st, err := store.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", redactURL(cfg.DatabaseURL), err)
	}
	// Migrations run at every start; on PostgreSQL an advisory lock keeps
	// replicas that start together from racing.
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate %s: %w", redactURL(cfg.DatabaseURL), err)
	}
	a := &app{cfg: cfg, log: log, store: st, metrics: newMetrics(), mux: http.NewServeMux()}
	baseRoutes(a.mux, a.metrics, a.ready, cfg.MetricsAddr == "")
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "handoff_ready",
		Help: "1 when this replica is ready (database reachable, schema current; what /readyz answers), else 0.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if a.ready(ctx) != "" {
			return 0
		}
		return 1
	}))
	if cfg.Integrated() {
		if err := a.wire(ctx, ov); err != nil {
			st.Close()
			return nil, err
		}
	} else {
		log.Warn("no integrations configured: only /healthz, /readyz and /metrics are served; set HANDOFF_TEAMS_APP_ID, HANDOFF_RASA_URL and HANDOFF_SERVICENOW_URL to run the bridge")
	}
	return a, nil
}

// ready reports why the service cannot work, or "" when it can.
func (a *app) ready(ctx context.Context) string {
	if err := a.store.Ping(ctx); err != nil {
		return "database unreachable: " + err.Error()
	}
	ok, reason, err := a.store.SchemaCurrent(ctx)
	if err != nil {
		return "schema check failed: " + err.Error()
	}
	if !ok {
		return "schema not current: " + reason
	}
	return ""
}

// serve listens on cfg.Addr, runs the loops, and on ctx's end (or when the
// HTTP server or a loop fails) shuts everything down in order: see shutdown.
// If started is not nil it receives the listening address once requests are
// accepted.
func (a *app) serve(ctx context.Context, started chan<- string) error {
	listen := net.Listen
	if a.listen != nil {
		listen = a.listen
	}
	ln, err := listen("tcp", a.cfg.Addr)
	if err != nil {
		a.store.Close()
		return fmt.Errorf("listen on %s (HANDOFF_ADDR): %w", a.cfg.Addr, err)
	}
	srv := newHTTPServer(a.cfg.Addr, instrument(a.mux, a.metrics, a.cfg.MaxBody, a.log), a.log)
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	a.log.Info("listening", "addr", ln.Addr().String())
	if a.cfg.MetricsAddr != "" {
		msrv, err := a.serveMetrics()
		if err != nil {
			_ = srv.Close()
			return err
		}
		defer func() { _ = msrv.Close() }()
	}
	loops := a.startLoops()
	if started != nil {
		started <- ln.Addr().String()
	}

	var cause error
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		cause = fmt.Errorf("http server: %w", err)
		a.log.Error("http server failed; shutting down", "err", err)
	case e := <-loops.exited:
		cause = fmt.Errorf("%s stopped unexpectedly: %w", e.name, e.err)
		if e.err == nil {
			cause = fmt.Errorf("%s stopped unexpectedly", e.name)
		}
		a.log.Error("background loop stopped; shutting down", "loop", e.name, "err", e.err)
	}
	return errors.Join(cause, a.shutdown(srv, loops))
}

// serveMetrics serves /metrics alone on HANDOFF_METRICS_ADDR. It is closed
// last, so the final scrape of a stopping replica still answers.
func (a *app) serveMetrics() (*httpServer, error) {
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (HANDOFF_METRICS_ADDR): %w", a.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.handler())
	srv := newHTTPServer(a.cfg.MetricsAddr, mux, a.log)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics listener failed", "err", err)
		}
	}()
	a.log.Info("metrics listening", "addr", ln.Addr().String())
	return srv, nil
}
