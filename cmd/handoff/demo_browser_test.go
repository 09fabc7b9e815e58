package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"gopkg.in/yaml.v3"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// Screenshot size of each page; docs/demo.png puts two side by side.
const shotW, shotH = 700, 800

// chromiumPath returns the browser the test drives: $HANDOFF_CHROMIUM, else
// Debian's /usr/bin/chromium. Without one the test is skipped, except on CI
// (CI=true), where a skipped browser test must not pass for a green one.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("HANDOFF_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("no Chromium at %s (apt-get install chromium, or set HANDOFF_CHROMIUM): %v", p, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// artifactDir is where screenshots go: $HANDOFF_ARTIFACTS/demo-browser, else
// a temporary directory of the test.
func artifactDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("HANDOFF_ARTIFACTS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, "demo-browser")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tab is one person's browser: the employee's and the agent's each run in
// their own headless Chromium, in its first tab. (With Chromium 156 and
// chromedp v0.22, a tab that chromedp opens next to the first one neither
// reports the load of its second navigation nor renders after an emulated
// viewport, so the test does not use one.)
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
	dir  string
	shot int
}

// newTab starts a browser of shotW×shotH.
func newTab(t *testing.T, name, chrome, dir string) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(shotW, shotH),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	// The first run starts the browser and binds it to its context, so it
	// gets ctx itself, without a timeout.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(shotW, shotH)); err != nil {
		t.Fatalf("start Chromium %s: %v", chrome, err)
	}
	return &tab{t: t, name: name, ctx: ctx, dir: dir}
}

// open shows url.
func (b *tab) open(url string) {
	b.t.Helper()
	b.do("open "+url, chromedp.Navigate(url))
}

func (b *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.screenshot("failed")
		b.t.Fatalf("%s: %s: %v", b.name, what, err)
	}
}

// waitText waits until an element matching sel contains text.
func (b *tab) waitText(sel, text string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.PollFunction[bool](
		`(sel, text) => Array.from(document.querySelectorAll(sel)).some(e => e.textContent.includes(text))`,
		chromedp.WithPollingArgs(sel, text), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		page := b.text("body")
		b.screenshot("failed")
		b.t.Fatalf("%s: no %q containing %q: %v\npage text:\n%s", b.name, sel, text, err, page)
	}
}

// count returns how many elements match sel and contain text.
func (b *tab) count(sel, text string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](fmt.Sprintf(
		`Array.from(document.querySelectorAll(%q)).filter(e => e.textContent.includes(%q)).length`, sel, text)))
	if err != nil {
		b.t.Fatalf("%s: count %s: %v", b.name, sel, err)
	}
	return n
}

func (b *tab) text(sel string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`(document.querySelector(%q) || {innerText: ""}).innerText`, sel)))
	return s
}

// clickText clicks the first element matching sel that contains text.
func (b *tab) clickText(sel, text string) {
	b.t.Helper()
	ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](fmt.Sprintf(
		`(() => { const e = Array.from(document.querySelectorAll(%q)).find(e => e.textContent.includes(%q)); if (!e) return false; e.click(); return true; })()`, sel, text)))
	if err != nil || !ok {
		b.screenshot("failed")
		b.t.Fatalf("%s: cannot click %s %q: %v", b.name, sel, text, err)
	}
}

// waitGone waits until no element matches sel.
func (b *tab) waitGone(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.PollFunction[bool](`(sel) => document.querySelector(sel) === null`,
		chromedp.WithPollingArgs(sel), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		b.screenshot("failed")
		b.t.Fatalf("%s: %s is still there: %v", b.name, sel, err)
	}
}

// say types text into the input sel and submits its form.
func (b *tab) say(input, submit, text string) {
	b.t.Helper()
	b.do("type "+text, chromedp.SendKeys(chromedp.CSS(input), text), chromedp.Click(chromedp.CSS(submit)))
}

// screenshot saves the viewport as name-NN-label.png and returns the PNG.
func (b *tab) screenshot(label string) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("%s: screenshot %s: %v", b.name, label, err)
		return nil
	}
	b.shot++
	p := filepath.Join(b.dir, fmt.Sprintf("%s-%02d-%s.png", b.name, b.shot, label))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("save screenshot: %v", err)
	}
	b.t.Logf("screenshot: %s", p)
	return png
}

// TestDemoInBrowser drives the employee page and the agent console, each in
// its own headless Chromium, through a whole handoff: a bot answer, the
// handoff, the agent accepting, two messages each way, the agent closing and
// the bot answering again; then a second employee is handed off after two
// fallbacks and leaves the queue with "End chat". It saves a screenshot of
// every step, and the two pages side by side (HANDOFF_UPDATE_DOCS=1 also
// writes docs/demo.png).
func TestDemoInBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	dir := artifactDir(t)
	start := time.Now()

	log := slog.New(slog.NewTextHandler(demoTestLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := startDemo(context.Background(), demoOptions{Addr: "127.0.0.1:0", BridgeAddr: "127.0.0.1:0",
		Delivery: "poll", PollWait: 10 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("stop the demo: %v", err)
		}
	})
	emp := newTab(t, "employee", chrome, dir)
	agent := newTab(t, "agent", chrome, dir)

	tx := bridge.DefaultTexts()
	const user = "Megan Bowen"

	// 1. The bot answers, with buttons; a click goes back as a card submit.
	emp.open(d.URL + "/employee?user=" + url.QueryEscape(user))
	emp.waitText(".msg-notice", tx.Welcome)
	emp.say("#text", "#send", "how do I reset my password?")
	emp.waitText(".msg-bot .bubble", "What happened?")
	emp.waitText(".msg-bot .card-btn", "I forgot my password")
	emp.clickText(".card-btn", "I forgot my password")
	emp.waitText(".msg-user .bubble", "I forgot my password")
	emp.waitText(".msg-bot .bubble", "passwordreset.example.com")
	emp.screenshot("bot-answer")

	// 2. The handoff: the status card waits, with the place in the queue
	// (chat_queue_entry.position) added to the same card.
	emp.say("#text", "#send", "talk to live agent")
	emp.waitText(".msg-notice .bubble", tx.Connecting)
	emp.waitText("#status", "Waiting for a live agent")
	emp.waitText(".msg-card .card-line", tx.CardWaiting)
	emp.waitText(".msg-card .card-line", fmt.Sprintf(tx.CardPosition, 1))
	emp.waitText(".msg-card .card-btn", tx.CardEndButton)
	emp.screenshot("queued")

	// 3. The agent sees the chat waiting with its context and accepts it.
	agent.open(d.URL + "/agent")
	agent.waitText("#queue .queued .requester", user)
	agent.waitText("#queue .queued .reason", "user_asked")
	agent.waitText("#queue .queued .context", "how do I reset my password?")
	agent.waitText("#queue .queued .context", "megan.bowen@contoso.example")
	agent.screenshot("queue")
	agent.do("accept", chromedp.Click(chromedp.CSS("#queue .queued .accept")))
	agent.waitText("#chats article.open .badge.state", "Work in Progress")
	agent.waitText("#chats article.open .dmsg-agent", snowtest.DefaultGreeting)
	if n := agent.count("#queue .queued", user); n != 0 {
		t.Errorf("the accepted chat is still in the queue (%d)", n)
	}
	emp.waitText(".msg-agent .bubble", snowtest.DefaultGreeting)
	emp.waitText(".msg-agent .who", "Beth Anglin")
	emp.waitText("#status", "Chatting with Beth Anglin")
	emp.waitText(".msg-card .card-line", fmt.Sprintf(tx.CardConnected, "Beth Anglin"))
	emp.waitText(".msg-card .card-btn", tx.CardEndButton)

	// 4. Two messages each way.
	const (
		u1 = "My VPN says my certificate has expired."
		a1 = "Thanks Megan, I'm renewing your VPN certificate now."
		u2 = "Great, do I need to restart my laptop?"
		a2 = "No restart needed: quit the VPN client and sign in again."
	)
	for _, step := range []struct{ user, agent string }{{u1, a1}, {u2, a2}} {
		emp.say("#text", "#send", step.user)
		agent.waitText("#chats article.open .dmsg-requester .bubble", step.user)
		agent.say("#chats article.open .reply-text", "#chats article.open form.reply button", step.agent)
		emp.waitText(".msg-agent .bubble", step.agent)
	}
	agent.waitText("#chats article.open .dmsg-agent .bubble", a2)
	// The agent labels the case for the bot team; the employee never sees it.
	const topic = "VPN certificate renewal"
	agent.say("#chats article.open .reply-text", "#chats article.open form.reply button", "#topic "+topic)
	agent.waitText("#chats article.open .bubble", "Recorded for the bot team: topic")
	// Show the context the bot gave the agent.
	agent.do("open the context", chromedp.Click(chromedp.CSS("#chats article.open .context-box summary")))
	agent.waitText("#chats article.open details[open] .context", "Reason for handoff: user_asked")
	empPNG := emp.screenshot("live")
	agentPNG := agent.screenshot("live")
	sideBySide(t, dir, empPNG, agentPNG)
	for _, m := range []string{u1, u2} {
		if n := agent.count(".dmsg-requester .bubble", m); n != 1 {
			t.Errorf("the agent saw %q %d times, want once", m, n)
		}
	}
	for _, m := range []string{a1, a2} {
		if n := emp.count(".msg-agent .bubble", m); n != 1 {
			t.Errorf("the employee saw %q %d times, want once", m, n)
		}
	}
	if n := emp.count(".bubble", "#topic") + emp.count(".bubble", "Recorded for the bot team"); n != 0 {
		t.Errorf("the employee saw the agent's label or its acknowledgment (%d)", n)
	}

	// 5. The agent closes; the employee is told and is back with the bot.
	agent.do("close", chromedp.Click(chromedp.CSS("#chats article.open .close-chat")))
	agent.waitText("#chats article.closed .dmsg-system", "Beth Anglin has closed the support session")
	agent.waitText("#chats article.closed .badge.state", "Closed Complete")
	agent.screenshot("closed")
	emp.waitText(".msg-notice .bubble", tx.AgentClosed)
	emp.waitText(".msg-notice .bubble", tx.BotBack)
	emp.waitText("#status", "Virtual assistant")
	emp.waitText(".msg-card .card-line", tx.CardEnded)
	if n := emp.count(".msg-card .card-btn", tx.CardEndButton); n != 0 {
		t.Errorf("the ended card still has its End chat button (%d)", n)
	}
	if n := emp.count(".msg-card .card-title", tx.CardTitle); n != 1 {
		t.Errorf("%d status cards, want one updated in place", n)
	}
	// One tap on the rating card rates the chat (a card submit, never text:
	// Rasa never sees it); the card turns into the thank-you in place, and
	// the inbox below shows the rating 4/5.
	emp.waitText(".card-btn", "4 ★")
	emp.clickText(".card-btn", "4 ★")
	emp.waitText(".msg-card .card-line", fmt.Sprintf(tx.CSATThanks, 4))
	if n := emp.count(".msg-card .card-btn", "★"); n != 0 {
		t.Errorf("the rating card still has %d rating buttons after the tap", n)
	}
	emp.screenshot("rated")

	// 6. The bot answers again.
	emp.say("#text", "#send", "what are your opening hours?")
	emp.waitText(".msg-bot .bubble", "staffed Monday to Friday")
	emp.screenshot("bot-again")

	// 7. A second employee: two fallbacks hand off; End chat leaves the queue.
	const other = "Alex Wilber"
	emp.open(d.URL + "/employee?user=" + url.QueryEscape(other))
	emp.waitText(".msg-notice", tx.Welcome)
	emp.say("#text", "#send", "my flux capacitor is humming")
	emp.waitText(".msg-bot .bubble", "Sorry, I didn't understand that")
	emp.say("#text", "#send", "the blinkenlights are all purple")
	emp.waitText(".msg-notice .bubble", tx.Connecting)
	agent.waitText("#queue .queued .requester", other)
	agent.waitText("#queue .queued .reason", "fallback")
	// End chat on the status card (a card submit, as in Teams).
	emp.waitText(".msg-card .card-line", tx.CardWaiting)
	emp.clickText(".msg-card .card-btn", tx.CardEndButton)
	emp.waitText(".msg-user .bubble", tx.CardEndButton)
	emp.waitText(".msg-notice .bubble", tx.UserEnded)
	emp.waitText(".msg-card .card-line", tx.CardEnded)
	if n := emp.count(".msg-card .card-btn", tx.CardEndButton); n != 0 {
		t.Errorf("the ended card still has its End chat button (%d)", n)
	}
	emp.waitText("#status", "Virtual assistant")
	emp.screenshot("ended-by-user")
	if _, err := chromedp.Run(agent.ctx, chromedp.Poll[bool](`document.querySelectorAll("#queue .queued").length === 0`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		agent.screenshot("failed")
		t.Fatalf("the chat Alex Wilber ended is still waiting in the queue: %v", err)
	}

	// 8. The review page lists both handoffs and links the HTML report.
	agent.open(d.URL + "/review")
	agent.waitText("#handoffs tbody", "user_asked")
	agent.waitText("#handoffs tbody", "agent_closed")
	agent.waitText("#handoffs tbody", "fallback")
	agent.waitText("#handoffs tbody", "user_ended")
	agent.screenshot("review")
	agent.open(d.URL + "/review/report")
	agent.waitText("body", "user_asked")
	agent.screenshot("report")

	// 9. The review page links to the inbox with the two cases: filter,
	// annotate two utterances, mark the handoff reviewed, download the
	// training data.
	reviewInbox(t, agent, d.URL+"/review", topic, []string{u1, strings.TrimPrefix(a1, "Thanks Megan, "), u2, a2})

	t.Logf("browser flow took %s; screenshots in %s", time.Since(start).Round(time.Millisecond), dir)
}

// sideBySide saves the two pages next to each other, as the README shows
// them; HANDOFF_UPDATE_DOCS=1 also writes docs/demo.png.
func sideBySide(t *testing.T, dir string, left, right []byte) {
	t.Helper()
	if left == nil || right == nil {
		t.Error("no screenshots to put side by side")
		return
	}
	l, err := png.Decode(bytes.NewReader(left))
	if err != nil {
		t.Fatalf("decode screenshot: %v", err)
	}
	r, err := png.Decode(bytes.NewReader(right))
	if err != nil {
		t.Fatalf("decode screenshot: %v", err)
	}
	const gap = 8
	lb, rb := l.Bounds(), r.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, lb.Dx()+gap+rb.Dx(), max(lb.Dy(), rb.Dy())))
	draw.Draw(out, out.Bounds(), &image.Uniform{color.RGBA{0x60, 0x60, 0x60, 0xff}}, image.Point{}, draw.Src)
	draw.Draw(out, image.Rect(0, 0, lb.Dx(), lb.Dy()), l, lb.Min, draw.Src)
	draw.Draw(out, image.Rect(lb.Dx()+gap, 0, lb.Dx()+gap+rb.Dx(), rb.Dy()), r, rb.Min, draw.Src)
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&b, out); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "demo-side-by-side.png")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	if os.Getenv("HANDOFF_UPDATE_DOCS") == "1" {
		doc := filepath.Join("..", "..", "docs", "demo.png")
		if err := os.MkdirAll(filepath.Dir(doc), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(doc, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", doc)
	}
}

// demoTestLog writes the demo's log lines to the test log.
type demoTestLog struct{ t *testing.T }

func (w demoTestLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitLoaded waits, across the navigation an action started, until an
// element matching sel contains text on the new page.
func (b *tab) waitLoaded(sel, text string) {
	b.t.Helper()
	b.waitPage(`document.readyState === "complete" && Array.from(document.querySelectorAll(`+strconv.Quote(sel)+`)).some(e => e.textContent.includes(`+strconv.Quote(text)+`))`, sel, text)
}

// waitPage waits, across navigations, until the JavaScript condition holds.
func (b *tab) waitPage(cond, sel, text string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond)))
		cancel()
		if err == nil {
			return
		}
		// The page the poll ran in went away (navigated, its execution context
		// replaced): poll the new one until the deadline.
		if time.Now().After(deadline) {
			b.screenshot("failed")
			b.t.Fatalf("%s: no %q containing %q after navigating: %v\npage text:\n%s", b.name, sel, text, err, b.text("body"))
		}
	}
}

// attr returns the attribute of the first element matching sel.
func (b *tab) attr(sel, name string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`(document.querySelector(%q) || {getAttribute: () => ""}).getAttribute(%q) || ""`, sel, name)))
	if err != nil {
		b.t.Fatalf("%s: attribute %s of %s: %v", b.name, name, sel, err)
	}
	return v
}

// download fetches the link sel points at from the page, with the page's
// cookies (as clicking it would), and returns the status and body.
func (b *tab) download(sel string) (int, string) {
	b.t.Helper()
	type result struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	r, err := chromedp.Run(ctx, chromedp.Evaluate[result](fmt.Sprintf(
		`fetch(document.querySelector(%q).href, {credentials: "same-origin"}).then(async r => ({status: r.status, body: await r.text()}))`, sel),
		chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: download %s: %v", b.name, sel, err)
	}
	return r.Status, r.Body
}

// reviewInbox follows the demo review page's link to the review inbox and
// works through it as a bot team member would. human are texts of the human
// part, which must never reach the training data.
func reviewInbox(t *testing.T, b *tab, reviewPage, topic string, human []string) {
	t.Helper()
	b.open(reviewPage)
	b.waitLoaded("#inbox-link", "review inbox")
	inbox := b.attr("#inbox-link", "href")
	token := b.text("#inbox-token")
	if inbox == "" || token == "" {
		t.Fatalf("the review page links no inbox (%q) or gives no token (%q)", inbox, token)
	}
	b.open(inbox)
	b.waitLoaded("#signin", "Sign in")
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.SendKeys(chromedp.CSS("#name"), "Rita Reviewer"),
		chromedp.Click(chromedp.CSS("#signin")))
	b.waitLoaded("#cases", "fallback")
	if n := b.count("#cases tr.case", ""); n != 2 {
		t.Errorf("the inbox lists %d handoffs, want the 2 of the demo", n)
	}
	b.waitText("#cases tr.case", topic)
	b.screenshot("inbox")

	// Filter: the handoff the employee asked for, not yet reviewed.
	b.do("filter", chromedp.SendKeys(chromedp.CSS(`input[name="reason"]`), "user_asked"),
		chromedp.SetValue(chromedp.CSS("#f-reviewed"), "no"), chromedp.Click(chromedp.CSS("#apply")))
	b.waitPage(`document.readyState === "complete" && location.search.includes("reason=user_asked") && location.search.includes("reviewed=no")`,
		"the filtered list", "reason=user_asked&reviewed=no")
	if n := b.count("#cases tr.case", "user_asked"); n != 1 || b.count("#cases tr.case", "") != 1 {
		t.Errorf("filtering by reason=user_asked lists %d handoffs, want 1", b.count("#cases tr.case", ""))
	}
	b.screenshot("inbox-filtered")

	// The handoff: bot part and human part apart.
	b.do("open the handoff", chromedp.Click(chromedp.CSS("#cases tr.case a")))
	b.waitLoaded("#bot-part", "how do I reset my password?")
	b.waitText("#verdict", topic)
	b.waitText("#csat", "4/5")
	botPart := b.text("#bot-part")
	for _, h := range human {
		b.waitText("#human-part", h)
		if strings.Contains(botPart, h) {
			t.Errorf("the bot part shows %q from the human part", h)
		}
	}
	// Annotate two user utterances, name the action, mark it reviewed.
	ids, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('input[name^="intent_"]')).map(e => e.id)`))
	if err != nil || len(ids) < 2 {
		t.Fatalf("the handoff has %d utterances to annotate (%v), want at least 2", len(ids), err)
	}
	utterances, _ := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#bot-part .turn.user')).map(e => e.querySelector('.utt').textContent)`))
	b.do("annotate", chromedp.SendKeys(chromedp.CSS("#"+ids[0]), "password_reset"), chromedp.SendKeys(chromedp.CSS("#"+ids[1]), "forgot_password"),
		chromedp.SendKeys(chromedp.CSS("#expected_action"), "utter_password_reset_link"),
		chromedp.SendKeys(chromedp.CSS("#note"), "the bot had the answer; the handoff was not needed"),
		chromedp.Click(chromedp.CSS("#reviewed")))
	b.screenshot("annotate")
	b.do("save", chromedp.Click(chromedp.CSS("#save")))
	b.waitLoaded("#saved", "Saved")
	b.waitText("#audit", "Rita Reviewer")
	b.waitText("#audit", "reviewed")
	b.screenshot("annotated")

	// The reviewed filter now lists it; the downloads carry the annotations.
	b.open(inbox + "?reviewed=yes")
	b.waitLoaded("#cases tr.case", "reviewed")
	code, nlu := b.download("#dl-nlu")
	if code != 200 {
		t.Fatalf("NLU download: %d %s", code, nlu)
	}
	code, stories := b.download("#dl-tests")
	if code != 200 {
		t.Fatalf("test stories download: %d %s", code, stories)
	}
	t.Logf("nlu.yml:\n%s\ntest_handoffs.yml:\n%s", nlu, stories)
	var nf struct {
		Version string `yaml:"version"`
		NLU     []struct {
			Intent   string `yaml:"intent"`
			Examples string `yaml:"examples"`
		} `yaml:"nlu"`
	}
	if err := yaml.Unmarshal([]byte(nlu), &nf); err != nil || nf.Version != "3.1" || len(nf.NLU) != 2 {
		t.Fatalf("nlu.yml: %v, version %q, %d intents; want 2", err, nf.Version, len(nf.NLU))
	}
	got := map[string]string{}
	for _, in := range nf.NLU {
		got[in.Intent] = in.Examples
	}
	for i, intent := range []string{"password_reset", "forgot_password"} {
		if len(utterances) <= i || !strings.Contains(got[intent], strings.TrimSpace(utterances[i])) {
			t.Errorf("nlu.yml files %q under %q? examples %q", utterances, intent, got[intent])
		}
	}
	var sf struct {
		Version string `yaml:"version"`
		Stories []struct {
			Story string              `yaml:"story"`
			Steps []map[string]string `yaml:"steps"`
		} `yaml:"stories"`
	}
	if err := yaml.Unmarshal([]byte(stories), &sf); err != nil || sf.Version != "3.1" || len(sf.Stories) != 1 {
		t.Fatalf("test_handoffs.yml: %v, version %q, %d stories; want 1", err, sf.Version, len(sf.Stories))
	}
	steps := sf.Stories[0].Steps
	if steps[0]["intent"] != "password_reset" || steps[len(steps)-1]["action"] != "utter_password_reset_link" {
		t.Errorf("story steps %v: want the annotated intent first and the reviewer's action last", steps)
	}
	for _, h := range human {
		if strings.Contains(nlu, h) || strings.Contains(stories, h) {
			t.Errorf("the human turn %q is in the training data", h)
		}
	}
}
