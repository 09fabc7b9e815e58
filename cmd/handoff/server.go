package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readiness reports whether the service can do its work. reason is empty when
// ready.
type readiness func(ctx context.Context) (reason string)

// metrics holds the service's Prometheus collectors.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	relay    *relayMetrics
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_http_requests_total",
			Help: "HTTP requests served, by route pattern and status code.",
		}, []string{"route", "status"}),
	}
	reg.MustRegister(m.requests)
	m.relay = newRelayMetrics(reg)
	return m
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument counts requests by the mux pattern that served them and caps
// request bodies.
func instrument(next *http.ServeMux, m *metrics, maxBody int64, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		next.ServeHTTP(sw, r)
		_, pattern := next.Handler(r)
		if pattern == "" {
			pattern = "unmatched"
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		m.requests.WithLabelValues(pattern, strconv.Itoa(sw.status)).Inc()
		log.DebugContext(r.Context(), "http request", "method", r.Method, "route", pattern, "status", sw.status,
			"duration_ms", time.Since(start).Milliseconds())
	})
}

// baseRoutes registers the operations surface.
// /metrics is left out when withMetrics is false (HANDOFF_METRICS_ADDR serves
// it on its own listener).
func baseRoutes(mux *http.ServeMux, m *metrics, ready readiness, withMetrics bool) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if reason := ready(ctx); reason != "" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": reason})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if withMetrics {
		mux.Handle("GET /metrics", m.handler())
	}
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// httpServer is an http.Server with its drainer.
type httpServer struct {
	*http.Server
	drainer *drainer
}

// Drain shuts the server down within ctx (see drainer.drain).
func (s *httpServer) Drain(ctx context.Context) error { return s.drainer.drain(ctx, s.Server) }

// newHTTPServer returns a server with every timeout set.
func newHTTPServer(addr string, h http.Handler, log *slog.Logger) *httpServer {
	d := newDrainer(log)
	return &httpServer{drainer: d, Server: &http.Server{
		Addr:              addr,
		Handler:           d.wrap(h),
		ConnState:         d.connState,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      60 * time.Second, // exports stream for a while
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
}
