package review

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
)

// inboxStore opens a migrated SQLite store holding three handoffs: h1 and h2
// with the bot part and a human part each, h3 with a low confidence and an
// agent topic.
func inboxStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "inbox.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	at := weekFrom.Add(24 * time.Hour)
	recs := []bridge.ReviewRecord{
		{SessionID: "h1", StartedAt: at, Reason: "fallback", Intent: "password_reset", Confidence: 0.41,
			BotTurns: []bridge.Turn{
				{Role: "user", Text: "hi", Intent: "greet", Confidence: 0.99},
				{Role: "bot", Text: "Hi! How can I help?"},
				{Role: "user", Text: "my MFA broke after I got a new phone, mail me at a.b@contoso.com", Intent: "password_reset", Confidence: 0.41},
				{Role: "bot", Text: "Sorry, I did not get that."},
			},
			HumanTurns:  []bridge.Turn{{Role: "user", Text: "HUMAN-SECRET my badge number is 4711"}, {Role: "agent", Author: "Beth", Text: "HUMAN-SECRET re-register the authenticator"}},
			CloseReason: bridge.ReasonAgentClosed, EndedAt: at.Add(10 * time.Minute), CSAT: &bridge.CSAT{Rating: 2}},
		{SessionID: "h2", StartedAt: at.Add(time.Hour), Reason: "user_asked", Intent: "talk_to_human", Confidence: 0.95,
			BotTurns:   []bridge.Turn{{Role: "user", Text: "printer on floor 3 is jammed", Intent: "printer_issue", Confidence: 0.7}},
			HumanTurns: []bridge.Turn{{Role: "agent", Text: "HUMAN-SECRET I sent a technician"}}},
		{SessionID: "h3", StartedAt: at.Add(2 * time.Hour), Reason: "fallback", Intent: "nlu_fallback", Confidence: 0.2,
			BotTurns: []bridge.Turn{{Role: "user", Text: "vpn keeps dropping", Intent: "nlu_fallback", Confidence: 0.2}},
			Verdict:  &bridge.Verdict{Topic: "VPN drops"}},
	}
	err = s.Update(t.Context(), func(tx bridge.Tx) error {
		for _, r := range recs {
			if err := tx.PutReview(t.Context(), r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const inboxToken = "inbox-token"

type inboxClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newInboxClient(t *testing.T, s *store.Store) inboxClient {
	t.Helper()
	in, err := NewInbox(s, InboxConfig{Token: inboxToken, Exporter: testExporter(t, ExportConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range in.Patterns() {
		mux.Handle(p, in)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return inboxClient{t: t, base: srv.URL, c: &http.Client{Jar: jar}}
}

func (c inboxClient) do(method, path string, form url.Values, hdr map[string]string) (int, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, c.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestInboxSignIn(t *testing.T) {
	c := newInboxClient(t, inboxStore(t))
	if code, body := c.do("GET", "/review", nil, nil); code != 401 || !strings.Contains(body, `name="token"`) {
		t.Fatalf("signed out: %d, want 401 and the sign-in form", code)
	}
	if code, _ := c.do("POST", "/review/login", url.Values{"token": {"wrong"}, "name": {"Rita"}}, nil); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	if code, _ := c.do("POST", "/review/login", url.Values{"token": {inboxToken}, "name": {""}}, nil); code != 400 {
		t.Fatalf("no name: %d", code)
	}
	if code, _ := c.do("POST", "/review/login", url.Values{"token": {inboxToken}, "name": {"Rita"}}, map[string]string{"Origin": "https://evil.example"}); code != 403 {
		t.Fatalf("cross-site sign-in: %d", code)
	}
	if code, body := c.do("POST", "/review/login", url.Values{"token": {inboxToken}, "name": {"Rita"}}, nil); code != 200 || !strings.Contains(body, "signed in as Rita") {
		t.Fatalf("sign-in: %d %s", code, body)
	}
	// A forged cookie (another name, the old MAC) is refused.
	u, _ := url.Parse(c.base + "/review")
	ck := c.c.Jar.Cookies(u)[0]
	_, mac, _ := strings.Cut(ck.Value, ".")
	c.c.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: "TWFsbG9yeQ." + mac, Path: "/review"}})
	if code, _ := c.do("GET", "/review", nil, nil); code != 401 {
		t.Fatalf("forged cookie: %d", code)
	}
	// Scripts use the bearer token.
	anon := inboxClient{t: t, base: c.base, c: http.DefaultClient}
	if code, _ := anon.do("GET", "/review/training/nlu.yml", nil, nil); code != 401 {
		t.Fatalf("download without sign-in: %d", code)
	}
	if code, _ := anon.do("GET", "/review/training/nlu.yml", nil, map[string]string{"Authorization": "Bearer " + inboxToken}); code != 200 {
		t.Fatalf("download with the bearer token: %d", code)
	}
}

func signIn(c inboxClient, name string) {
	c.t.Helper()
	if code, _ := c.do("POST", "/review/login", url.Values{"token": {inboxToken}, "name": {name}}, nil); code != 200 {
		c.t.Fatalf("sign-in: %d", code)
	}
}

func TestInboxFilters(t *testing.T) {
	c := newInboxClient(t, inboxStore(t))
	signIn(c, "Rita")
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"h3", "h2", "h1"}},
		{"reason=fallback", []string{"h3", "h1"}},
		{"intent=password_reset", []string{"h1"}},
		{"below=0.5", []string{"h3", "h1"}},
		{"topic=vpn+drops", []string{"h3"}},
		{"csat=3", []string{"h1"}},
		{"reviewed=no", []string{"h3", "h2", "h1"}},
		{"reviewed=yes", nil},
		{"from=" + weekFrom.Format(dateLayout) + "&to=" + weekFrom.Format(dateLayout), nil},
		{"from=" + weekFrom.AddDate(0, 0, 1).Format(dateLayout), []string{"h3", "h2", "h1"}},
	} {
		code, body := c.do("GET", "/review?"+tc.query, nil, nil)
		if code != 200 {
			t.Fatalf("%s: %d", tc.query, code)
		}
		var got []string
		for _, part := range strings.Split(body, `data-id="`)[1:] {
			got = append(got, part[:strings.IndexByte(part, '"')])
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("filter %q lists %v, want %v", tc.query, got, tc.want)
		}
	}
	for _, bad := range []string{"below=2", "below=NaN", "csat=9", "reviewed=maybe", "from=yesterday", "page=0", "from=2026-11-12&to=2026-11-10"} {
		if code, body := c.do("GET", "/review?"+bad, nil, nil); code != 400 || !strings.Contains(body, `id="filter-error"`) {
			t.Errorf("filter %q: %d, want 400 naming the problem", bad, code)
		}
	}
	// The list shows redacted utterances only.
	if _, body := c.do("GET", "/review", nil, nil); strings.Contains(body, "a.b@contoso.com") {
		t.Error("the list shows an unredacted e-mail address")
	}
}

func TestInboxAnnotateAndAudit(t *testing.T) {
	s := inboxStore(t)
	c := newInboxClient(t, s)
	signIn(c, "Rita")
	code, body := c.do("GET", "/review/h/h1", nil, nil)
	if code != 200 {
		t.Fatalf("detail: %d", code)
	}
	bot := body[strings.Index(body, `id="bot-part"`):strings.Index(body, `id="human-part"`)]
	human := body[strings.Index(body, `id="human-part"`):]
	if strings.Contains(bot, "HUMAN-SECRET") || !strings.Contains(human, "HUMAN-SECRET re-register") {
		t.Error("the detail page mixes the human part into the bot part")
	}
	if strings.Contains(body, "a.b@contoso.com") {
		t.Error("the detail page shows an unredacted e-mail address")
	}

	// Bad input: 400, nothing stored.
	for _, form := range []url.Values{
		{"intent_2": {"mfa reset!"}},
		{"intent_1": {"mfa_reset"}}, // a bot turn
		{"intent_9": {"mfa_reset"}},
		{"expected_action": {"utter mfa"}},
		{"note": {strings.Repeat("x", maxNoteRunes+1)}},
	} {
		if code, body := c.do("POST", "/review/h/h1", form, nil); code != 400 || !strings.Contains(body, "Nothing was saved") {
			t.Errorf("form %v: %d, want 400", form, code)
		}
	}
	if code, _ := c.do("POST", "/review/h/h1", url.Values{"intent_2": {"mfa_reset"}}, map[string]string{"Origin": "https://evil.example"}); code != 403 {
		t.Errorf("cross-site annotation: %d, want 403", code)
	}
	if code, _ := c.do("POST", "/review/h/nope", url.Values{"reviewed": {"on"}}, nil); code != 404 {
		t.Errorf("unknown handoff: %d", code)
	}
	if a, _ := s.ReviewAudit(t.Context(), "h1"); len(a) != 0 {
		t.Fatalf("refused input was audit-logged: %+v", a)
	}

	form := url.Values{"intent_0": {"greet"}, "intent_2": {"mfa_reset"}, "expected_action": {"utter_mfa_reset"},
		"note": {"new phone"}, "reviewed": {"on"}}
	if code, body := c.do("POST", "/review/h/h1", form, nil); code != 200 || !strings.Contains(body, `id="saved"`) {
		t.Fatalf("annotate: %d", code)
	}
	got, err := s.ReviewCase(t.Context(), "h1")
	if err != nil {
		t.Fatal(err)
	}
	a := got.Annotation
	if !a.Reviewed || a.Intents[0] != "greet" || a.Intents[2] != "mfa_reset" || a.ExpectedAction != "utter_mfa_reset" || a.Note != "new phone" || a.UpdatedBy != "Rita" {
		t.Fatalf("annotation = %+v", a)
	}
	audit, _ := s.ReviewAudit(t.Context(), "h1")
	actions := []string{}
	for _, e := range audit {
		if e.Actor != "Rita" || e.At.IsZero() {
			t.Errorf("audit entry %+v lacks who or when", e)
		}
		actions = append(actions, e.Action)
	}
	if strings.Join(actions, ",") != "intent,intent,expected_action,note,reviewed" {
		t.Errorf("audit actions = %v", actions)
	}
	// Saving the same form again changes and logs nothing.
	c.do("POST", "/review/h/h1", form, nil)
	if again, _ := s.ReviewAudit(t.Context(), "h1"); len(again) != len(audit) {
		t.Errorf("an unchanged save was logged: %d entries", len(again))
	}
	if _, body := c.do("GET", "/review?reviewed=yes", nil, nil); !strings.Contains(body, `data-id="h1"`) {
		t.Error("the reviewed filter does not list the reviewed handoff")
	}
}

// TestTrainingExports checks both exports against the Rasa formats (parsed
// with a YAML library, required keys present) and that no human turn appears
// in either, reviewed-only by default and everything annotated with all=1.
func TestTrainingExports(t *testing.T) {
	s := inboxStore(t)
	now := time.Now().UTC()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Annotate(t.Context(), bridge.Annotation{SessionID: "h1", Reviewed: true, Intents: map[int]string{2: "mfa_reset"},
		ExpectedAction: "utter_mfa_reset", UpdatedBy: "r", UpdatedAt: now}))
	must(s.Annotate(t.Context(), bridge.Annotation{SessionID: "h2", Reviewed: false, Intents: map[int]string{0: "printer_jam"},
		ExpectedAction: "action_printer_ticket", UpdatedBy: "r", UpdatedAt: now}))
	e := testExporter(t, ExportConfig{})
	for _, all := range []bool{false, true} {
		o := TrainingOptions{Unreviewed: all}
		var nlu, stories strings.Builder
		if _, err := e.ExportAnnotatedNLU(t.Context(), &nlu, s, o); err != nil {
			t.Fatal(err)
		}
		n, err := e.ExportTestStories(t.Context(), &stories, s, o)
		if err != nil {
			t.Fatal(err)
		}
		for name, out := range map[string]string{"nlu": nlu.String(), "stories": stories.String()} {
			if strings.Contains(out, "HUMAN-SECRET") {
				t.Errorf("all=%v: a human turn is in the %s export:\n%s", all, name, out)
			}
			if strings.Contains(out, "a.b@contoso.com") {
				t.Errorf("all=%v: an unredacted e-mail address is in the %s export", all, name)
			}
		}
		intents := checkNLUFile(t, nlu.String())
		got := checkStoriesFile(t, stories.String())
		if len(got) != n {
			t.Errorf("ExportTestStories said %d stories, the file has %d", n, len(got))
		}
		wantIntents, wantStories := "mfa_reset", 1
		if all {
			wantIntents, wantStories = "mfa_reset,printer_jam", 2
		}
		if strings.Join(intents, ",") != wantIntents || len(got) != wantStories {
			t.Errorf("all=%v: intents %v, %d stories; want %s and %d", all, intents, len(got), wantIntents, wantStories)
		}
		first := got[0]
		last := first.Steps[len(first.Steps)-1]
		if last.Action != "utter_mfa_reset" {
			t.Errorf("story ends in %+v, want the reviewer's action", last)
		}
		if first.Steps[0].User != "hi" || first.Steps[0].Intent != "greet" || first.Steps[2].Intent != "mfa_reset" || first.Steps[1].Bot == "" {
			t.Errorf("story steps = %+v", first.Steps)
		}
	}
}

// checkNLUFile parses a Rasa NLU file and checks its keys; it returns the
// intents in file order.
func checkNLUFile(t *testing.T, out string) []string {
	t.Helper()
	var f struct {
		Version string           `yaml:"version"`
		NLU     []map[string]any `yaml:"nlu"`
	}
	if err := yaml.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("NLU file does not parse: %v\n%s", err, out)
	}
	if f.Version != "3.1" {
		t.Errorf("NLU version %q", f.Version)
	}
	var intents []string
	for _, it := range f.NLU {
		name, _ := it["intent"].(string)
		ex, _ := it["examples"].(string)
		if name == "" || ex == "" || len(it) != 2 {
			t.Errorf("NLU item %v: want exactly intent and examples", it)
		}
		for _, line := range strings.Split(strings.TrimRight(ex, "\n"), "\n") {
			if !strings.HasPrefix(line, "- ") {
				t.Errorf("example line %q does not start with \"- \"", line)
			}
		}
		intents = append(intents, name)
	}
	slices.Sort(intents)
	return intents
}

// checkStoriesFile parses Rasa test stories and checks their keys: each story
// has a name and steps; each step is a user message with its intent, a bot
// message or an action; the last step is an action.
func checkStoriesFile(t *testing.T, out string) []story {
	t.Helper()
	var raw struct {
		Version string           `yaml:"version"`
		Stories []map[string]any `yaml:"stories"`
	}
	if err := yaml.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("stories file does not parse: %v\n%s", err, out)
	}
	if raw.Version != "3.1" {
		t.Errorf("stories version %q", raw.Version)
	}
	var typed struct {
		Stories []story `yaml:"stories"`
	}
	if err := yaml.Unmarshal([]byte(out), &typed); err != nil {
		t.Fatal(err)
	}
	for i, st := range raw.Stories {
		steps, ok := st["steps"].([]any)
		if _, named := st["story"].(string); !named || !ok || len(steps) == 0 || len(st) != 2 {
			t.Fatalf("story %d: want exactly story and steps: %v", i, st)
		}
		for j, s := range steps {
			m, _ := s.(map[string]any)
			switch {
			case m["user"] != nil:
				if _, ok := m["intent"].(string); !ok || len(m) != 2 {
					t.Errorf("story %d step %d: a user step needs exactly user and intent: %v", i, j, m)
				}
			case m["bot"] != nil, m["action"] != nil:
				if len(m) != 1 {
					t.Errorf("story %d step %d: %v", i, j, m)
				}
			default:
				t.Errorf("story %d step %d is neither user, bot nor action: %v", i, j, m)
			}
		}
		if last, _ := steps[len(steps)-1].(map[string]any); last["action"] == nil {
			t.Errorf("story %d does not end in an action", i)
		}
		if first, _ := steps[0].(map[string]any); first["user"] == nil {
			t.Errorf("story %d does not start with the user", i)
		}
	}
	return typed.Stories
}

// FuzzInboxFilters feeds arbitrary query strings to the list's filter
// parser: it never panics, and what it accepts is in range.
func FuzzInboxFilters(f *testing.F) {
	for _, s := range []string{"from=2026-11-01&to=2026-11-30", "below=0.5&csat=3&reviewed=yes", "page=2", "below=NaN", "csat=-1", "from=%zz"} {
		f.Add(s)
	}
	in, err := NewInbox(nil, InboxConfig{Token: "t"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		_, bq, err := in.parseFilters(q)
		if err != nil {
			return
		}
		if !(bq.ConfidenceBelow >= 0 && bq.ConfidenceBelow <= 1) || bq.CSATMax < 0 || bq.CSATMax > 5 || bq.Offset < 0 {
			t.Fatalf("accepted %q as %+v", raw, bq)
		}
		if !bq.From.IsZero() && !bq.To.IsZero() && !bq.From.Before(bq.To) {
			t.Fatalf("accepted an empty range %q", raw)
		}
	})
}

// TestInboxCookie: the sign-in cookie is HttpOnly and SameSite=Strict, scoped
// to the inbox, and signed under the token: an inbox started with another
// token (the token was changed) refuses it.
func TestInboxCookie(t *testing.T) {
	s := inboxStore(t)
	c := newInboxClient(t, s)
	req, _ := http.NewRequest(http.MethodPost, c.base+"/review/login", strings.NewReader(url.Values{"token": {inboxToken}, "name": {"Rita"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("sign-in: %d with cookies %v", resp.StatusCode, cookies)
	}
	ck := cookies[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/review" || ck.MaxAge <= 0 {
		t.Errorf("cookie %q: HttpOnly %v, SameSite %v, Path %q, MaxAge %d; want HttpOnly, Strict, /review and an expiry",
			resp.Header.Get("Set-Cookie"), ck.HttpOnly, ck.SameSite, ck.Path, ck.MaxAge)
	}
	get := func(base string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/review", nil)
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(c.base); code != http.StatusOK {
		t.Fatalf("the cookie under its own token: %d, want 200", code)
	}
	in, err := NewInbox(s, InboxConfig{Token: "a-new-token", Exporter: testExporter(t, ExportConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range in.Patterns() {
		mux.Handle(p, in)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if code := get(srv.URL); code != http.StatusUnauthorized {
		t.Errorf("the cookie after the token changed: %d, want 401", code)
	}
}
