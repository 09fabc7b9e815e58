package playground

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams"
)

// Version is the pinned Playground release: its HTTP and WebSocket routes
// are internal and may change between versions.
const Version = "0.2.28"

// TestPlayground runs an echo bot made of teams.Handler (anonymous dev mode,
// loopback only) and teams.Client (anonymous, loopback service URLs only)
// against the Microsoft 365 Agents Playground: the Playground posts a user
// message to the bot, the bot replies through the Playground's mock
// connector, and the reply must appear on the Playground's conversation
// stream. Nothing leaves the machine. Set HANDOFF_PLAYGROUND=1 to run it;
// HANDOFF_PLAYGROUND_BIN may name an installed agentsplayground binary,
// otherwise npm installs the pinned version into a temporary directory.
func TestPlayground(t *testing.T) {
	if os.Getenv("HANDOFF_PLAYGROUND") != "1" {
		t.Skip("set HANDOFF_PLAYGROUND=1 to run against the Microsoft 365 Agents Playground (needs node and npm)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	bin := playgroundBinary(ctx, t)

	// The echo bot.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client, err := teams.NewClient(teams.ClientConfig{AnonymousDev: true, MaxRetries: 2}, log)
	if err != nil {
		t.Fatal(err)
	}
	bot := &echoBot{client: client, log: log, replies: make(chan reply, 10)}
	handler, err := teams.NewHandler(teams.HandlerConfig{AnonymousDev: true, ListenAddr: ln.Addr().String()}, bot, log)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/messages", handler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	botURL := "http://" + ln.Addr().String() + "/api/messages"

	// The Playground.
	port := freePort(t)
	const convID = "handoff-playground-personal"
	logFile := filepath.Join(t.TempDir(), "playground.log")
	out, err := os.Create(logFile + ".out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(bin, "-e", botURL, "-c", "msteams", "-p", fmt.Sprint(port),
		"--disable-telemetry", "--conversation-id", convID)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "TEAMSAPPTESTER_BROWSER=none", "M365_AGENTS_PLAYGROUND_LOGFILE="+logFile)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			for _, f := range []string{logFile + ".out", logFile} {
				if b, err := os.ReadFile(f); err == nil {
					t.Logf("%s:\n%s", filepath.Base(f), tail(b, 4000))
				}
			}
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(ctx, t, base+"/_debug/ping")

	ws, err := dialWebSocket(ctx, fmt.Sprintf("127.0.0.1:%d", port), "/_ws_conversation/v1/conversations/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	// The user writes; the Playground posts the activity to the bot.
	const text = "hello from the playground"
	body := fmt.Sprintf(`{"from":{"id":"user-id-0"},"text":%q,"textFormat":"plain"}`, text)
	resp, err := http.Post(base+"/_conversation/v1/conversations/"+url.PathEscape(convID)+"/messages", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("posting the user message: HTTP %d", resp.StatusCode)
	}

	// The bot received a Teams-shaped personal activity and replied.
	var r reply
	select {
	case r = <-bot.replies:
	case <-ctx.Done():
		t.Fatal("the bot got no message from the Playground")
	}
	if r.err != nil {
		t.Fatalf("the reply was refused: %v", r.err)
	}
	in := r.in
	if in.Text != text || in.Ref.ChannelID != "msteams" || !in.Personal() || in.Ref.UserID == "" || in.Ref.BotID == "" {
		t.Fatalf("activity from the Playground = %+v", in)
	}
	if u, err := url.Parse(in.Ref.ServiceURL); err != nil || !teams.LoopbackOnly(u.Host) || !strings.HasSuffix(u.Path, "/_connector") {
		t.Fatalf("serviceUrl = %q, want the Playground's local mock connector", in.Ref.ServiceURL)
	}
	if r.id == "" {
		t.Error("the mock connector returned no activity id")
	}
	t.Logf("activity: kind=%s conversation=%s serviceUrl=%s user=%s tenant=%s; reply id %s", in.Kind, in.Ref.Conversation, in.Ref.ServiceURL, in.Ref.UserID, in.Ref.TenantID, r.id)

	// The reply and its card show up in the Playground's conversation.
	card := readStream(t, ws, "echo: "+text)

	// Pressing the card's button: the Playground posts the action's data
	// to the bot, which must read the button's payload as the user's text.
	var sent struct {
		MessageID   string `json:"messageId"`
		Attachments []struct {
			ContentType string `json:"contentType"`
			Content     struct {
				Actions []struct {
					Title string         `json:"title"`
					Data  map[string]any `json:"data"`
				} `json:"actions"`
			} `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(card, &sent); err != nil || len(sent.Attachments) != 1 || len(sent.Attachments[0].Content.Actions) != 1 {
		t.Fatalf("card message = %s (%v)", card, err)
	}
	submit, _ := json.Marshal(map[string]any{
		"conversation": map[string]any{"id": convID},
		"replyToId":    sent.MessageID,
		"value":        sent.Attachments[0].Content.Actions[0].Data,
		"from":         map[string]any{"id": "user-id-0"},
	})
	resp, err = http.Post(base+"/_conversation/v1/submit", "application/json", bytes.NewReader(submit))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("submitting the card: HTTP %d", resp.StatusCode)
	}
	select {
	case r = <-bot.replies:
	case <-ctx.Done():
		t.Fatal("the bot got no card submit from the Playground")
	}
	if r.err != nil || r.in.Text != "/handoff" {
		t.Fatalf("card submit reached the bot as %+v (reply error %v), want text /handoff", r.in, r.err)
	}
	readStream(t, ws, "echo: /handoff")
}

// readStream reads the conversation stream until a createMessage whose text
// is want, and returns the message that follows it (the card).
func readStream(t *testing.T, ws *wsConn, want string) json.RawMessage {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	found := false
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the conversation stream", want)
		}
		_ = ws.SetReadDeadline(deadline)
		msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("reading the conversation stream: %v", err)
		}
		var ev struct {
			Action  string          `json:"action"`
			Message json.RawMessage `json:"message"`
		}
		if json.Unmarshal(msg, &ev) != nil {
			continue
		}
		t.Logf("stream: %s %s", ev.Action, tail(ev.Message, 400))
		if ev.Action != "createMessage" {
			continue
		}
		if found {
			return ev.Message
		}
		var m struct {
			Text string `json:"text"`
		}
		found = json.Unmarshal(ev.Message, &m) == nil && m.Text == want
	}
}

type reply struct {
	in  bridge.UserActivity
	id  string
	err error
}

// echoBot is the Inbox of the test bot: it answers every personal message
// with "echo: <text>" and a one-button card, asynchronously as the real
// relay does.
type echoBot struct {
	client  *teams.Client
	log     *slog.Logger
	replies chan reply
	wg      sync.WaitGroup
}

func (b *echoBot) UserActivity(ctx context.Context, a bridge.UserActivity) error {
	b.log.Info("playground test: activity", "kind", string(a.Kind), "conversation_id", string(a.Ref.Conversation))
	if a.Kind != bridge.ActivityMessage || !a.Personal() {
		return nil
	}
	b.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = b.client.Typing(ctx, a.Ref)
		id, err := b.client.Send(ctx, a.Ref, bridge.UserMessage{
			Text:    "echo: " + a.Text,
			Buttons: []bridge.Button{{Title: "Talk to a person", Payload: "/handoff"}},
		})
		b.replies <- reply{in: a, id: id, err: err}
	})
	return nil
}

// playgroundBinary returns HANDOFF_PLAYGROUND_BIN or installs the pinned
// release with npm into a temporary directory.
func playgroundBinary(ctx context.Context, t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("HANDOFF_PLAYGROUND_BIN"); bin != "" {
		return bin
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatal("npm not found: install Node.js 20+ or set HANDOFF_PLAYGROUND_BIN")
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", dir,
		"@microsoft/m365agentsplayground@"+Version)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install: %v\n%s", err, out)
	}
	return filepath.Join(dir, "node_modules", ".bin", "agentsplayground")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitFor(ctx context.Context, t *testing.T, u string) {
	t.Helper()
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not come up", u)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// wsConn is a minimal WebSocket client (RFC 6455), enough to read the
// Playground's text frames without a dependency.
type wsConn struct {
	net.Conn
	r *bufio.Reader
}

func dialWebSocket(ctx context.Context, hostport, path string) (*wsConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		path, hostport, base64.StdEncoding.EncodeToString(key))
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("websocket handshake: HTTP %d", resp.StatusCode)
	}
	return &wsConn{Conn: c, r: r}, nil
}

// ReadMessage returns the next text or binary message, answering pings.
func (c *wsConn) ReadMessage() ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			return nil, err
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0f
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(c.r, b[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(c.r, b[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if n > 16<<20 {
			return nil, errors.New("websocket frame too large")
		}
		var mask [4]byte
		if h[1]&0x80 != 0 {
			if _, err := io.ReadFull(c.r, mask[:]); err != nil {
				return nil, err
			}
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(c.r, payload); err != nil {
			return nil, err
		}
		if h[1]&0x80 != 0 {
			for i := range payload {
				payload[i] ^= mask[i%4]
			}
		}
		switch op {
		case 0x8:
			return nil, io.EOF
		case 0x9:
			c.writeFrame(0xA, payload)
			continue
		case 0xA:
			continue
		}
		msg = append(msg, payload...)
		if fin {
			return msg, nil
		}
	}
}

// writeFrame sends a masked control frame (payload < 126 bytes).
func (c *wsConn) writeFrame(op byte, payload []byte) {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	frame := []byte{0x80 | op, 0x80 | byte(len(payload))}
	frame = append(frame, mask[:]...)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	_, _ = c.Write(frame)
}
