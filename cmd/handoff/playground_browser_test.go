package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/handoffhq/handoff/rasa/rasatest"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// playgroundVersion is the pinned Microsoft 365 Agents Playground release
// (its page and routes are internal and may change between versions).
const playgroundVersion = "0.2.28"

// The Playground's page is wider than the demo's: its log panel takes the
// right third.
const pgW, pgH = 1280, 860

// TestPlaygroundInBrowser drives Microsoft's own Teams client, the
// Microsoft 365 Agents Playground (npm @microsoft/m365agentsplayground,
// pinned), in headless Chromium with real mouse clicks, against the real
// bridge in anonymous dev mode wired to the scripted Rasa (rasatest) and the
// simulated ServiceNow (snowtest):
//
//   - the welcome arrives once although the Playground sends both
//     installationUpdate and conversationUpdate;
//   - a bot button is clicked and its payload reaches Rasa;
//   - a handoff shows the live status card (waiting, End chat);
//   - the agent accepts and writes: the message shows the agent's name and
//     the card changes to "Connected to <agent>";
//   - clicking End chat on the card ends the session, the card changes to
//     "Chat ended" without the button, and the agent's chat hears that the
//     employee left.
//
// Screenshots go to $HANDOFF_ARTIFACTS/playground (HANDOFF_UPDATE_DOCS=1
// also writes docs/playground.png). It runs with
// HANDOFF_PLAYGROUND=1 (npm installs the pinned Playground unless
// HANDOFF_PLAYGROUND_BIN names one) and fails instead of skipping on CI.
func TestPlaygroundInBrowser(t *testing.T) {
	if os.Getenv("HANDOFF_PLAYGROUND") != "1" {
		msg := "set HANDOFF_PLAYGROUND=1 to drive the Microsoft 365 Agents Playground in Chromium (needs node, npm and Chromium)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; CI must run it")
		}
		t.Skip(msg)
	}
	chrome := chromiumPath(t)
	dir := t.TempDir()
	if d := os.Getenv("HANDOFF_ARTIFACTS"); d != "" {
		dir = filepath.Join(d, "playground")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin := playgroundBin(ctx, t)
	log := slog.New(slog.NewTextHandler(demoTestLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rs := rasatest.New(rasatest.Options{Token: demoRasaToken})
	defer rs.Close()
	sn := snowtest.New(snowtest.Options{})
	defer sn.Close()

	// The real bridge, as `handoff serve` runs it for the Playground.
	env := map[string]string{
		"HANDOFF_ADDR":                fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t)),
		"HANDOFF_DATABASE_URL":        "sqlite:" + filepath.Join(t.TempDir(), "playground.db"),
		"HANDOFF_TEAMS_ANONYMOUS_DEV": "true",
		"HANDOFF_RASA_URL":            rs.URL(),
		"HANDOFF_RASA_TOKEN":          demoRasaToken,
		"HANDOFF_SERVICENOW_URL":      sn.URL(),
		"HANDOFF_SERVICENOW_USER":     snowtest.DefaultUser,
		"HANDOFF_SERVICENOW_PASSWORD": snowtest.DefaultPassword,
		"HANDOFF_SERVICENOW_QUEUE":    snowtest.DefaultQueue,
		"HANDOFF_POLL_INTERVAL":       "500ms",
		"HANDOFF_REVIEW_SALT":         "playground-salt",
		"HANDOFF_REVIEW_DIR":          t.TempDir(),
	}
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(ctx, cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	bctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	started := make(chan string, 1)
	go func() { served <- a.serve(bctx, started) }()
	defer func() { stop(); <-served }()
	var bridgeAddr string
	select {
	case bridgeAddr = <-started:
	case err := <-served:
		t.Fatalf("bridge: %v", err)
	}

	// The Playground, headless, talking to the bridge.
	pgPort := freeTCPPort(t)
	cmd := exec.Command(bin, "-e", "http://"+bridgeAddr+"/api/messages", "-c", "msteams", "-p", fmt.Sprint(pgPort), "--disable-telemetry")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "TEAMSAPPTESTER_BROWSER=none")
	out, err := os.Create(filepath.Join(dir, "playground.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	pgURL := fmt.Sprintf("http://127.0.0.1:%d", pgPort)
	for i := 0; ; i++ {
		resp, err := http.Get(pgURL + "/_debug/ping")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 600 {
			t.Fatal("the Playground did not start; see playground.log")
		}
		time.Sleep(100 * time.Millisecond)
	}

	b := newTab(t, "playground", chrome, dir)
	b.do("viewport", chromedp.EmulateViewport(pgW, pgH))
	b.open(pgURL + "/")
	pgWait(b, "body", "Hi! I'm the virtual assistant")
	b.screenshot("welcome")

	// A bot button, clicked with the mouse: its payload reaches Rasa.
	pgSay(b, "I forgot my password")
	pgWait(b, "button", "My account is locked")
	realClick(b, "//button[contains(., 'My account is locked')]")
	pgWait(b, "body", "Accounts unlock automatically")
	if !rasaGot(rs, "/account_locked") {
		t.Fatal("the button's payload /account_locked never reached Rasa")
	}
	b.screenshot("bot-button")

	// The handoff: the status card, waiting, with End chat.
	pgSay(b, "talk to live agent")
	pgWait(b, "body", "Waiting for an agent")
	pgWait(b, "button", "End chat")
	b.screenshot("waiting")

	// The agent accepts and writes.
	var group string
	for i := 0; group == ""; i++ {
		if ws := sn.WaitingChats(); len(ws) > 0 {
			group = ws[0].Group
		} else if i > 300 {
			t.Fatal("no chat reached the agents' queue")
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := sn.Accept(group, "Beth Anglin"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Say(group, "Beth Anglin", "Hi, this is Beth from the IT service desk. How can I help?"); err != nil {
		t.Fatal(err)
	}
	pgWait(b, "body", "Hi, this is Beth from the IT service desk")
	pgWait(b, "body", "Connected to Beth Anglin")
	if b.count("strong, b", "Beth Anglin") == 0 {
		b.screenshot("failed")
		t.Fatal("the agent's message does not show the agent's name in bold")
	}
	shot := b.screenshot("connected")
	if os.Getenv("HANDOFF_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "playground.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// End chat on the card ends the session; the card shows it.
	realClick(b, "//button[contains(., 'End chat')]")
	pgWait(b, "body", "Chat ended")
	pgWait(b, "body", "You're back with the virtual assistant")
	if n := b.count("button", "End chat"); n != 0 {
		b.screenshot("failed")
		t.Fatalf("%d End chat buttons left after the chat ended", n)
	}
	if pgCount(b, "Waiting for an agent") != 0 || pgCount(b, "Connected to Beth Anglin") != 0 {
		b.screenshot("failed")
		t.Fatal("the status card was not updated in place: an older state is still shown")
	}
	b.screenshot("ended")
	left := false
	for i := 0; i < 200 && !left; i++ {
		for _, m := range sn.Messages(group) {
			left = left || m.Text == "The employee left the chat."
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !left {
		t.Errorf("the agent's chat never heard that the employee left: %+v", sn.Messages(group))
	}
	if n := pgCount(b, "Ask me anything, or say"); n != 1 {
		t.Errorf("the welcome is shown %d times, want once", n)
	}

	// The rating card: a real click on 4 ★ in Microsoft's client is a card
	// submit with the button's data; the card turns into the thank-you in
	// place, and Rasa never sees the rating.
	pgWait(b, "button", "4 ★")
	realClick(b, "//button[contains(., '4 ★')]")
	pgWait(b, "body", "Thanks for rating the chat 4/5.")
	if n := b.count("button", "4 ★"); n != 0 {
		b.screenshot("failed")
		t.Fatalf("%d rating buttons left after rating", n)
	}
	b.screenshot("rated")
	for _, c := range rs.Calls() {
		if strings.Contains(string(c.Body), "handoff.csat") {
			t.Errorf("Rasa received the rating: %s", c.Body)
		}
	}
}

// rasaGot reports whether Rasa received a message with exactly text.
func rasaGot(rs *rasatest.Server, text string) bool {
	for _, c := range rs.Calls() {
		var body struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(c.Body, &body) == nil && body.Message == text {
			return true
		}
	}
	return false
}

// pgCount counts the chat messages (not the chat list's previews, not the
// log panel) whose text contains text.
func pgCount(b *tab, text string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](fmt.Sprintf(
		`Array.from(document.querySelectorAll('[aria-label="Message header"]')).map(h => h.parentElement).filter(e => e.innerText.includes(%q)).length`, text)))
	if err != nil {
		b.t.Fatalf("count %q: %v", text, err)
	}
	return n
}

// playgroundBin returns HANDOFF_PLAYGROUND_BIN or installs the pinned
// Playground with npm into a temporary directory (its licence allows no
// vendoring).
func playgroundBin(ctx context.Context, t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("HANDOFF_PLAYGROUND_BIN"); bin != "" {
		return bin
	}
	dir := t.TempDir()
	out, err := exec.CommandContext(ctx, "npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", dir,
		"@microsoft/m365agentsplayground@"+playgroundVersion).CombinedOutput()
	if err != nil {
		t.Fatalf("npm install the Playground: %v\n%s", err, out)
	}
	return filepath.Join(dir, "node_modules", ".bin", "agentsplayground")
}

// pgWait waits until an element matching sel contains text. (The
// Playground's page has no window.setTimeout for chromedp's in-page poller,
// so the test polls from Go.)
func pgWait(b *tab, sel, text string) {
	b.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		if b.count(sel, text) > 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	page := b.text("body")
	b.screenshot("failed")
	b.t.Fatalf("%s: no %q containing %q\npage text:\n%s", b.name, sel, text, page)
}

// pgSay types text into the Playground's compose box and sends it.
func pgSay(b *tab, text string) {
	b.t.Helper()
	b.do("type "+text, chromedp.Click(chromedp.CSS(`[data-lexical-editor="true"]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-lexical-editor="true"]`), text),
		chromedp.Click(chromedp.CSS(`button[aria-label="Send Message"]`)))
}

// realClick clicks the element at xpath with the mouse, as a person does
// (Chromium's input pipeline, not a script's element.click()).
func realClick(b *tab, xpath string) {
	b.t.Helper()
	b.do("click "+xpath, chromedp.Click(chromedp.Search(xpath)))
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
