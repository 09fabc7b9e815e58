package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // HANDOFF_TEST_PPROF_ADDR
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge/store/storetest"
)

// TestMain lets a test re-execute this test binary as the handoff command
// (HANDOFF_TEST_AS_MAIN=1), so signal handling is tested on a real process,
// or as BenchmarkRelay's bare proxy (HANDOFF_TEST_AS_PROXY=1).
func TestMain(m *testing.M) {
	if os.Getenv("HANDOFF_TEST_AS_MAIN") == "1" {
		if addr := os.Getenv("HANDOFF_TEST_PPROF_ADDR"); addr != "" {
			// A benchmark's child process, profiled with
			// go tool pprof http://$addr/debug/pprof/profile.
			go func() { _ = http.ListenAndServe(addr, nil) }()
		}
		main()
		return
	}
	if os.Getenv("HANDOFF_TEST_AS_PROXY") == "1" {
		runBareProxy()
		return
	}
	os.Exit(m.Run())
}

// startProcess runs `handoff args...` as a child process with env and waits
// until it logs its listening address.
func startProcess(t *testing.T, env map[string]string, args ...string) (cmd *exec.Cmd, addr string, stderr *syncBuffer) {
	t.Helper()
	cmd = exec.Command(os.Args[0], args...)
	cmd.Dir = t.TempDir() // the default SQLite file lands here
	cmd.Env = []string{"HANDOFF_TEST_AS_MAIN=1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	pr, pw := io.Pipe()
	stderr = &syncBuffer{}
	cmd.Stderr = io.MultiWriter(pw, stderr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = pw.Close() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "listening" {
				found <- rec["addr"].(string)
			}
		}
	}()
	select {
	case addr = <-found:
	case <-time.After(30 * time.Second):
		t.Fatalf("process did not start listening; stderr:\n%s", stderr.String())
	}
	return cmd, addr, stderr
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// checkOperationsSurface asserts /healthz, /readyz and /metrics answer.
func checkOperationsSurface(t *testing.T, base string) {
	t.Helper()
	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.Contains(body, "ready") {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	code, body := get(t, base+"/metrics")
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", `handoff_http_requests_total{route="GET /readyz",status="200"} 1`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics = %d, missing %q in:\n%s", code, want, body)
		}
	}
}

// localServeEnv is the smallest configuration serve accepts: the bridge in
// anonymous dev mode on loopback, with Rasa and ServiceNow unreachable (which
// only matters once a message is relayed). extra adds or overrides entries.
func localServeEnv(extra map[string]string) map[string]string {
	env := map[string]string{
		"HANDOFF_ADDR": "127.0.0.1:0", "HANDOFF_TEAMS_ANONYMOUS_DEV": "true",
		"HANDOFF_RASA_URL": "http://127.0.0.1:9", "HANDOFF_SERVICENOW_URL": "http://127.0.0.1:9",
		"HANDOFF_SERVICENOW_USER": "bridge", "HANDOFF_SERVICENOW_PASSWORD": "pw", "HANDOFF_SERVICENOW_QUEUE": "q",
		"HANDOFF_SERVICENOW_MAX_RETRIES": "0", "HANDOFF_REVIEW_SALT": "salt",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func TestServeUsesSQLiteByDefault(t *testing.T) {
	cmd, addr, stderr := startProcess(t, localServeEnv(nil), "serve")
	checkOperationsSurface(t, "http://"+addr)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
}

func TestServeOnPostgres(t *testing.T) {
	url := storetest.DatabaseURL(t)
	cmd, addr, stderr := startProcess(t, localServeEnv(map[string]string{"HANDOFF_DATABASE_URL": url}), "serve")
	checkOperationsSurface(t, "http://"+addr)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopped cleanly") {
		t.Fatalf("no clean stop logged:\n%s", stderr.String())
	}
}

// TestSIGTERMDuringLoad sends SIGTERM while clients hammer the server and one
// request is in flight (its headers are completed only after the signal):
// the in-flight request gets its full answer, every request the server
// accepted is answered completely, and the process exits 0.
func TestSIGTERMDuringLoad(t *testing.T) {
	// The bridge in anonymous dev mode (loopback only) so a Teams activity can
	// be posted without a token; Rasa and ServiceNow are unreachable, which
	// does not matter: the endpoint only stores the activity.
	cmd, addr, stderr := startProcess(t, map[string]string{
		"HANDOFF_ADDR": "127.0.0.1:0", "HANDOFF_TEAMS_ANONYMOUS_DEV": "true",
		"HANDOFF_RASA_URL": "http://127.0.0.1:9", "HANDOFF_SERVICENOW_URL": "http://127.0.0.1:9",
		"HANDOFF_SERVICENOW_USER": "bridge", "HANDOFF_SERVICENOW_PASSWORD": "sn-password-must-not-be-logged", "HANDOFF_SERVICENOW_QUEUE": "q",
		"HANDOFF_SERVICENOW_MAX_RETRIES": "0", "HANDOFF_REVIEW_SALT": "salt-must-not-be-logged",
		"HANDOFF_RASA_TOKEN": "rasa-token-must-not-be-logged", "HANDOFF_LOG_LEVEL": "debug",
	}, "serve")
	base := "http://" + addr

	// The in-flight request: its handler is reading the body when SIGTERM
	// arrives; the rest of the body follows after the signal.
	activity := `{"type":"message","id":"inflight-1","channelId":"msteams","serviceUrl":"http://127.0.0.1:9/",` +
		`"from":{"id":"29:u","name":"Abel"},"recipient":{"id":"28:app"},` +
		`"conversation":{"id":"a:inflight","conversationType":"personal","tenantId":"t"},"text":"still there?"}`
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	half := len(activity) / 2
	if _, err := fmt.Fprintf(slow, "POST /api/messages HTTP/1.1\r\nHost: handoff\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(activity), activity[:half]); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var (
		wg                   sync.WaitGroup
		mu                   sync.Mutex
		ok, notAccepted, bad int
		badErrs              []string
	)
	stop := make(chan struct{})
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(base + "/readyz")
				mu.Lock()
				switch {
				case err != nil && notAcceptedErr(err):
					// Refused, or reset/closed while still in the listen
					// backlog: the server never accepted it.
					notAccepted++
				case err != nil:
					bad++
					badErrs = append(badErrs, err.Error())
				default:
					body, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					if rerr != nil || resp.StatusCode != 200 || !strings.Contains(string(body), "ready") {
						bad++
						badErrs = append(badErrs, fmt.Sprintf("status %d body %q err %v", resp.StatusCode, body, rerr))
					} else {
						ok++
					}
				}
				done := notAccepted > 0
				mu.Unlock()
				if done {
					return
				}
			}
		}()
	}
	// Signal once the load is going (an explicit condition, not a sleep).
	loaded := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := ok
		mu.Unlock()
		if n >= 50 {
			break
		}
		if time.Now().After(loaded) {
			t.Fatalf("only %d requests answered before SIGTERM", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()

	// Finish the in-flight request once shutdown has begun: it must be
	// answered.
	began := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"shutting down"`) {
		if time.Now().After(began) {
			t.Fatalf("no shutdown logged after SIGTERM:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := io.WriteString(slow, activity[half:]); err != nil {
		t.Fatalf("in-flight request cut off: %v", err)
	}
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatalf("in-flight request got no answer after SIGTERM: %v\n%s", err, stderr.String())
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("in-flight request: %d %q\n%s", resp.StatusCode, body, stderr.String())
	}

	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("process exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("process did not exit after SIGTERM")
	}
	close(stop)
	wg.Wait()
	t.Logf("requests: %d answered, %d not accepted after shutdown began, %d broken", ok, notAccepted, bad)
	if logs := stderr.String(); strings.Contains(logs, "must-not-be-logged") {
		t.Errorf("a secret reached the log (even at debug level):\n%s", logs)
	}
	if ok == 0 {
		t.Fatal("no request was answered")
	}
	if bad > 0 {
		t.Fatalf("%d requests broke: %v", bad, badErrs[:min(5, len(badErrs))])
	}
}

// notAcceptedErr reports errors of a request the server never accepted:
// refused, or reset/closed by the kernel when the listener closed with the
// connection still in its backlog (before the request was read).
func notAcceptedErr(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "connection reset") ||
		strings.HasSuffix(err.Error(), ": EOF")
}

func TestMigrateCommand(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "m.db")
	var out, errb strings.Builder
	env := mapEnv(map[string]string{"HANDOFF_DATABASE_URL": db})
	if code := run(context.Background(), []string{"migrate", "status"}, env, &out, &errb); code != 0 {
		t.Fatalf("migrate status: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "pending") || strings.Contains(out.String(), " 0 pending") {
		t.Fatalf("fresh database should list pending versions:\n%s", out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"migrate", "up"}, env, &out, &errb); code != 0 {
		t.Fatalf("migrate up: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), " 0 pending") {
		t.Fatalf("after up nothing should be pending:\n%s", out.String())
	}
	if code := run(context.Background(), []string{"migrate", "sideways"}, env, &out, &errb); code != exitUsage {
		t.Fatalf("migrate sideways exit %d, want %d", code, exitUsage)
	}
}

// TestReadyzReportsStaleSchema: /readyz answers 503 with the reason when the
// schema is behind the binary, while /healthz still says the process is up.
func TestReadyzReportsStaleSchema(t *testing.T) {
	cfg, err := LoadConfig(mapEnv(map[string]string{"HANDOFF_ADDR": "127.0.0.1:0",
		"HANDOFF_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "r.db")}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, cfg, newLogger(io.Discard, "text", 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, started) }()
	base := "http://" + <-started
	defer func() { cancel(); <-done }()

	if _, err := a.store.DB().Exec("DELETE FROM goose_db_version WHERE version_id > 0"); err != nil {
		t.Fatal(err)
	}
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "schema not current") {
		t.Fatalf("/readyz with a stale schema = %d %s; want 503 naming the schema", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d; the process is still up", code)
	}
}
