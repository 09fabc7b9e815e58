package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/rasa/rasatest"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// demoClient talks to the demo's pages and JSON endpoints the way the pages'
// scripts do.
type demoClient struct {
	t    *testing.T
	base string
}

func (c demoClient) get(path string) (int, string) {
	c.t.Helper()
	resp, err := http.Get(c.base + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c demoClient) post(path string, body any) {
	c.t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(c.base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		c.t.Fatalf("POST %s %s: %d %s", path, b, resp.StatusCode, msg)
	}
}

type pollLine struct {
	Seq     int
	Kind    string
	Author  string
	Text    string
	Buttons []struct{ Index int }
}

type pollAnswer struct {
	Lines  []pollLine
	HTML   string
	Status struct{ State, Label string }
}

// waitLine long-polls the employee's chat until a line of kind containing
// text arrives, and returns every line seen.
func (c demoClient) waitLine(user, kind, text string) []pollLine {
	c.t.Helper()
	return c.waitFor(user, fmt.Sprintf("a %s line with %q", kind, text), func(l pollLine) bool {
		return l.Kind == kind && strings.Contains(l.Text, text)
	})
}

// waitFor long-polls the employee's chat until a line satisfies ok, and
// returns every line seen.
func (c demoClient) waitFor(user, what string, ok func(pollLine) bool) []pollLine {
	c.t.Helper()
	var all []pollLine
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		q := url.Values{"user": {user}, "after": {"0"}, "state": {"-"}}
		_, body := c.get("/employee/api/poll?" + q.Encode())
		var a pollAnswer
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			c.t.Fatalf("poll answer %s: %v", body, err)
		}
		all = a.Lines
		for _, l := range a.Lines {
			if ok(l) {
				return all
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("%s never saw %s; saw %+v", user, what, all)
	return nil
}

// console reads the agent console's state.
func (c demoClient) console() console2 {
	c.t.Helper()
	_, body := c.get("/agent/api/state?agent=beth.anglin")
	var s console2
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		c.t.Fatalf("console state %s: %v", body, err)
	}
	return s
}

type console2 struct {
	Version uint64
	Waiting []struct{ Group, Requester, Reason, Context string }
	Chats   []struct {
		Group, State string
		Open         bool
		Messages     []struct{ Kind, Author, Text string }
	}
	QueueHTML string `json:"queue_html"`
	ChatsHTML string `json:"chats_html"`
}

func (c demoClient) waitConsole(what string, ok func(console2) bool) console2 {
	c.t.Helper()
	var s console2
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if s = c.console(); ok(s) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("the console never showed %s; it shows %+v", what, s)
	return s
}

// TestDemoFlow runs the browser flow over the pages' endpoints, without a
// browser, in every delivery mode: it checks what each page is given at every
// step.
func TestDemoFlow(t *testing.T) {
	for _, delivery := range []string{"poll", "webhook", "hybrid"} {
		t.Run(delivery, func(t *testing.T) { demoFlow(t, delivery) })
	}
}

func demoFlow(t *testing.T, delivery string) {
	log := slog.New(slog.NewTextHandler(demoTestLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := startDemo(context.Background(), demoOptions{Addr: "127.0.0.1:0", BridgeAddr: "127.0.0.1:0",
		Delivery: delivery, PollWait: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	c := demoClient{t: t, base: d.URL}
	tx := bridge.DefaultTexts()
	const user = "Megan Bowen"

	for _, p := range []string{"/", "/employee?user=Megan+Bowen", "/agent", "/review", "/review/report",
		"/review/export?format=csv", "/review/export?format=jsonl", "/review/export?format=nlu", "/static/demo.css",
		"/static/employee.js", "/static/agent.js"} {
		if code, _ := c.get(p); code != 200 {
			t.Errorf("GET %s: %d", p, code)
		}
	}
	c.waitLine(user, "notice", tx.Welcome)

	c.post("/employee/api/send", map[string]string{"user": user, "text": "how do I reset my password?"})
	c.waitLine(user, "bot", "What happened?")
	lines := c.waitFor(user, "a card", func(l pollLine) bool { return len(l.Buttons) > 0 })
	var card pollLine
	for _, l := range lines {
		if len(l.Buttons) > 0 {
			card = l
		}
	}
	if len(card.Buttons) != 2 || card.Kind != "bot" {
		t.Fatalf("no bot card with two buttons: %+v", lines)
	}
	c.post("/employee/api/send", map[string]string{"user": user, "seq": strconv.Itoa(card.Seq), "button": "0"})
	c.waitLine(user, "user", "I forgot my password")
	c.waitLine(user, "bot", "passwordreset.example.com")

	c.post("/employee/api/send", map[string]string{"user": user, "text": "talk to live agent"})
	c.waitLine(user, "notice", tx.Connecting)
	s := c.waitConsole("the waiting chat", func(s console2) bool { return len(s.Waiting) == 1 })
	w := s.Waiting[0]
	if w.Requester != user || w.Reason != "user_asked" || !strings.Contains(w.Context, "how do I reset my password?") {
		t.Errorf("waiting chat %+v: want Megan Bowen, user_asked and the transcript", w)
	}
	if !strings.Contains(s.QueueHTML, "Megan Bowen") || !strings.Contains(s.QueueHTML, `action="/agent/api/accept"`) {
		t.Errorf("queue HTML lacks the chat or its accept form:\n%s", s.QueueHTML)
	}
	group := w.Group

	c.post("/agent/api/accept", map[string]string{"agent": "beth.anglin", "group": group})
	c.waitLine(user, "agent", snowtest.DefaultGreeting)
	for i, m := range []struct{ user, agent string }{{"first question", "first answer"}, {"second question", "second answer"}} {
		c.post("/employee/api/send", map[string]string{"user": user, "text": m.user})
		c.waitConsole("the user's message", func(s console2) bool {
			return len(s.Chats) == 1 && len(s.Chats[0].Messages) > 1+2*i && s.Chats[0].Messages[len(s.Chats[0].Messages)-1].Text == m.user
		})
		c.post("/agent/api/say", map[string]string{"agent": "beth.anglin", "group": group, "text": m.agent})
		lines := c.waitLine(user, "agent", m.agent)
		for _, l := range lines {
			if l.Text == m.agent && l.Author != "Beth Anglin" {
				t.Errorf("agent line %+v: want author Beth Anglin", l)
			}
		}
	}
	c.post("/agent/api/close", map[string]string{"agent": "beth.anglin", "group": group})
	c.waitLine(user, "notice", tx.AgentClosed)
	c.waitLine(user, "notice", tx.BotBack)
	s = c.waitConsole("the closed chat", func(s console2) bool { return len(s.Chats) == 1 && !s.Chats[0].Open })
	last := s.Chats[0].Messages[len(s.Chats[0].Messages)-1]
	if last.Kind != "system" || last.Text != "Beth Anglin has closed the support session" {
		t.Errorf("last console message %+v: want the closing text", last)
	}
	c.post("/employee/api/send", map[string]string{"user": user, "text": "what are your opening hours?"})
	c.waitLine(user, "bot", "staffed Monday to Friday")

	// Every line arrived once, in order: user → bot, notices where the bridge
	// put them.
	lines = c.waitLine(user, "bot", "staffed Monday to Friday")
	var got []string
	for _, l := range lines {
		if l.Text != "" {
			got = append(got, l.Kind+": "+firstWords(l.Text))
		}
	}
	want := []string{
		"notice: Hi! I'm the virtual",
		"user: how do I reset",
		"bot: I can help with",
		"user: I forgot my password",
		"bot: You can set a",
		"user: talk to live agent",
		"bot: Sure, I'm connecting you",
		"notice: I'm connecting you to",
		"notice: Live agent chat", // the status card (updated in place in Teams)
		"agent: Thank you for contacting",
		"user: first question",
		"agent: first answer",
		"user: second question",
		"agent: second answer",
		"notice: The agent has closed",
		"notice: How did the live",
		"notice: You're back with the",
		"user: what are your opening",
		"bot: The IT service desk",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the employee's chat:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	if _, body := c.get("/review"); !strings.Contains(body, "user_asked") || !strings.Contains(body, "agent_closed") {
		t.Errorf("the review page does not list the handoff:\n%s", body)
	}
	if _, body := c.get("/review/export?format=csv"); !strings.Contains(body, "user_asked") {
		t.Errorf("the CSV export lacks the handoff:\n%s", body)
	}

	// Pages escape what users and agents write.
	c.post("/employee/api/send", map[string]string{"user": `<script>alert(1)</script>`, "text": `<img src=x onerror=alert(1)>`})
	_, body := c.get("/employee?user=" + url.QueryEscape(`<script>alert(1)</script>`))
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
		t.Errorf("the employee page does not escape user input:\n%s", body)
	}

	// A cross-site form post is refused.
	req, _ := http.NewRequest("POST", d.URL+"/employee/api/send", strings.NewReader("user=x&text=hi"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site post: %d, want 403", resp.StatusCode)
	}
}

func firstWords(s string) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(4, len(f))], " ")
}

// lockedBuffer is an io.Writer safe for the demo's output and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDemoCommand runs `handoff demo` as the README says, checks that it
// prints the URLs and serves them, and that cancelling (Ctrl-C) stops it
// cleanly.
func TestDemoCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--addr", "127.0.0.1:0"}, func(string) string { return "" }, &stdout, &stderr)
	}()
	urlRE := regexp.MustCompile(`Agent console \(ServiceNow\)\s+(http://\S+)`)
	var agentURL string
	deadline := time.Now().Add(30 * time.Second)
	for agentURL == "" && time.Now().Before(deadline) {
		select {
		case code := <-done:
			t.Fatalf("demo exited with %d:\n%s\n%s", code, stdout.String(), stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if m := urlRE.FindStringSubmatch(stdout.String()); m != nil {
			agentURL = m[1]
		}
	}
	if agentURL == "" {
		t.Fatalf("no agent console URL printed:\n%s\n%s", stdout.String(), stderr.String())
	}
	for _, want := range []string{"Employee chat (Teams)", "/employee?user=Megan+Bowen", "Review of the handoffs", "Ctrl-C"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, stdout.String())
		}
	}
	resp, err := http.Get(agentURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("Connect Support")) {
		t.Errorf("GET %s: %d\n%s", agentURL, resp.StatusCode, page)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit code %d after Ctrl-C, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the demo did not stop within 15s of Ctrl-C")
	}
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "level=ERROR") {
			t.Errorf("error logged: %s", l)
		}
	}
}

// TestDemoFlags checks the flags' validation.
// TestDemoDefaults: the Connect desk's demo runs hybrid delivery (webhooks
// plus the reconciling poll, the mode the README recommends), the Virtual
// Agent desk webhook delivery (its API has no polling endpoint, so any other
// mode is refused), and a chosen mode is kept.
func TestDemoDefaults(t *testing.T) {
	for _, tc := range []struct {
		desk, delivery, wantDesk, wantDelivery string
		problem                                bool
	}{
		{"", "", "connect", "hybrid", false},
		{"connect", "poll", "connect", "poll", false},
		{"va", "", "va", "webhook", false},
		{"va", "hybrid", "va", "hybrid", true},
		{"va", "poll", "va", "poll", true},
		{"slack", "", "slack", "hybrid", false},
		{"zendesk", "", "zendesk", "", true},
		{"connect", "carrier-pigeon", "connect", "carrier-pigeon", true},
	} {
		o := demoOptions{Desk: tc.desk, Delivery: tc.delivery}
		problem := o.check()
		if o.Desk != tc.wantDesk || o.Delivery != tc.wantDelivery || (problem != "") != tc.problem {
			t.Errorf("--desk %q --delivery %q: desk %q delivery %q problem %q; want %q %q problem %v",
				tc.desk, tc.delivery, o.Desk, o.Delivery, problem, tc.wantDesk, tc.wantDelivery, tc.problem)
		}
	}
}

func TestDemoFlags(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--delivery", "carrier-pigeon"},
		{"demo", "--rasa-url", "localhost:5005"},
		{"demo", "extra"},
	} {
		var stdout, stderr lockedBuffer
		if code := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %s", args, code, exitUsage, stderr.String())
		}
	}
	var stdout, stderr lockedBuffer
	if code := run(context.Background(), []string{"demo", "-h"}, func(string) string { return "" }, &stdout, &stderr); code != exitOK ||
		!strings.Contains(stdout.String(), "--delivery") && !strings.Contains(stdout.String(), "-delivery") {
		t.Errorf("demo -h: exit %d, output %s", code, stdout.String())
	}
}

// TestDemoProcessInterrupt runs `handoff demo` as a real process and stops it
// with SIGINT, as Ctrl-C in a terminal does: it must exit 0, promptly, and
// leave no temporary directory behind.
func TestDemoProcessInterrupt(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(os.Args[0], "demo", "--addr", "127.0.0.1:0")
	cmd.Env = []string{"HANDOFF_TEST_AS_MAIN=1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + tmp}
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), "Press Ctrl-C to stop.") {
		select {
		case err := <-done:
			t.Fatalf("demo exited early (%v):\n%s\n%s", err, stdout.String(), stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("demo did not start:\n%s\n%s", stdout.String(), stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo exited with %v after SIGINT; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("demo did not stop within 15s of SIGINT:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "handoff demo: stopped") {
		t.Errorf("no stop message:\n%s", stdout.String())
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "handoff-demo-*")); len(left) > 0 {
		t.Errorf("temporary directory left behind: %v", left)
	}
}

// TestDemoRasaURL checks that --rasa-url sends the employee's messages to that
// Rasa server instead of the scripted bot.
func TestDemoRasaURL(t *testing.T) {
	rs := rasatest.New(rasatest.Options{Token: "real-token"})
	defer rs.Close()
	log := slog.New(slog.NewTextHandler(demoTestLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := startDemo(context.Background(), demoOptions{Addr: "127.0.0.1:0", BridgeAddr: "127.0.0.1:0",
		Delivery: "poll", RasaURL: rs.URL(), RasaToken: "real-token", PollWait: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.rasa != nil {
		t.Error("the demo started its scripted bot although --rasa-url was given")
	}
	c := demoClient{t: t, base: d.URL}
	c.post("/employee/api/send", map[string]string{"user": "Megan Bowen", "text": "hello"})
	c.waitLine("Megan Bowen", "bot", "IT helpdesk bot")
	if n := rs.Stats().Messages; n == 0 {
		t.Errorf("the given Rasa server got no message (stats %+v)", rs.Stats())
	}
}
