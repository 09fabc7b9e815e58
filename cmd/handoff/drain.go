package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// drainer follows an HTTP server's connections and requests for its
// shutdown. http.Server.Shutdown waits for a connection that was accepted
// but has not sent a request yet until it is five seconds old: an HTTP
// client that dialled a connection it then did not need (Go's transport
// does so when another connection frees up first), or a load balancer's
// preconnect, held the drain that long, past the budget of a short
// HANDOFF_SHUTDOWN_TIMEOUT. drain closes such connections at once, as
// Shutdown closes idle keep-alive ones, and when the budget still runs out
// it names the requests in flight.
type drainer struct {
	log *slog.Logger

	mu       sync.Mutex
	silent   map[net.Conn]struct{} // accepted, no request read from it yet
	closing  bool
	requests map[*http.Request]time.Time
}

func newDrainer(log *slog.Logger) *drainer {
	return &drainer{log: log, silent: map[net.Conn]struct{}{}, requests: map[*http.Request]time.Time{}}
}

// connState is the server's ConnState hook.
func (d *drainer) connState(c net.Conn, s http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s != http.StateNew {
		delete(d.silent, c)
		return
	}
	if d.closing {
		_ = c.Close()
		return
	}
	d.silent[c] = struct{}{}
}

// wrap records next's requests while they are served.
func (d *drainer) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.requests[r] = time.Now()
		d.mu.Unlock()
		defer func() {
			d.mu.Lock()
			delete(d.requests, r)
			d.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

// drain shuts srv down within ctx: it stops accepting, closes the
// connections that never sent a request, and waits for the requests in
// flight. When ctx ends first it logs those requests (oldest first), closes
// every connection and returns Shutdown's error.
func (d *drainer) drain(ctx context.Context, srv *http.Server) error {
	d.mu.Lock()
	d.closing = true
	for c := range d.silent {
		_ = c.Close()
	}
	clear(d.silent)
	d.mu.Unlock()
	err := srv.Shutdown(ctx)
	if err == nil {
		return nil
	}
	type inflight struct {
		method, path string
		since        time.Time
	}
	d.mu.Lock()
	var left []inflight
	for r, since := range d.requests {
		left = append(left, inflight{r.Method, r.URL.Path, since})
	}
	d.mu.Unlock()
	sort.Slice(left, func(i, j int) bool { return left[i].since.Before(left[j].since) })
	d.log.Warn("requests still in flight when the HTTP drain ran out of time; closing their connections",
		"requests", len(left))
	for _, f := range left {
		d.log.Warn("request cut at shutdown", "method", f.method, "path", f.path,
			"age_ms", time.Since(f.since).Milliseconds())
	}
	_ = srv.Close()
	return err
}
