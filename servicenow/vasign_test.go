package servicenow_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// needNode returns the node binary; without it the test fails under CI=true
// and is skipped otherwise.
func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node is required with CI=true: %v", err)
		}
		t.Skip("node not installed")
	}
	return node
}

// bodyTap records the body and signature of every VA request on its way to
// the fake.
type bodyTap struct {
	next http.Handler
	mu   sync.Mutex
	reqs []tapped
}

type tapped struct {
	body []byte
	sig  string
}

func (b *bodyTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == servicenow.PathVA {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.reqs = append(b.reqs, tapped{body: body, sig: r.Header.Get(servicenow.HeaderVASignature)})
		b.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	b.next.ServeHTTP(w, r)
}

// hostile holds every character Go's JSON encoder would escape by default
// or that JSON.stringify writes differently.
const hostile = "Café 😀 <b>&amp; \u2028line\u2029 \"quoted\" \\u2028 tab\t"

// TestVASignatureDocumentedRecipe: the x-b2b-signature of every request
// equals ServiceNow's documented recipe,
// HmacSHA1(JSON.stringify(JSON.parse(body))), computed by Node.js, for texts
// with "<", ">", "&", U+2028 and non-ASCII; and the fake instance (which
// applies the same recipe) processes the requests instead of dropping them.
func TestVASignatureDocumentedRecipe(t *testing.T) {
	in := newFake(t, snowtest.Options{})
	in.EnableVA(snowtest.VAOptions{Secret: vaSecret})
	tap := &bodyTap{next: in.Handler()}
	srv := httptest.NewServer(tap)
	t.Cleanup(srv.Close)
	v := newVA(t, in, func(c *servicenow.VAConfig) { c.InstanceURL, c.Token, c.Secret = srv.URL, "", vaSecret })
	ctx := context.Background()
	h := vaHandoff
	h.UserName, h.Reason = "Zoë <Admin> & co", hostile
	h.Transcript = []bridge.Turn{{Role: "user", Text: hostile, At: t0}}
	chat, err := v.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Send(ctx, chat, bridge.DeskMessage{Key: "k1", Text: hostile}); err != nil {
		t.Fatal(err)
	}
	if log := in.VALog(); len(log) != 0 {
		t.Fatalf("the instance dropped signed requests: %q", log)
	}
	c, _ := findVA(t, in, chat.ID)
	if msgs := in.Messages(c.Group); !strings.Contains(msgs[len(msgs)-1].Text, "Café 😀 <b>&amp;") {
		t.Errorf("text did not arrive intact: %q", msgs[len(msgs)-1].Text)
	}

	node := needNode(t)
	const script = `const c=require("crypto");let b="";process.stdin.setEncoding("utf8");` +
		`process.stdin.on("data",d=>b+=d).on("end",()=>process.stdout.write(` +
		`c.createHmac("sha1",process.argv[1]).update(JSON.stringify(JSON.parse(b)),"utf8").digest("hex")))`
	tap.mu.Lock()
	reqs := append([]tapped(nil), tap.reqs...)
	tap.mu.Unlock()
	if len(reqs) < 3 {
		t.Fatalf("%d VA requests tapped, want AGENT, the message and VIEWING", len(reqs))
	}
	for i, r := range reqs {
		cmd := exec.Command(node, "-e", script, vaSecret)
		cmd.Stdin = bytes.NewReader(r.body)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node: %v", err)
		}
		if string(out) != r.sig {
			t.Errorf("request %d: x-b2b-signature %s, documented recipe gives %s\nbody %s", i, r.sig, out, r.body)
		}
	}
}
