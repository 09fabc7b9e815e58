package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge/store"
)

// events records what happened, in order.
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, s)
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

// lifecycleApp is an app on SQLite with the given loops and a /slow route
// that answers when release is closed. Each loop records "<name> stopped"
// after checking the store still answers.
func lifecycleApp(t *testing.T, ev *events, release chan struct{}, stuck string) *app {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "h.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Addr: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second, MaxBody: 1 << 20}
	a := &app{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), store: st, metrics: newMetrics(), mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		ev.add("request started")
		<-release
		ev.add("request answered")
		_, _ = io.WriteString(w, "done")
	})
	for _, l := range []struct {
		name  string
		stage stage
	}{{"desk client", stageClients}, {"dispatcher", stageDispatch}, {"leader", stageLeader}, {"poller", stageJobs}, {"sweeper", stageJobs}} {
		a.loops = append(a.loops, loop{name: l.name, stage: l.stage, run: func(ctx context.Context) error {
			<-ctx.Done()
			if l.name == stuck {
				select {} // ignores its deadline
			}
			if err := st.Ping(context.Background()); err != nil {
				ev.add(l.name + " found the store closed")
			}
			ev.add(l.name + " stopped")
			return nil
		}})
	}
	return a
}

// position returns the index of s in got, failing when it is missing.
func position(t *testing.T, got []string, s string) int {
	t.Helper()
	i := slices.Index(got, s)
	if i < 0 {
		t.Fatalf("%q did not happen; events %q", s, got)
	}
	return i
}

// checkOrder asserts HTTP drained before any loop stopped, jobs before the
// leases before the dispatcher, and no loop saw the store closed.
func checkOrder(t *testing.T, got []string) {
	t.Helper()
	for _, e := range got {
		if strings.Contains(e, "store closed") {
			t.Fatalf("a loop ran after the store closed: %q", got)
		}
	}
	answered := position(t, got, "request answered")
	poller, sweeper := position(t, got, "poller stopped"), position(t, got, "sweeper stopped")
	leader, disp := position(t, got, "leader stopped"), position(t, got, "dispatcher stopped")
	client := position(t, got, "desk client stopped")
	if !(answered < poller && answered < sweeper && poller < leader && sweeper < leader && leader < disp && disp < client) {
		t.Fatalf("stop order %q: want the request answered, then poller and sweeper, then leader, then dispatcher, then the desk client", got)
	}
}

// TestShutdownIsOrdered: on cancel the in-flight request is answered first,
// then the jobs stop, then the leases, then the dispatcher, then the desk
// client's background work, and the store closes last.
func TestShutdownIsOrdered(t *testing.T) {
	ev, release := &events{}, make(chan struct{})
	a := lifecycleApp(t, ev, release, "")
	logs := &syncBuffer{}
	a.log = slog.New(slog.NewTextHandler(logs, nil))
	addr, cancel, done := serveApp(a)
	answer := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err == nil {
			resp.Body.Close()
		}
		answer <- err
	}()
	waitUntil(t, func() bool { return slices.Contains(ev.list(), "request started") })
	cancel()
	// The loops keep running while the request is in flight.
	waitUntil(t, func() bool { return strings.Contains(logs.String(), "shutting down") })
	if got := ev.list(); len(got) != 1 {
		t.Fatalf("loops stopped while a request was in flight: %q", got)
	}
	close(release)
	if err := <-answer; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve = %v, want nil", err)
	}
	checkOrder(t, ev.list())
	if err := a.store.Ping(context.Background()); err == nil {
		t.Fatal("the store is still open after serve returned")
	}
}

// TestShutdownIsBounded: a loop that ignores its deadline does not hold the
// process past HANDOFF_SHUTDOWN_TIMEOUT; serve names it and still closes the
// store.
func TestShutdownIsBounded(t *testing.T) {
	ev, release := &events{}, make(chan struct{})
	close(release)
	a := lifecycleApp(t, ev, release, "dispatcher")
	_, cancel, done := serveApp(a)
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "dispatcher did not stop within HANDOFF_SHUTDOWN_TIMEOUT") {
			t.Fatalf("serve = %v, want the stuck dispatcher named", err)
		}
	case <-time.After(a.cfg.ShutdownTimeout + 20*time.Second): // generous: a loaded machine
		t.Fatal("serve did not return after the shutdown timeout")
	}
	if err := a.store.Ping(context.Background()); err == nil {
		t.Fatal("the store is still open after serve returned")
	}
}

// failingListener accepts until fail is closed, then fails for good.
type failingListener struct {
	net.Listener
	fail chan struct{}
}

func (l failingListener) Accept() (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := l.Listener.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-l.fail:
		return nil, errors.New("listener broke")
	}
}

// TestShutdownAfterHTTPFailure: when the HTTP server fails, the loops still
// stop, in order, before the store closes (before, the store closed while the
// loops were still stopping).
func TestShutdownAfterHTTPFailure(t *testing.T) {
	ev, release := &events{}, make(chan struct{})
	close(release)
	a := lifecycleApp(t, ev, release, "")
	fail := make(chan struct{})
	a.listen = func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		return failingListener{Listener: ln, fail: fail}, err
	}
	addr, cancel, done := serveApp(a)
	defer cancel() // the HTTP failure, not a cancel, ends serve here
	resp, err := http.Get("http://" + addr + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	close(fail)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "listener broke") {
			t.Fatalf("serve = %v, want the HTTP failure", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after the HTTP server failed")
	}
	checkOrder(t, ev.list())
	if err := a.store.Ping(context.Background()); err == nil {
		t.Fatal("the store is still open after serve returned")
	}
}

// serveApp runs a.serve until cancel and returns the address it listens
// on and the channel serve's result arrives on.
func serveApp(a *app) (addr string, cancel context.CancelFunc, done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- a.serve(ctx, started) }()
	return <-started, cancel, errc
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// acceptSignal tells accepted when it has handed a connection to the server.
type acceptSignal struct {
	net.Listener
	accepted chan struct{}
}

func (l acceptSignal) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted <- struct{}{}
	}
	return c, err
}

// TestShutdownClosesSilentConnections: a connection that never sends a
// request (an HTTP client's spare dial, a load balancer's preconnect) does
// not hold the drain; http.Server.Shutdown alone waits for it until it is
// five seconds old, past this app's one-second drain budget.
func TestShutdownClosesSilentConnections(t *testing.T) {
	ev, release := &events{}, make(chan struct{})
	close(release)
	a := lifecycleApp(t, ev, release, "")
	accepted := make(chan struct{}, 4)
	a.listen = func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		return acceptSignal{Listener: ln, accepted: accepted}, err
	}
	addr, cancel, done := serveApp(a)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	<-accepted
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve = %v after %v, want nil", err, time.Since(start))
	}
	// The server closed the silent connection: reading it ends.
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("reading the silent connection after shutdown: %v, want EOF", err)
	}
}

// TestShutdownNamesCutRequests: a request that outlasts the drain budget is
// cut, and the log names it, so an operator sees which route held shutdown.
func TestShutdownNamesCutRequests(t *testing.T) {
	ev, release := &events{}, make(chan struct{})
	defer close(release)
	a := lifecycleApp(t, ev, release, "")
	logs := &syncBuffer{}
	a.log = slog.New(slog.NewTextHandler(logs, nil))
	addr, cancel, done := serveApp(a)
	go func() {
		if resp, err := http.Get("http://" + addr + "/slow"); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, func() bool { return slices.Contains(ev.list(), "request started") })
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "drain http requests") {
		t.Fatalf("serve = %v, want the drain's timeout", err)
	}
	if !strings.Contains(logs.String(), `msg="request cut at shutdown" method=GET path=/slow`) {
		t.Errorf("the log does not name the cut request:\n%s", logs)
	}
}
